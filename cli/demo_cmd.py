"""``llmping demo``: a whole measurement on this machine, with no setup.

One process starts the simulated providers and two delay proxies in a background event
loop, then a controller and two agents as subprocesses. The shanghai agent reaches the
simulator through a proxy that adds more delay than the tokyo agent's proxy, so the
only difference between the regions is the network path, as with real agents. The
demo then runs the embedded plan, prints the report and stops every process it
started, also after Ctrl-C, SIGTERM or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import IO, Any, TypeVar

import click
import yaml
from rich.console import Console

from llmping.cli import report_data
from llmping.cli.client import ClientConfig, ControlClient
from llmping.cli.report import emit_report, report_output_options
from llmping.cli.run_cmds import exit_on_error, stderr_console, stdout_console
from llmping.cli.run_follow import (
    deferred_interrupts,
    interrupt_exit_code,
    sigterm_as_interrupt,
    submit_and_report,
)
from llmping.errors import RunError
from llmping.estimate import estimate_requests
from llmping.plan import to_pb, validate_plan
from llmping.simulator import (
    ProviderProfile,
    ProxyHandle,
    SimulatorHandle,
    default_profiles,
    start_delay_proxy,
    start_simulator,
)
from llmping.v1 import llmping_pb2 as pb

T = TypeVar("T")

# One-way delays added by each region's proxy. The difference (35 ms each way) is what
# the report should show between the two regions.
REGION_DELAYS_MS = {"shanghai": 40.0, "tokyo": 5.0}
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
LISTENING_LINE = re.compile(r"listening on (\S+)")
SIMULATOR_PLACEHOLDER = "${SIMULATOR_URL}"
# Variables that would send the children's traffic (gRPC included) to a proxy that
# cannot reach loopback, or present a token the demo controller does not expect.
CHILD_ENV_DROPPED = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "grpc_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "LLMPING_TOKEN",
    "LLMPING_CONTROLLER",
)


class DemoError(RunError):
    """A demo component failed to start."""


# ---------------------------------------------------------------------------
# The simulator and the proxies, in a background event loop.
# ---------------------------------------------------------------------------


class BackgroundLoop:
    """An asyncio loop in a daemon thread, so blocking gRPC calls don't stall the simulator."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="llmping-demo-loop", daemon=True
        )
        self._thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)

    def stop_on_close(
        self, stack: contextlib.ExitStack, handle: SimulatorHandle | ProxyHandle
    ) -> None:
        """Register ``handle.stop()`` to run in this loop when the stack closes."""
        stack.callback(lambda: self.call(handle.stop()))

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()


# The demo's closed loop sends about 4 requests per second to each provider (two targets,
# two workers each), so "limited" must admit fewer than that for its 429s to show.
DEMO_RATE_LIMIT_PER_S = 3


def demo_profiles() -> list[ProviderProfile]:
    """Return the built-in simulator profiles with the rate limit lowered for the demo."""
    return [
        replace(profile, rate_limit_per_s=DEMO_RATE_LIMIT_PER_S)
        if profile.rate_limit_per_s is not None
        else profile
        for profile in default_profiles()
    ]


@dataclass(frozen=True)
class Network:
    """The simulator's URL and each region's proxy URL."""

    simulator_url: str
    proxy_urls: dict[str, str]


def start_network(stack: contextlib.ExitStack, stderr: Console) -> Network:
    """Start the simulator and one delay proxy per region; stop them when the stack closes."""
    loop = BackgroundLoop()
    stack.callback(loop.close)

    simulator = loop.call(start_simulator("127.0.0.1", 0, demo_profiles()))
    loop.stop_on_close(stack, simulator)
    stderr.print(f"simulator: {simulator.url} ({len(simulator.profiles)} simulated providers)")

    proxy_urls: dict[str, str] = {}
    for region, delay_ms in REGION_DELAYS_MS.items():
        proxy = loop.call(start_delay_proxy("127.0.0.1", 0, delay_ms))
        loop.stop_on_close(stack, proxy)
        proxy_urls[region] = proxy.url
        stderr.print(f"{region} network path: proxy {proxy.url}, +{delay_ms:g} ms each way")
    return Network(simulator.url, proxy_urls)


# ---------------------------------------------------------------------------
# Controller and agents as subprocesses.
# ---------------------------------------------------------------------------


def llmping_command(*args: str) -> list[str]:
    """Run this same llmping with this same interpreter, whatever PATH contains.

    ``-c`` alone would put the working folder first on sys.path, so the ``llmping/``
    folder of a source checkout would hide the installed package. ``-P`` (Python 3.11+)
    leaves the working folder out.
    """
    return [sys.executable, "-P", "-c", "from llmping.cli.main import main; main()", *args]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROPPED}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


