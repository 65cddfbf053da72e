"""Spans exported over OTLP gRPC to a real backend, Arize Phoenix, and read back over its REST API.

Phoenix runs from its own virtualenv (scripts/install-phoenix.sh) because it pins many
packages. The test fails, rather than skips, when that virtualenv is missing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from llmping.agent.tracing import AgentTracing
from llmping.controller.tracing import ControllerTracing
from llmping.otel import build_tracer_provider
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[2]
LLMPING = Path(sys.executable).with_name("llmping")
READY_TIMEOUT_S = 90.0
SPANS_TIMEOUT_S = 20.0


@dataclass
class Phoenix:
    http_port: int
    grpc_port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def get_json(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)

    def project_spans(self, project: str) -> list[dict[str, Any]]:
        try:
            body = self.get_json(f"/v1/projects/{project}/spans?limit=1000")
        except urllib.error.HTTPError as error:
            if error.code == 404:  # the project appears with its first span
                return []
            raise
        spans: list[dict[str, Any]] = body["data"]
        return spans


def phoenix_binary() -> Path:
    tools_dir = os.environ.get("LLMPING_TOOLS_DIR") or str(REPO / ".tools")
    return Path(tools_dir) / "phoenix" / "bin" / "phoenix"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(phoenix: Phoenix) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if phoenix.process.poll() is not None:
            pytest.fail(
                f"phoenix serve exited with {phoenix.process.returncode}; see {phoenix.log_path}"
            )
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{phoenix.http_port}/healthz", timeout=1
            ) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"phoenix serve not ready after {READY_TIMEOUT_S} s; see {phoenix.log_path}")


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    binary = phoenix_binary()
    if not binary.exists():
        pytest.fail(
            f"Arize Phoenix is missing: {binary} does not exist; "
            "run scripts/install-phoenix.sh (set LLMPING_TOOLS_DIR to install elsewhere)"
        )
    work_dir = tmp_path_factory.mktemp("phoenix")
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    http_port, grpc_port = _free_port(), _free_port()
    env.update(
        PHOENIX_HOST="127.0.0.1",
        PHOENIX_PORT=str(http_port),
        PHOENIX_GRPC_PORT=str(grpc_port),
        PHOENIX_WORKING_DIR=str(work_dir),
        # No analytics pixels and no requests to the internet (web fonts, sandbox download).
        PHOENIX_TELEMETRY_ENABLED="false",
        PHOENIX_ALLOW_EXTERNAL_RESOURCES="false",
    )
    log_path = work_dir / "phoenix.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [str(binary), "serve"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = Phoenix(http_port, grpc_port, process, log_path)
    try:
        _wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_spans(phoenix: Phoenix, project: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + SPANS_TIMEOUT_S
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        spans = phoenix.project_spans(project)
        if len(spans) >= count:
            return spans
        time.sleep(0.2)
    pytest.fail(f"Phoenix holds {len(spans)} spans of project {project}, expected {count}")


def check_trace_tree(
    spans: list[dict[str, Any]], requests_per_assignment: int | dict[str, int]
) -> dict[str, list[dict[str, Any]]]:
    """Assert every trace is run -> assignment(s) -> requests; return the spans by trace id.

    ``requests_per_assignment`` is one count for all, or a count per assignment id.
    """
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(span["context"]["trace_id"], []).append(span)
    for trace_spans in by_trace.values():
        roots = [span for span in trace_spans if span["parent_id"] is None]
        assert [root["name"] for root in roots] == ["llmping.run"]
        run_span_id = roots[0]["context"]["span_id"]
        assignments = [span for span in trace_spans if span["name"] == "llmping.assignment"]
        assert assignments
        for assignment in assignments:
            assert assignment["parent_id"] == run_span_id
            children = [
                span
                for span in trace_spans
                if span["parent_id"] == assignment["context"]["span_id"]
            ]
            expected = requests_per_assignment
            if isinstance(expected, dict):
                expected = expected[assignment["attributes"]["llmping.assignment.id"]]
            assert len(children) == expected
            assert all(child["name"].startswith("chat ") for child in children)
    return by_trace


def test_two_runs_are_two_traces_in_phoenix(
    phoenix: Phoenix,
    monkeypatch: pytest.MonkeyPatch,
    make_assignment: Callable[..., pb.Assignment],
    make_record: Callable[..., pb.Record],
) -> None:
    project = "llmping-handmade"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{phoenix.grpc_port}")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={project}")
    controller_provider = build_tracer_provider("llmping-controller")
    agent_provider = build_tracer_provider("llmping-agent", {"service.instance.id": "agent-1"})
    assert controller_provider is not None
    assert agent_provider is not None
    controller = ControllerTracing(controller_provider)
    agent = AgentTracing(agent_provider, "agent-tokyo-1")

    record_ids: dict[str, list[str]] = {}
    for run_id in ("run-a", "run-b"):
        run_ids = controller.start_run(run_id, make_assignment().plan)
        trace = agent.start_assignment(make_assignment(run_ids.traceparent, run_id=run_id))
        records = [make_record(index=0), make_record(index=1, error_class="http_429")]
        for record in records:
            ids = trace.record_request(record)
            assert ids is not None
            record_ids.setdefault(ids.trace_id, []).append(ids.span_id)
        trace.end(pb.AssignmentUpdate.FINISHED, records_total=len(records))
        controller.run_ended(pb.RunInfo(run_id=run_id, state=pb.COMPLETED))
    controller_provider.shutdown()
    agent_provider.shutdown()

    spans = wait_for_spans(phoenix, project, 8)
    assert len(spans) == 8
    by_trace = check_trace_tree(spans, requests_per_assignment=2)
    assert set(by_trace) == set(record_ids)
    for trace_id, trace_spans in by_trace.items():
        request_spans = [span for span in trace_spans if span["name"] == "chat gpt-4o"]
        assert {span["context"]["span_id"] for span in request_spans} == set(record_ids[trace_id])
        failed = [span for span in request_spans if span["status_code"] == "ERROR"]
        assert len(failed) == 1
        attributes = failed[0]["attributes"]
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "gpt-4o"
        assert attributes["error.type"] == "http_429"
        assert attributes["llmping.agent.id"] == "agent-tokyo-1"
        event_names = {event["name"] for event in failed[0]["events"]}
        assert "first_token" in event_names


def _clean_environment() -> dict[str, str]:
    return {
        key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "LLMPING_"))
    }


def _start(
    name: str, arguments: list[str], env: dict[str, str], work_dir: Path
) -> subprocess.Popen[bytes]:
    base = _clean_environment()
    with open(work_dir / f"{name}.log", "wb") as log_file:
        return subprocess.Popen(
            [str(LLMPING), *arguments],
            env={**base, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=work_dir,
        )


def _wait_for_line(work_dir: Path, name: str, pattern: str, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    log_path = work_dir / f"{name}.log"
    while time.monotonic() < deadline:
        match = re.search(pattern, log_path.read_text(errors="replace"))
        if match:
            return match.group(1)
        time.sleep(0.05)
    pytest.fail(f"{name} did not print {pattern!r}:\n{log_path.read_text(errors='replace')}")


def _wait_for_agents(address: str, count: int) -> None:
    """Poll the controller's ListAgents until ``count`` agents are registered."""
    deadline = time.monotonic() + 20.0
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.ControlServiceStub(channel)
        while len(stub.ListAgents(pb.ListAgentsRequest(), timeout=5).agents) < count:
            assert time.monotonic() < deadline, f"{count} agents never registered"
            time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _write_plan(path: Path, simulator_url: str) -> None:
    plan = {
        "name": "phoenix-e2e",
        "providers": [
            {
                "name": "fast-relay",
                "kind": "openai_compatible",
                "base_url": f"{simulator_url}/fast-relay/v1",
                "model": "gpt-4o",
            }
        ],
        "request": {"prompt": "写一篇100字的短文", "max_tokens": 40},
        "load": {"mode": "closed", "concurrency": 1, "duration_s": 1.5},
        "targets": ["shanghai", "tokyo"],
    }
    path.write_text(json.dumps(plan, ensure_ascii=False))


