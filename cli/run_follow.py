"""Submitting a run and following it to its end, as `llmping run` and `llmping demo` do.

A run belongs to the controller, not to the CLI that submitted it. When the controller
goes away mid-run (a restart, a network cut), the CLI retries for RECONNECT_WINDOW_S
and then exits 3 naming the run. When the CLI itself is stopped by Ctrl-C or SIGTERM,
it cancels the run on the controller first.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

from rich.console import Console

from llmping.cli import report_data
from llmping.cli.client import ControlClient, no_interrupt_check
from llmping.cli.progress import ProgressView, make_progress
from llmping.errors import ControllerUnavailableError, LlmpingError, RunError
from llmping.v1 import llmping_pb2 as pb

EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM
# How long the CLI keeps trying to reach a controller that went away while it followed
# a run, and the pauses between attempts.
RECONNECT_WINDOW_S = 60.0
RECONNECT_DELAYS_S = (0.5, 1.0, 2.0, 4.0, 5.0)

ReportHint = Callable[[str], str]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so that the same clean-up runs."""


def interrupt_exit_code(interrupt: KeyboardInterrupt) -> int:
    """Return 143 after SIGTERM and 130 after Ctrl-C."""
    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Raise Terminated on SIGTERM while the block runs; only the main thread can do so."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        # Later SIGTERMs are ignored, so they cannot cut the cancellation short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred_interrupts(client: ControlClient) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the client can stop safely, then raise them there.

    An interrupt raised inside gRPC's own code, for example while a call is being set
    up, can leave a lock of the channel held, and closing the channel then waits
    forever. While the block runs, the first signal is only noted, and the client
    raises KeyboardInterrupt (Terminated for SIGTERM) at its next check: within 0.2 s
    while it waits for progress, or when a call returns. A second Ctrl-C raises at
    once, for a user who wants out regardless; a second SIGTERM is ignored, so it
    cannot cut the cancellation short.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt

    def check() -> None:
        if received:
            raise Terminated if received[0] == signal.SIGTERM else KeyboardInterrupt

    previous_int = signal.signal(signal.SIGINT, note)
    previous_term = signal.signal(signal.SIGTERM, note)
    client.interrupt_check = check
    try:
        yield
    finally:
        client.interrupt_check = no_interrupt_check
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


def report_command_hint(address: str) -> ReportHint:
    """Return a hint that names the `llmping report` command for a run id."""

    def hint(run_id: str) -> str:
        return f"get its report with `llmping report {run_id} --controller {address}`"

    return hint


@dataclass
class ControllerLoss:
    """How long the controller has been unreachable while the CLI follows a run."""

    address: str
    run_id: str
    stderr: Console
    report_hint: ReportHint
    window_s: float = RECONNECT_WINDOW_S
    lost_at_s: float | None = None
    attempts: int = 0

    def wait_or_give_up(self, error: ControllerUnavailableError) -> None:
        """Pause before the next attempt, or raise once the window has passed."""
        now_s = time.perf_counter()
        if self.lost_at_s is None:
            self.lost_at_s = now_s
            self.stderr.print(
                f"lost the controller at {self.address}, retrying for up to "
                f"{self.window_s:g} s (run {self.run_id} is still running there)"
            )
        elapsed_s = now_s - self.lost_at_s
        if elapsed_s >= self.window_s:
            raise ControllerUnavailableError(
                f"cannot reach the controller at {self.address} for {elapsed_s:.0f} s while "
                f"following run {self.run_id}, which may still finish there; "
                f"once the controller is back, {self.report_hint(self.run_id)}"
            ) from error
        delay_s = RECONNECT_DELAYS_S[min(self.attempts, len(RECONNECT_DELAYS_S) - 1)]
        self.attempts += 1
        time.sleep(min(delay_s, self.window_s - elapsed_s))

    def restored(self) -> None:
        """Note that a call reached the controller again."""
        if self.lost_at_s is not None:
            self.stderr.print(f"reconnected to the controller at {self.address}")
        self.lost_at_s = None
        self.attempts = 0


def follow_run(
    client: ControlClient, run_id: str, view: ProgressView, loss: ControllerLoss
) -> None:
    """Show progress until the run reaches a final state or the stream ends.

    While the controller is unreachable the watch is retried, and it starts over once
    a call succeeds.
    """
    with view:
        while True:
            try:
                for progress in client.watch_run(run_id):
                    loss.restored()
                    view.update(progress)
                    if progress.run.state in report_data.TERMINAL_STATES:
                        return
                return
            except ControllerUnavailableError as error:
                client.interrupt_check()
                loss.wait_or_give_up(error)


def fetch_report(client: ControlClient, run_id: str, loss: ControllerLoss) -> pb.Report:
    """Get the run's report, retrying while the controller is unreachable."""
    while True:
        try:
            report = client.get_report(run_id)
        except ControllerUnavailableError as error:
            client.interrupt_check()
            loss.wait_or_give_up(error)
            continue
        client.interrupt_check()
        loss.restored()
        return report


def cancel_after_interrupt(
    client: ControlClient, run_id: str, stderr: Console, signal_name: str, report_hint: ReportHint
) -> None:
    """Cancel the run on the controller after Ctrl-C or SIGTERM and print the report hint."""
    stderr.print(f"interrupted by {signal_name}, cancelling run {run_id} on the controller")
    try:
        info = client.cancel_run(run_id, f"cancelled from the CLI ({signal_name})")
    except LlmpingError as error:
        stderr.print(f"error: cancelling run {run_id} failed: {error}")
        return
    stderr.print(f"run {run_id} is {report_data.state_name(info.state)}; {report_hint(run_id)}")


def submit_and_report(
    client: ControlClient,
    plan: pb.Plan,
    show_progress: bool,
    stderr: Console,
    report_hint: ReportHint | None = None,
) -> pb.Report:
    """Submit a plan, follow it, and return its report once the run has ended.

    Ctrl-C or SIGTERM cancels the run and then raises the KeyboardInterrupt again; the
    caller picks the exit status with interrupt_exit_code. report_hint returns the
    command that shows the report, printed when the CLI stops before the run ends.
    """
    hint = report_hint or report_command_hint(client.address)
    info = client.submit_run(plan)
    stderr.print(f"run {info.run_id} submitted to {client.address}")
    loss = ControllerLoss(client.address, info.run_id, stderr, hint, RECONNECT_WINDOW_S)
    try:
        client.interrupt_check()
        follow_run(client, info.run_id, make_progress(stderr, show_progress), loss)
        report = fetch_report(client, info.run_id, loss)
    except KeyboardInterrupt as interrupt:
        signal_name = "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
        cancel_after_interrupt(client, info.run_id, stderr, signal_name, hint)
        raise
    if report.run.state not in report_data.TERMINAL_STATES:
        raise RunError(
            f"the controller ended the progress stream while run {info.run_id} is still "
            f"{report_data.state_name(report.run.state)}, {hint(info.run_id)} later"
        )
    return report