class Child:
    """A subprocess whose output goes to a log file, stopped with SIGTERM then SIGKILL."""

    def __init__(
        self, name: str, args: list[str], log_path: Path, capture_stdout: bool, workdir: Path
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.log_file: IO[str] = log_path.open("w", encoding="utf-8")
        # A new session keeps the terminal's Ctrl-C away from the children, so the
        # demo stops them itself, in order, after cancelling the run.
        self.process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE if capture_stdout else self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            # The demo's own folder, so nothing in the user's folder can be imported.
            cwd=workdir,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=True,
        )

    def tail(self, line_count: int = 20) -> str:
        with contextlib.suppress(OSError):
            self.log_file.flush()
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
            return "\n".join(lines[-line_count:]) or "(no output)"
        return "(no output)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        self.log_file.close()

    def failure(self, problem: str) -> DemoError:
        """Build an error with the problem and the last lines of this child's log."""
        return DemoError(
            f"{problem}, the {self.name} log {self.log_path} ends with:\n{self.tail()}"
        )


def _copy_lines(stream: IO[str], log: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        log.write(line)
        log.flush()
        lines.put(line)


def start_controller(stack: contextlib.ExitStack, workdir: Path) -> tuple[Child, str]:
    """Start `llmping controller` on a free port and return it with its address."""
    db_path = workdir / "demo.db"
    args = llmping_command("controller", "--listen", "127.0.0.1:0", "--db", str(db_path))
    child = Child("controller", args, workdir / "controller.log", True, workdir)
    stack.callback(child.stop)
    assert child.process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=_copy_lines, args=(child.process.stdout, child.log_file, lines), daemon=True
    ).start()

    deadline = time.perf_counter() + STARTUP_TIMEOUT_S
    while time.perf_counter() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if child.process.poll() is not None:
                raise child.failure("the controller exited while starting") from None
            continue
        match = LISTENING_LINE.search(line)
        if match:
            return child, match.group(1)
    raise child.failure(f"the controller did not start within {STARTUP_TIMEOUT_S:g} s")


def start_agents(
    stack: contextlib.ExitStack, workdir: Path, controller: str, network: Network
) -> dict[str, Child]:
    """Start one agent per region, each sending provider traffic through its region's proxy."""
    agents: dict[str, Child] = {}
    for region, proxy_url in network.proxy_urls.items():
        args = llmping_command(
            "agent",
            "--controller",
            controller,
            "--region",
            region,
            "--agent-id",
            f"demo-{region}",
            "--proxy",
            proxy_url,
        )
        child = Child(f"{region} agent", args, workdir / f"agent-{region}.log", False, workdir)
        stack.callback(child.stop)
        agents[region] = child
    return agents


def wait_for_agents(client: ControlClient, agents: dict[str, Child]) -> None:
    """Poll ListAgents until an agent of every region is connected."""
    deadline = time.perf_counter() + STARTUP_TIMEOUT_S
    while True:
        connected = {a.labels.get("region", "") for a in client.list_agents()}
        missing = [region for region in agents if region not in connected]
        if not missing:
            return
        for region in missing:
            if agents[region].process.poll() is not None:
                raise agents[region].failure(f"the {region} agent exited")
        if time.perf_counter() > deadline:
            raise agents[missing[0]].failure(
                f"the {missing[0]} agent did not connect within {STARTUP_TIMEOUT_S:g} s"
            )
        time.sleep(0.2)


# ---------------------------------------------------------------------------
# The plan and the command.
# ---------------------------------------------------------------------------


def load_demo_plan(simulator_url: str, duration_s: float) -> pb.Plan:
    """Fill the simulator's URL and the duration into the embedded demo plan."""
    template = resources.files("llmping.cli").joinpath("demo_plan.yaml").read_text("utf-8")
    data = yaml.safe_load(template.replace(SIMULATOR_PLACEHOLDER, simulator_url))
    data["load"]["duration_s"] = duration_s
    # The first requests also open the proxied connections, so they are left out as
    # warm-up, unless the run is too short to spare them.
    data["load"]["warmup_s"] = 1.0 if duration_s > 3 else 0.0
    spec = validate_plan(data, "the embedded demo plan")
    source = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    return to_pb(spec, source_yaml=source)


def report_later_hint(workdir: Path, run_id: str) -> str:
    """Return the commands that show a demo run again once the demo has stopped.

    The demo's controller stops with the demo, so a controller on the kept database
    has to be started first. It listens on the default address of `llmping report`.
    """
    return (
        "to look at this run again, start a controller on the demo database:\n"
        f"  llmping controller --listen 127.0.0.1:50051 --db {workdir / 'demo.db'}\n"
        f"  llmping report {run_id} --format html --output demo.html"
    )