def test_real_run_is_one_trace_in_phoenix(phoenix: Phoenix, tmp_path: Path) -> None:
    project = "llmping-e2e"
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{phoenix.grpc_port}",
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
    }
    simulator = _start("simulator", ["simulate", "--listen", "127.0.0.1:0"], {}, tmp_path)
    processes = [simulator]
    try:
        simulator_url = _wait_for_line(tmp_path, "simulator", r"listening on (http://[\d.:]+)")
        controller = _start(
            "controller",
            ["controller", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "runs.db")],
            otel,
            tmp_path,
        )
        processes.append(controller)
        address = _wait_for_line(tmp_path, "controller", r"listening on (127\.0\.0\.1:\d+)")
        # tokyo exports to Phoenix itself; shanghai sends its spans through the controller.
        agents = {
            "tokyo": otel,
            "shanghai": {
                "OTEL_RESOURCE_ATTRIBUTES": otel["OTEL_RESOURCE_ATTRIBUTES"],
                "LLMPING_TRACES_VIA_CONTROLLER": "1",
            },
        }
        for region, env in agents.items():
            processes.append(
                _start(
                    f"agent-{region}",
                    ["agent", "--controller", address, "--region", region],
                    env,
                    tmp_path,
                )
            )
        _wait_for_agents(address, count=2)

        plan_path = tmp_path / "plan.json"
        _write_plan(plan_path, simulator_url)
        command = ["run", str(plan_path), "--controller", address, "--format", "json"]
        result = subprocess.run(
            [str(LLMPING), *command, "--no-progress"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
    finally:
        # Agents first, so the controller still forwards the shanghai agent's last spans.
        for process in reversed(processes):
            _stop(process)

    records = {a["assignment_id"]: a["records_stored"] for a in report["run"]["assignments"]}
    expected_spans = 1 + len(records) + sum(records.values())
    spans = wait_for_spans(phoenix, project, expected_spans)
    assert len(spans) == expected_spans
    by_trace = check_trace_tree(spans, records)
    assert list(by_trace) == [report["run"]["trace_id"]]
