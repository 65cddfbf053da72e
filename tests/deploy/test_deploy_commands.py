"""The Compose demo, run outside containers: the exact command lines and environment of
docker/compose.yaml start as subprocesses, with container addresses swapped for loopback
ones and Jaeger replaced by an in-test OTLP receiver. There is no Docker engine here.

The test checks what `docker compose up` promises. The demo run completes, the image's
health check passes for every role, and the controller's /metrics counts the requests. The
run arrives at the trace backend as one trace: the controller's run span, one assignment span
per region and the request spans, including those the shanghai agent sends through the
controller.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp_trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_trace_grpc

from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

LLMPING = Path(sys.executable).with_name("llmping")
STOP_TIMEOUT_S = 15.0
RUN_TIMEOUT_S = 60.0


@dataclass
class Started:
    """One subprocess and the files its output goes to."""

    name: str
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def output(self) -> str:
        stdout = self.stdout_path.read_text(errors="replace")
        return stdout + self.stderr_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout_s: float = 20.0) -> re.Match[str]:
        """Poll stdout and stderr until ``pattern`` matches; fail if the process exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output())
            if match:
                return match
            if self.process.poll() is not None:
                pytest.fail(
                    f"{self.name} exited with {self.process.returncode} before printing "
                    f"{pattern!r}:\n{self.output()[-3000:]}"
                )
            time.sleep(0.05)
        pytest.fail(f"{self.name} did not print {pattern!r} in {timeout_s} s:\n{self.output()}")


@dataclass
class ProcessGroup:
    """Starts llmping commands and stops them all (SIGTERM, then SIGKILL) at teardown."""

    work_dir: Path
    started: list[Started] = field(default_factory=list)

    def start(self, name: str, arguments: list[str], env: Mapping[str, str]) -> Started:
        stdout_path = self.work_dir / f"{name}.out"
        stderr_path = self.work_dir / f"{name}.err"
        with open(stdout_path, "wb") as stdout, open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                [str(LLMPING), *arguments],
                env={**clean_environment(), **env},
                stdout=stdout,
                stderr=stderr,
                cwd=self.work_dir,
            )
        started = Started(name, process, stdout_path, stderr_path)
        self.started.append(started)
        return started

    def stop(self, name: str) -> None:
        """Stop one process with SIGTERM and wait for it to exit."""
        (started,) = [started for started in self.started if started.name == name]
        started.process.send_signal(signal.SIGTERM)
        started.process.wait(timeout=STOP_TIMEOUT_S)

    def stop_all(self) -> None:
        for started in reversed(self.started):
            if started.process.poll() is None:
                started.process.send_signal(signal.SIGTERM)
        for started in self.started:
            try:
                started.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                started.process.kill()
                started.process.wait()


def clean_environment() -> dict[str, str]:
    """Return this process's environment without OTEL_* and LLMPING_* variables."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("OTEL_", "LLMPING_"))
    }


class CapturingTraceService(otlp_trace_grpc.TraceServiceServicer):
    """Stands in for Jaeger's OTLP gRPC receiver and keeps every span it gets."""

    def __init__(self) -> None:
        self.spans: list[tuple[dict[str, str], Any]] = []

    def Export(
        self, request: otlp_trace.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> otlp_trace.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {kv.key: kv.value.string_value for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend((resource, span) for span in scope_spans.spans)
        return otlp_trace.ExportTraceServiceResponse()


@pytest.fixture
def trace_backend() -> Iterator[tuple[CapturingTraceService, int]]:
    service = CapturingTraceService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    otlp_trace_grpc.add_TraceServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield service, port
    server.stop(0)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmp_path)
    yield group
    group.stop_all()


def local_command(command: list[str], replacements: Mapping[str, str]) -> list[str]:
    """Swap container addresses and paths in a Compose command for local ones."""
    result = []
    for word in command:
        for old, new in replacements.items():
            word = word.replace(old, new)
        result.append(word)
    return result


def local_environment(
    environment: Mapping[str, str], replacements: Mapping[str, str]
) -> dict[str, str]:
    local = {}
    for name, value in environment.items():
        # Compose's ${NAME:-default}: the variable is unset here, so the default applies.
        value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))
        for old, new in replacements.items():
            value = value.replace(old, new)
        local[name] = value
    return local


def health_check(repo: Path, arguments: list[str], env: Mapping[str, str]) -> int:
    """Run the image's HEALTHCHECK script for one role; return its exit status."""
    script = repo / "docker" / "healthcheck.py"
    result = subprocess.run(
        [sys.executable, str(script), *arguments],
        env={**clean_environment(), **env},
        capture_output=True,
        timeout=30,
    )
    return result.returncode


def wait_healthy(repo: Path, arguments: list[str], env: Mapping[str, str]) -> None:
    deadline = time.monotonic() + 20.0
    while health_check(repo, arguments, env) != 0:
        assert time.monotonic() < deadline, f"health check {arguments} never passed"
        time.sleep(0.2)