def print_epilogue(report: pb.Report, controller: str, workdir: Path, keep_running: bool) -> None:
    stderr = stderr_console()
    run_id = report.run.run_id
    for reason in report_data.failure_reasons(report):
        stderr.print(f"note: {reason}", highlight=False)
    if report_data.failed_thresholds(report):
        stderr.print(
            "note: the demo plan sets thresholds that a simulated provider fails on purpose, "
            "to show how a failed threshold reads; `llmping run` would exit 1 here, "
            "the demo exits 0"
        )
    stderr.print(f"demo database: {workdir / 'demo.db'} (logs in {workdir})")
    if keep_running:
        stderr.print(
            f"the controller keeps running at {controller}; try\n"
            f"  llmping report {run_id} --controller {controller} --format html "
            f"--output demo.html\n"
            f"  llmping agents --controller {controller}\n"
            "press Ctrl-C to stop everything"
        )
    else:
        stderr.print(report_later_hint(workdir, run_id))


@contextlib.contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while stopping, so a second Ctrl-C leaves no orphans."""
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


def wait_until_interrupted() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(1.0)


@dataclass(frozen=True)
class DemoOptions:
    """The demo command's flags."""

    duration_s: float
    keep_running: bool
    show_progress: bool
    report_format: str
    output: Path | None


def run_demo(options: DemoOptions) -> pb.Report:
    """Start everything, run the demo plan, print the report, and stop everything."""
    workdir = Path(tempfile.mkdtemp(prefix="llmping-demo-"))
    stack = contextlib.ExitStack()
    try:
        with sigterm_as_interrupt():
            return _run_demo_steps(stack, workdir, options)
    finally:
        with interrupts_ignored():
            stack.close()


def _run_demo_steps(stack: contextlib.ExitStack, workdir: Path, options: DemoOptions) -> pb.Report:
    stderr = stderr_console()
    network = start_network(stack, stderr)
    _, controller = start_controller(stack, workdir)
    stderr.print(f"controller: {controller}, database {workdir / 'demo.db'}")
    agents = start_agents(stack, workdir, controller, network)

    client = stack.enter_context(ControlClient(ClientConfig(address=controller)))
    wait_for_agents(client, agents)
    stderr.print("agents connected: " + ", ".join(f"region={r}" for r in agents))

    plan = load_demo_plan(network.simulator_url, options.duration_s)
    stderr.print(estimate_requests(plan).describe(), highlight=False)
    hint = functools.partial(report_later_hint, workdir)
    with deferred_interrupts(client):
        report = submit_and_report(client, plan, options.show_progress, stderr, hint)
    emit_report(report, options.report_format, options.output, stdout_console(), stderr)
    print_epilogue(report, controller, workdir, options.keep_running)
    if options.keep_running:
        wait_until_interrupted()
    return report


@click.command()
@click.option(
    "--duration-s",
    type=click.FloatRange(min=1.0, max=600.0),
    default=15.0,
    show_default=True,
    help="How long the demo run drives the simulated providers, in seconds.",
)
@click.option(
    "--keep-running",
    is_flag=True,
    help="Keep the controller, agents and simulator running after the report, until Ctrl-C.",
)
@click.option("--no-progress", is_flag=True, help="Do not show live progress on stderr.")
@report_output_options
@exit_on_error
def demo(
    duration_s: float,
    keep_running: bool,
    no_progress: bool,
    report_format: str,
    output: Path | None,
) -> None:
    """Measure simulated providers from two simulated regions, on this machine.

    Needs no API key and no internet access: everything runs on 127.0.0.1 and stops
    once the report is printed, unless --keep-running is set. Exits 0 when the run
    completes, also when a threshold of the demo plan fails, because some fail on
    purpose. Exits 130 after Ctrl-C and 143 after SIGTERM.
    """
    try:
        options = DemoOptions(duration_s, keep_running, not no_progress, report_format, output)
        report = run_demo(options)
    except KeyboardInterrupt as interrupt:
        click.echo("demo interrupted, everything it started is stopped", err=True)
        raise SystemExit(interrupt_exit_code(interrupt)) from None
    except (OSError, TimeoutError) as error:
        raise DemoError(f"the demo could not start: {error}") from error
    if report.run.state != pb.COMPLETED:
        raise RunError(
            f"the demo run ended {report_data.state_name(report.run.state)}: {report.run.reason}"
        )
