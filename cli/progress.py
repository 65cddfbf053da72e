"""Live run progress on stderr: a rich table on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from llmping.cli.report_data import state_name
from llmping.cli.report_sanitize import clean_text
from llmping.v1 import llmping_pb2 as pb

# Plain-line mode prints at most one line per interval so CI logs stay short.
LINE_INTERVAL_S = 2.0


class ProgressView(Protocol):
    """A view that shows RunProgress messages as they arrive."""

    def __enter__(self) -> ProgressView: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def update(self, progress: pb.RunProgress) -> None: ...


def progress_table(progress: pb.RunProgress) -> Group:
    """Build the live view: one row per target plus a total."""
    run = progress.run
    heading = Text(
        clean_text(f"run {run.run_id}  {state_name(run.state)}  {progress.elapsed_s:.1f} s"),
        style="bold",
    )
    table = Table(box=None, pad_edge=False)
    for column in ("target", "requests done", "errors", "rate/s"):
        table.add_column(column, justify="right" if column != "target" else "left")
    for target in progress.targets:
        # Text, not str, so that rich reads no markup in a target name.
        table.add_row(
            Text(clean_text(target.target)),
            str(target.requests_done),
            str(target.errors),
            f"{target.rate_per_s:.1f}",
        )
    if len(progress.targets) > 1:
        table.add_row(
            Text("total", style="bold"),
            str(sum(t.requests_done for t in progress.targets)),
            str(sum(t.errors for t in progress.targets)),
            f"{sum(t.rate_per_s for t in progress.targets):.1f}",
        )
    return Group(heading, table)


def progress_line(progress: pb.RunProgress) -> str:
    """Return the one-line form used when stderr is not a terminal."""
    run = progress.run
    targets = "; ".join(
        f"{t.target} {t.requests_done} done, {t.errors} errors, {t.rate_per_s:.1f}/s"
        for t in progress.targets
    )
    heading = f"run {run.run_id} {state_name(run.state)} {progress.elapsed_s:.1f} s"
    return clean_text(f"{heading}: {targets or 'waiting'}")


class LiveProgress:
    """Progress table redrawn in place on a terminal."""

    def __init__(self, console: Console) -> None:
        self._live = Live(Text("waiting for the run to start"), console=console, transient=False)

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.stop()

    def update(self, progress: pb.RunProgress) -> None:
        self._live.update(progress_table(progress), refresh=True)


class LineProgress:
    """Progress lines, one per LINE_INTERVAL_S and one on every state change."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._last_print_ns = 0
        self._last_state = -1

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def update(self, progress: pb.RunProgress) -> None:
        now_ns = time.perf_counter_ns()
        state_changed = progress.run.state != self._last_state
        if not state_changed and now_ns - self._last_print_ns < LINE_INTERVAL_S * 1e9:
            return
        self._last_print_ns = now_ns
        self._last_state = progress.run.state
        self._console.print(progress_line(progress), highlight=False, soft_wrap=True, markup=False)


class NoProgress:
    """No progress output, for --no-progress."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def update(self, progress: pb.RunProgress) -> None:
        return None


def make_progress(console: Console, enabled: bool) -> ProgressView:
    """Pick the view: nothing, a live table on a terminal, or plain lines."""
    if not enabled:
        return NoProgress()
    if console.is_terminal:
        return LiveProgress(console)
    return LineProgress(console)
