"""Process failures end to end: an agent killed mid-run, a controller not there yet."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from google.protobuf import json_format

from llmping.v1 import llmping_pb2 as pb

RUN_EXIT_TIMEOUT_S = 45.0
AGENT_GRACE_S = 1.0
RUN_DURATION_S = 5.0
# Over this window an agent that cannot reach its controller must stay nearly idle.
IDLE_WINDOW_S = 3.0
IDLE_CPU_MAX_S = 0.3


def steady_profile() -> dict[str, Any]:
    return {"name": "steady", "models": ["m"], "ttft_ms": 20, "tokens_per_s": 200}


def steady_plan(base_url: str) -> dict[str, Any]:
    return {
        "name": "e2e-agent-loss",
        "providers": [
            {"name": "steady", "kind": "openai_compatible", "base_url": base_url, "model": "m"}
        ],
        "request": {"prompt": "hello", "max_tokens": 16},
        "load": {"mode": "closed", "concurrency": 2, "duration_s": RUN_DURATION_S},
        "targets": ["shanghai", "tokyo"],
        "timeouts": {"connect_s": 2, "ttft_s": 5, "idle_s": 5, "total_s": 10},
    }


@dataclass(frozen=True)
class AgentLoss:
    """What one run left behind after its tokyo agent was killed mid-run."""

    exit_code: int
    stderr: str
    report: pb.Report
    records: list[dict[str, Any]]
    survivor_running: bool


def wait_for_exit(run: subprocess.Popen[bytes], cluster: Any) -> tuple[int, str, str]:
    try:
        stdout, stderr = run.communicate(timeout=RUN_EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        run.kill()
        stdout, stderr = run.communicate()
        pytest.fail(
            f"`llmping run` still running {RUN_EXIT_TIMEOUT_S:g} s after an agent was killed\n"
            f"{stderr.decode(errors='replace')}\n{cluster.describe()}"
        )
    return run.returncode, stdout.decode("utf-8"), stderr.decode("utf-8")


def parse_report(stdout: str, stderr: str) -> pb.Report:
    assert stdout.strip(), f"`llmping run` printed no report\n{stderr}"
    report = pb.Report()
    json_format.Parse(stdout, report, ignore_unknown_fields=True)
    return report


@pytest.fixture(scope="module")
def agent_loss(module_cluster_factory: Callable[..., Any], wait_for: Any) -> AgentLoss:
    cluster = module_cluster_factory(["--agent-grace-s", str(AGENT_GRACE_S)])
    shanghai = cluster.start_agent("shanghai")
    tokyo = cluster.start_agent("tokyo")
    simulator = cluster.start_simulator([steady_profile()])
    cluster.wait_for_agents(["e2e-shanghai", "e2e-tokyo"])
    run = cluster.start_run(cluster.write_plan(steady_plan(simulator.base_url("steady"))))
    try:
        # Kill the agent once some of its records are stored, so it dies mid-run.
        wait_for(
            lambda: cluster.count_records("target = 'tokyo'") > 0,
            20.0,
            "records from the tokyo agent",
            cluster.describe,
        )
        tokyo.kill()
        exit_code, stdout, stderr = wait_for_exit(run, cluster)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()

    report = parse_report(stdout, stderr)
    records = cluster.records(report.run.run_id)
    return AgentLoss(exit_code, stderr, report, records, shanghai.is_running())


def test_killed_agent_run_ends_partial(agent_loss: AgentLoss) -> None:
    assert agent_loss.exit_code == 1, agent_loss.stderr
    assert agent_loss.report.run.state == pb.PARTIAL, agent_loss.stderr


def test_killed_agent_named_in_reason(agent_loss: AgentLoss) -> None:
    reason = agent_loss.report.run.reason

    assert "e2e-tokyo" in reason
    assert "tokyo" in reason
    assert "e2e-shanghai" not in reason
    assert reason in agent_loss.stderr


def test_killed_agent_records_kept_once(agent_loss: AgentLoss) -> None:
    keys = Counter((r["assignment_id"], r["index"]) for r in agent_loss.records)
    by_target = Counter(r["target"] for r in agent_loss.records)

    assert [key for key, count in keys.items() if count > 1] == []
    assert by_target["tokyo"] > 0
    assert by_target["shanghai"] > by_target["tokyo"]


def test_killed_agent_survivor_unaffected(agent_loss: AgentLoss) -> None:
    shanghai = [r for r in agent_loss.records if r["target"] == "shanghai"]
    summaries = {s.target: s for s in agent_loss.report.summaries}

    assert agent_loss.survivor_running
    assert {r["error_class"] for r in shanghai} == {""}
    assert summaries["shanghai"].requests == len(shanghai)
    assert summaries["shanghai"].errors == 0


def reserve_port() -> socket.socket:
    """Bind a loopback port without listening: connections to it are refused, and no
    other process can take the port until the socket is closed."""
    reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reserved.bind(("127.0.0.1", 0))
    return reserved


RETRY_WARNING = re.compile(r"controller unreachable at 127\.0\.0\.1:\d+.*retrying", re.IGNORECASE)
ATTEMPT_FAILED = re.compile(r"connection attempt (\d+) to \S+ failed")


def test_agent_retries_unreachable_controller(
    cluster_factory: Callable[..., Any], wait_for: Any
) -> None:
    cluster = cluster_factory(start_controller=False)
    reserved = reserve_port()
    cluster.address = f"127.0.0.1:{reserved.getsockname()[1]}"
    agent = cluster.start_agent("shanghai", extra_args=["--log-level", "debug"])

    wait_for(
        lambda: RETRY_WARNING.search(agent.stderr_text()) is not None,
        20.0,
        "the agent to log that the controller is unreachable",
        agent.describe,
    )
    cpu_before_s = agent.cpu_time_s()
    deadline = time.monotonic() + IDLE_WINDOW_S
    while time.monotonic() < deadline:
        assert agent.is_running(), agent.describe()
        time.sleep(0.1)
    cpu_used_s = agent.cpu_time_s() - cpu_before_s

    assert cpu_used_s < IDLE_CPU_MAX_S, agent.describe()
    attempts = [int(n) for n in ATTEMPT_FAILED.findall(agent.stderr_text())]
    # Exponential backoff from 0.5 s: a few attempts in these seconds, not a tight loop.
    assert attempts, agent.describe()
    assert max(attempts) < 20
    assert len(RETRY_WARNING.findall(agent.stderr_text())) == 1

    reserved.close()
    cluster.start_controller(listen=cluster.address)
    cluster.wait_for_agents(["e2e-shanghai"])
    assert agent.is_running()
