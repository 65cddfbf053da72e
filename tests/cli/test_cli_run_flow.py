"""`llmping run` and friends against a scripted ControlService on port 0.

The scripted controller lets each test choose how the run ends (completed, partial,
threshold failed), which a real controller cannot be made to do on demand.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import AbstractContextManager
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from llmping.cli import run_cmds, run_follow
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

ServeControl = Callable[[pb_grpc.ControlServiceServicer], AbstractContextManager[str]]

PLAN = """\
name: flow
providers:
  - name: OpenAI
    kind: openai_compatible
    base_url: http://127.0.0.1:9/v1
    model: gpt-4o
request:
  prompt: 写一篇100字的短文
load:
  concurrency: 1
  request_count: 3
targets:
  - shanghai
  - tokyo
"""


class ScriptedControl(pb_grpc.ControlServiceServicer):
    """Accepts one run and plays back progress, then serves a fixed report."""

    def __init__(self, report: pb.Report, block_watch: bool = False) -> None:
        self.report = report
        self.block_watch = block_watch
        self.submitted: list[pb.Plan] = []
        self.cancelled: list[pb.CancelRunRequest] = []
        self.watching = threading.Event()

    def SubmitRun(self, request: pb.SubmitRunRequest, context: grpc.ServicerContext) -> pb.RunInfo:
        self.submitted.append(request.plan)
        return pb.RunInfo(run_id=self.report.run.run_id, state=pb.PENDING)

    def WatchRun(
        self, request: pb.WatchRunRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.RunProgress]:
        running = pb.RunInfo(run_id=request.run_id, state=pb.RUNNING)
        targets = [
            pb.TargetProgress(target="shanghai", requests_done=2, errors=1, rate_per_s=1.5),
            pb.TargetProgress(target="tokyo", requests_done=3, rate_per_s=2.0),
        ]
        yield pb.RunProgress(run=running, targets=targets, elapsed_s=1.0)
        self.watching.set()
        if self.block_watch:
            while context.is_active() and not self.cancelled:
                time.sleep(0.05)
            return
        yield pb.RunProgress(run=self.report.run, targets=targets, elapsed_s=2.0)

    def CancelRun(self, request: pb.CancelRunRequest, context: grpc.ServicerContext) -> pb.RunInfo:
        self.cancelled.append(request)
        return pb.RunInfo(run_id=request.run_id, state=pb.CANCELLED, reason=request.reason)

    def GetReport(self, request: pb.GetReportRequest, context: grpc.ServicerContext) -> pb.Report:
        if request.run_id != self.report.run.run_id:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no run with id {request.run_id!r}")
        return self.report

    def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.ServicerContext
    ) -> pb.ListAgentsResponse:
        agent = pb.AgentInfo(
            agent_id="demo-shanghai",
            labels={"region": "shanghai", "isp": "电信"},
            hostname="box1",
            last_heartbeat_unix_ns=time.time_ns(),
        )
        return pb.ListAgentsResponse(agents=[agent])

    def ListRuns(
        self, request: pb.ListRunsRequest, context: grpc.ServicerContext
    ) -> pb.ListRunsResponse:
        return pb.ListRunsResponse(runs=[self.report.run])


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN, encoding="utf-8")
    return path


def passing(report: pb.Report) -> pb.Report:
    del report.threshold_results[1]  # the failed one
    return report


def test_run_completed_prints_table_and_exits_0(
    control_server: ServeControl, sample_report: pb.Report, plan_file: Path
) -> None:
    servicer = ScriptedControl(passing(sample_report))
    with control_server(servicer) as address:
        result = CliRunner().invoke(run_cmds.run, [str(plan_file), "--controller", address])
    assert result.exit_code == 0, result.stderr
    assert "estimate: 6 requests" in result.stderr
    assert "run run-0001 submitted" in result.stderr
    assert "shanghai 2 done, 1 errors, 1.5/s" in result.stderr  # plain progress line
    assert "Latency by provider and target" in result.stdout
    assert "中转站 A" in result.stdout
    submitted = servicer.submitted[0]
    assert submitted.name == "flow"
    assert submitted.source_yaml == PLAN


def test_run_threshold_failure_exits_1(
    control_server: ServeControl, sample_report: pb.Report, plan_file: Path
) -> None:
    with control_server(ScriptedControl(sample_report)) as address:
        result = CliRunner().invoke(
            run_cmds.run, [str(plan_file), "--controller", address, "--no-progress"]
        )
    assert result.exit_code == 1
    assert "error: threshold failed: ttft_p95_ms < 400 for OpenAI @ shanghai" in result.stderr
    assert "done," not in result.stderr  # --no-progress


def test_run_partial_exits_1_with_reason(
    control_server: ServeControl, sample_report: pb.Report, plan_file: Path
) -> None:
    report = passing(sample_report)
    report.run.state = pb.PARTIAL
    report.run.reason = "agent demo-tokyo (target tokyo) lost for 10 s"
    with control_server(ScriptedControl(report)) as address:
        result = CliRunner().invoke(run_cmds.run, [str(plan_file), "--controller", address])
    assert result.exit_code == 1
    assert (
        "error: run run-0001 ended PARTIAL: agent demo-tokyo (target tokyo) lost" in result.stderr
    )


def test_run_writes_output_file(
    control_server: ServeControl, sample_report: pb.Report, plan_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "report.json"
    with control_server(ScriptedControl(passing(sample_report))) as address:
        result = CliRunner().invoke(
            run_cmds.run,
            [str(plan_file), "--controller", address, "--format", "json", "--output", str(output)],
        )
    assert result.exit_code == 0, result.stderr
    assert f"report written to {output}" in result.stderr
    assert json.loads(output.read_text(encoding="utf-8"))["run"]["run_id"] == "run-0001"
    assert result.stdout == ""


def test_run_with_invalid_plan_never_contacts_controller(tmp_path: Path, unused_port: int) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(PLAN.replace("  concurrency: 1\n", ""), encoding="utf-8")
    result = CliRunner().invoke(
        run_cmds.run, [str(bad), "--controller", f"127.0.0.1:{unused_port}"]
    )
    assert result.exit_code == 2
    assert "mode closed needs concurrency" in result.stderr


def test_run_unreachable_controller_exits_3(plan_file: Path, unused_port: int) -> None:
    result = CliRunner().invoke(
        run_cmds.run, [str(plan_file), "--controller", f"127.0.0.1:{unused_port}"]
    )
    assert result.exit_code == 3


def test_report_command_formats(
    control_server: ServeControl, sample_report: pb.Report, tmp_path: Path
) -> None:
    with control_server(ScriptedControl(sample_report)) as address:
        markdown = CliRunner().invoke(
            run_cmds.report, ["run-0001", "--controller", address, "--format", "markdown"]
        )
        html_file = tmp_path / "r.html"
        html = CliRunner().invoke(
            run_cmds.report,
            ["run-0001", "--controller", address, "--format", "html", "--output", str(html_file)],
        )
    assert markdown.exit_code == 0, markdown.stderr
    assert "| provider | shanghai | tokyo |" in markdown.stdout
    assert "note: threshold failed" in markdown.stderr
    assert html.exit_code == 0, html.stderr
    assert "<svg" in html_file.read_text(encoding="utf-8")


def test_report_rejects_unknown_format() -> None:
    result = CliRunner().invoke(run_cmds.report, ["r", "--format", "pdf"])
    assert result.exit_code == 2
    assert "'pdf' is not one of" in result.stderr


def test_agents_and_runs_tables(control_server: ServeControl, sample_report: pb.Report) -> None:
    with control_server(ScriptedControl(sample_report)) as address:
        agents = CliRunner().invoke(run_cmds.agents, ["--controller", address])
        agents_json = CliRunner().invoke(
            run_cmds.agents, ["--controller", address, "--format", "json"]
        )
        runs = CliRunner().invoke(run_cmds.runs, ["--controller", address])
    assert agents.exit_code == 0, agents.stderr
    assert "demo-shanghai" in agents.stdout
    assert "isp=电信, region=shanghai" in agents.stdout
    assert json.loads(agents_json.stdout)[0]["labels"]["region"] == "shanghai"
    assert runs.exit_code == 0, runs.stderr
    assert "run-0001" in runs.stdout
    assert "COMPLETED" in runs.stdout


def test_cancel_command(control_server: ServeControl, sample_report: pb.Report) -> None:
    servicer = ScriptedControl(sample_report)
    with control_server(servicer) as address:
        result = CliRunner().invoke(run_cmds.cancel, ["run-0001", "--controller", address])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "run run-0001 is CANCELLED\n"
    assert servicer.cancelled[0].run_id == "run-0001"


def interrupt_run(
    servicer: ScriptedControl, address: str, plan_file: Path, sig: int
) -> tuple[int, str]:
    """Run `llmping run`, send it ``sig`` while it watches, and return its status and stderr."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-P",
            "-c",
            "from llmping.cli.main import main; main()",
            "run",
            str(plan_file),
            "--controller",
            address,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    try:
        assert servicer.watching.wait(60), "the CLI never started watching the run"
        process.send_signal(sig)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # SIGABRT makes the fault handler print where every thread is stuck.
            process.send_signal(signal.SIGABRT)
            _, err = process.communicate(timeout=30)
            raise AssertionError(f"the CLI did not exit after the signal:\n{err}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err


def test_ctrl_c_cancels_run_on_controller(
    control_server: ServeControl, sample_report: pb.Report, plan_file: Path
) -> None:
    servicer = ScriptedControl(sample_report, block_watch=True)
    with control_server(servicer) as address:
        returncode, err = interrupt_run(servicer, address, plan_file, signal.SIGINT)
    assert returncode == 130, err
    assert [c.run_id for c in servicer.cancelled] == ["run-0001"]
    assert "Ctrl-C" in servicer.cancelled[0].reason
    assert "cancelling run run-0001" in err
    assert "llmping report run-0001" in err


def test_sigterm_cancels_run_and_exits_143(
    control_server: ServeControl, sample_report: pb.Report, plan_file: Path
) -> None:
    servicer = ScriptedControl(sample_report, block_watch=True)
    with control_server(servicer) as address:
        returncode, err = interrupt_run(servicer, address, plan_file, signal.SIGTERM)
    assert returncode == 143, err
    assert [c.run_id for c in servicer.cancelled] == ["run-0001"]
    assert "SIGTERM" in servicer.cancelled[0].reason
    assert "interrupted by SIGTERM, cancelling run run-0001" in err
    assert f"llmping report run-0001 --controller {address}" in err


def test_lost_controller_exits_3(
    sample_report: pb.Report, plan_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_follow, "RECONNECT_WINDOW_S", 1.0)
    servicer = ScriptedControl(sample_report, block_watch=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ControlServiceServicer_to_server(servicer, server)
    address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()

    def stop_once_watched() -> None:
        servicer.watching.wait(30)
        server.stop(grace=None)

    stopper = threading.Thread(target=stop_once_watched, daemon=True)
    stopper.start()
    try:
        started_s = time.perf_counter()
        result = CliRunner().invoke(
            run_cmds.run, [str(plan_file), "--controller", address, "--no-progress"]
        )
        took_s = time.perf_counter() - started_s
    finally:
        server.stop(grace=None)
        stopper.join(5)

    assert result.exit_code == 3, result.stderr
    assert f"lost the controller at {address}, retrying for up to 1 s" in result.stderr
    assert "run run-0001 is still running there" in result.stderr
    assert f"error: cannot reach the controller at {address}" in result.stderr
    assert "while following run run-0001" in result.stderr
    assert f"llmping report run-0001 --controller {address}" in result.stderr
    assert took_s < 20
