"""Live progress views and command registration."""

from __future__ import annotations

import io

from click.testing import CliRunner
from rich.console import Console

from llmping.cli.main import cli
from llmping.cli.progress import LineProgress, LiveProgress, NoProgress, make_progress
from llmping.v1 import llmping_pb2 as pb


def progress(state: int, done: int) -> pb.RunProgress:
    return pb.RunProgress(
        run=pb.RunInfo(run_id="r1", state=state),
        targets=[
            pb.TargetProgress(target="shanghai", requests_done=done, errors=1, rate_per_s=4.0),
            pb.TargetProgress(target="tokyo", requests_done=done + 1, rate_per_s=5.0),
        ],
        elapsed_s=3.0,
    )


def test_view_choice() -> None:
    terminal = Console(file=io.StringIO(), force_terminal=True)
    pipe = Console(file=io.StringIO(), force_terminal=False)
    assert isinstance(make_progress(terminal, True), LiveProgress)
    assert isinstance(make_progress(pipe, True), LineProgress)
    assert isinstance(make_progress(terminal, False), NoProgress)


def test_live_view_shows_targets_and_total() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100, color_system=None)
    with LiveProgress(console) as view:
        view.update(progress(pb.RUNNING, 7))
    text = buffer.getvalue()
    assert "run r1  RUNNING  3.0 s" in text
    assert "shanghai" in text
    assert "total" in text
    assert "15" in text  # 7 + 8 requests done


def test_line_view_prints_state_changes_and_throttles() -> None:
    buffer = io.StringIO()
    view = LineProgress(Console(file=buffer, width=200))
    view.update(progress(pb.RUNNING, 1))
    view.update(progress(pb.RUNNING, 2))  # within the interval, same state: skipped
    view.update(progress(pb.COMPLETED, 3))
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        "run r1 RUNNING 3.0 s: shanghai 1 done, 1 errors, 4.0/s; tokyo 2 done, 0 errors, 5.0/s"
    )
    assert lines[1].startswith("run r1 COMPLETED")


def test_main_registers_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("run", "agents", "runs", "report", "cancel", "demo"):
        assert f"  {name} " in result.stdout