def test_compose_demo_outside_containers(
    repo: Path,
    compose: dict[str, Any],
    processes: ProcessGroup,
    trace_backend: tuple[CapturingTraceService, int],
    tmp_path: Path,
) -> None:
    services = compose["services"]
    backend, backend_port = trace_backend
    replacements = {
        "0.0.0.0:8000": "127.0.0.1:0",
        "0.0.0.0:50051": "127.0.0.1:0",
        "0.0.0.0:9464": "127.0.0.1:0",
        "/var/lib/llmping/": f"{tmp_path}/",
        "http://jaeger:4317": f"http://127.0.0.1:{backend_port}",
    }

    simulator = processes.start(
        "simulator", local_command(services["simulator"]["command"], replacements), {}
    )
    simulator_url = simulator.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1)

    controller_service = services["controller"]
    controller_env = local_environment(controller_service["environment"], replacements)
    controller = processes.start(
        "controller", local_command(controller_service["command"], replacements), controller_env
    )
    controller_address = controller.wait_for(r"listening on (127\.0\.0\.1:\d+)").group(1)
    metrics_url = controller.wait_for(r"metrics on (http://127\.0\.0\.1:\d+/metrics)").group(1)
    replacements["controller:50051"] = controller_address
    wait_healthy(repo, ["controller", "--listen", controller_address], {})
    wait_healthy(repo, ["simulate", "--listen", simulator_url.removeprefix("http://")], {})

    for region in ("shanghai", "tokyo"):
        service = services[f"agent-{region}"]
        env = local_environment(service["environment"], replacements)
        processes.start(f"agent-{region}", local_command(service["command"], replacements), env)
    wait_for_agents(controller_address, controller_env["LLMPING_TOKEN"], count=2)
    # The health check looks for an agent with this host's name, as in a container.
    assert health_check(repo, ["agent"], env) == 0

    demo = services["demo"]
    plan_path = local_demo_plan(repo, tmp_path, simulator_url)
    replacements["/etc/llmping/demo-plan.yaml"] = str(plan_path)
    demo_run = processes.start(
        "demo",
        local_command(demo["command"], replacements),
        local_environment(demo["environment"], replacements),
    )
    exit_code = demo_run.process.wait(timeout=RUN_TIMEOUT_S)
    assert exit_code == 0, demo_run.output()[-3000:]
    assert "fast-relay" in demo_run.stdout_path.read_text()

    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        metrics_text = response.read().decode()
    ok_series = 'llmping_requests_total{outcome="ok",provider="official",target="tokyo"}'
    assert ok_series in metrics_text
    assert "llmping_agents_connected 2.0" in metrics_text

    # SIGTERM flushes the spans still queued: the agents first, so the controller is still
    # there to forward the shanghai agent's spans, then the controller.
    processes.stop("agent-shanghai")
    processes.stop("agent-tokyo")
    processes.stop("controller")
    check_one_trace_per_run(backend)


def wait_for_agents(controller: str, token: str, count: int) -> None:
    """Poll the controller's ListAgents until ``count`` agents are registered."""
    metadata = (("authorization", f"Bearer {token}"),)
    deadline = time.monotonic() + 20.0
    with grpc.insecure_channel(controller) as channel:
        stub = pb_grpc.ControlServiceStub(channel)
        while True:
            reply = stub.ListAgents(pb.ListAgentsRequest(), metadata=metadata, timeout=5)
            if len(reply.agents) >= count:
                return
            assert time.monotonic() < deadline, f"{count} agents never registered"
            time.sleep(0.1)


def local_demo_plan(repo: Path, tmp_path: Path, simulator_url: str) -> Path:
    """Copy the Compose demo plan with the simulator's local address and a short run."""
    plan: dict[str, Any] = yaml.safe_load((repo / "docker" / "demo-plan.yaml").read_text())
    for provider in plan["providers"]:
        provider["base_url"] = provider["base_url"].replace("http://simulator:8000", simulator_url)
    plan["load"]["duration_s"] = 1
    plan["load"]["warmup_s"] = 0
    path = tmp_path / "demo-plan.yaml"
    path.write_text(yaml.safe_dump(plan, allow_unicode=True))
    return path


def check_one_trace_per_run(backend: CapturingTraceService) -> None:
    spans = backend.spans
    runs = [span for _, span in spans if span.name == "llmping.run"]
    assert len(runs) == 1
    run = runs[0]
    assignments = [
        (resource, span) for resource, span in spans if span.name == "llmping.assignment"
    ]
    regions = sorted(resource["llmping.agent.label.region"] for resource, _ in assignments)
    assert regions == ["shanghai", "tokyo"]
    for _, assignment in assignments:
        assert assignment.trace_id == run.trace_id
        assert assignment.parent_span_id == run.span_id
    assignment_ids = {span.span_id for _, span in assignments}
    requests = [span for _, span in spans if span.name.startswith("chat ")]
    assert requests
    for request in requests:
        assert request.trace_id == run.trace_id
        assert request.parent_span_id in assignment_ids
    services = {resource["service.name"] for resource, _ in spans}
    assert services == {"llmping-controller", "llmping-agent"}
