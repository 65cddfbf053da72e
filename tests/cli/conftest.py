"""Shared helpers for the CLI tests.

A hand-made report, a scripted ControlService on port 0, and real llmping processes
(simulator, controller, agents) started as subprocesses on loopback.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from llmping.cli.client import ClientConfig, ControlClient
from llmping.errors import LlmpingError
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

START_NS = 1_750_000_000_000_000_000


def distribution(mean: float, spread: float, count: int) -> pb.Distribution:
    """Build a plausible distribution around a mean, with a CI of +-spread."""
    return pb.Distribution(
        count=count,
        mean=mean,
        p50=mean * 0.95,
        p90=mean * 1.2,
        p95=mean * 1.3,
        p99=mean * 1.6,
        max=mean * 2.0,
        min=mean * 0.5,
        stddev=spread * 3,
        mean_ci95_low=mean - spread,
        mean_ci95_high=mean + spread,
    )


def summary(
    provider: str, target: str, e2e_mean: float, spread: float, **extra: object
) -> pb.Summary:
    values: dict[str, object] = {
        "provider": provider,
        "target": target,
        "model": "gpt-4o",
        "requests": 100,
        "successes": 98,
        "errors": 2,
        "error_rate": 0.02,
        "ttft_ms": distribution(e2e_mean / 4, spread / 4, 98),
        "e2e_ms": distribution(e2e_mean, spread, 98),
        "error_classes": {"http_429": 1, "timeout_ttft": 1},
        "score": 4.2,
        "sample_error_details": ["rate limited: 请稍后再试"],
    }
    values.update(extra)
    return pb.Summary(**values)


def build_report() -> pb.Report:
    plan = pb.Plan(
        name="对比 gpt-4o",
        providers=[
            pb.Provider(name="OpenAI", kind="openai", model="gpt-4o"),
            pb.Provider(name="中转站 A", kind="openai_compatible", model="gpt-4o"),
            pb.Provider(name="SiliconFlow", kind="openai_compatible", model="gpt-4o"),
        ],
        request=pb.RequestSpec(
            messages=[pb.ChatMessage(role="user", content="写一篇100字的短文")],
            max_tokens=300,
            stream=True,
        ),
        load=pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=2, request_count=100),
        targets=[
            pb.Target(name="shanghai", selector={"region": "shanghai"}),
            pb.Target(name="tokyo", selector={"region": "tokyo"}),
        ],
        source_yaml="name: 对比 gpt-4o\n",
    )
    summaries = [
        summary("OpenAI", "shanghai", 1450.0, 40.0),
        summary("OpenAI", "tokyo", 820.0, 30.0),
        summary("中转站 A", "shanghai", 1440.0, 35.0),
        summary(
            "中转站 A",
            "tokyo",
            610.0,
            20.0,
            errors=12,
            error_rate=0.12,
            error_classes={"http_502": 7, "http_429": 4, "connection_reset": 1},
            score=2.6,
        ),
        summary(
            "SiliconFlow",
            "shanghai",
            0.0,
            0.0,
            not_available=True,
            not_available_detail="model gpt-4o does not exist",
            requests=3,
            errors=3,
            error_rate=1.0,
            ttft_ms=pb.Distribution(),
            e2e_ms=pb.Distribution(),
            error_classes={"model_not_found": 3},
            score=0.0,
        ),
    ]
    threshold = pb.Threshold(metric="ttft_p95_ms", op="lt", value=400.0)
    timeline = [
        pb.TimelineBucket(
            provider=s.provider,
            target=s.target,
            bucket_start_unix_ns=START_NS + i * 1_000_000_000,
            bucket_s=1.0,
            requests=10 + i,
            errors=i % 3,
            ttft_p50_ms=s.ttft_ms.p50,
            e2e_p50_ms=s.e2e_ms.p50 + i * 5,
        )
        for s in summaries[:4]
        for i in range(10)
    ]
    return pb.Report(
        run=pb.RunInfo(
            run_id="run-0001",
            plan_name=plan.name,
            state=pb.COMPLETED,
            created_unix_ns=START_NS - 2_000_000_000,
            start_at_unix_ns=START_NS,
            ended_unix_ns=START_NS + 10_000_000_000,
            trace_id="0af7651916cd43dd8448eb211c80319c",
        ),
        plan=plan,
        summaries=summaries,
        threshold_results=[
            pb.ThresholdResult(
                threshold=threshold, provider="OpenAI", target="tokyo", observed=266.5, passed=True
            ),
            pb.ThresholdResult(
                threshold=threshold,
                provider="OpenAI",
                target="shanghai",
                observed=471.2,
                passed=False,
            ),
        ],
        agent_diagnoses=[
            pb.AgentDiagnosisReport(
                agent_id="agent-sh-1",
                assignment_id="a1",
                target="shanghai",
                diagnosis=pb.AgentDiagnosis(
                    start_lag_p99_ms=3.2,
                    event_loop_lag_max_ms=12.0,
                    cpu_percent_max=35.0,
                    verdict="ok: the agent was not the bottleneck",
                ),
            )
        ],
        timeline=timeline,
    )


@pytest.fixture
def sample_report() -> pb.Report:
    return build_report()


@contextlib.contextmanager
def serve_control(servicer: pb_grpc.ControlServiceServicer) -> Iterator[str]:
    """Serve a ControlService on a free loopback port and yield its HOST:PORT."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ControlServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def closed_port() -> int:
    """Return a loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def control_server() -> Callable[
    [pb_grpc.ControlServiceServicer], contextlib.AbstractContextManager[str]
]:
    return serve_control


@pytest.fixture
def unused_port() -> int:
    return closed_port()


# ---------------------------------------------------------------------------
# Real llmping processes: simulator, controller, agents and CLI commands. Each runs
# as `python -P -c ...` with its working folder and its output files in tmp_path.
# ---------------------------------------------------------------------------

# -P keeps the working folder off sys.path, as the demo does for its children.
LLMPING = [sys.executable, "-P", "-c", "from llmping.cli.main import main; main()"]
LISTENING = re.compile(r"listening on (\S+)")
START_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.05
STOP_TIMEOUT_S = 10.0
# Variables from the developer's shell that would send a child somewhere else.
DROPPED_PREFIXES = ("LLMPING_", "OTEL_")
DROPPED_NAMES = frozenset(
    {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "grpc_proxy"}
    | {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
)


def child_environment() -> dict[str, str]:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(DROPPED_PREFIXES) and name not in DROPPED_NAMES
    }
    environment["PYTHONUNBUFFERED"] = "1"
    environment["PYTHONIOENCODING"] = "utf-8"
    return environment


def poll_until(condition: Callable[[], bool], timeout_s: float, description: str) -> None:
    """Poll condition until it is true, and fail with the description after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {description}")
        time.sleep(POLL_INTERVAL_S)


@dataclass
class ChildProcess:
    """An llmping subprocess whose stdout and stderr go to files."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def describe(self) -> str:
        status = "running" if self.popen.poll() is None else f"exited {self.popen.returncode}"
        return f"--- {self.name} ({status})\n{self.stdout()[-2000:]}\n{self.stderr()[-3000:]}"

    def wait_for(
        self, pattern: re.Pattern[str], timeout_s: float = START_TIMEOUT_S
    ) -> re.Match[str]:
        """Poll both outputs for pattern; fail when the process exits first."""
        found: list[re.Match[str]] = []

        def matched() -> bool:
            match = pattern.search(self.stdout()) or pattern.search(self.stderr())
            if match is not None:
                found.append(match)
                return True
            if self.popen.poll() is not None:
                pytest.fail(
                    f"{self.name} exited before printing {pattern.pattern!r}\n{self.describe()}"
                )
            return False

        poll_until(matched, timeout_s, f"{self.name} to print {pattern.pattern!r}")
        return found[0]

    def wait(self, timeout_s: float) -> int:
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout_s:g} s\n{self.describe()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            self.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(STOP_TIMEOUT_S)


@dataclass
class Processes:
    """Starts llmping subprocesses in one folder and stops them all at teardown."""

    folder: Path
    children: list[ChildProcess] = field(default_factory=list)

    def start(self, name: str, *args: str) -> ChildProcess:
        number = len(self.children)
        stdout_path = self.folder / f"{number}-{name}.out"
        stderr_path = self.folder / f"{number}-{name}.err"
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            popen = subprocess.Popen(
                [*LLMPING, *args],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=child_environment(),
                cwd=self.folder,
            )
        child = ChildProcess(name, popen, stdout_path, stderr_path)
        self.children.append(child)
        return child

    def simulator(self) -> str:
        """Start `llmping simulate` with the built-in providers and return its URL."""
        child = self.start("simulator", "simulate", "--listen", "127.0.0.1:0")
        return child.wait_for(re.compile(r"simulator listening on (http://\S+)")).group(1)

    def controller(
        self, db_path: Path, listen: str = "127.0.0.1:0", extra_args: Sequence[str] = ()
    ) -> tuple[ChildProcess, str]:
        """Start `llmping controller` with ``extra_args`` and return it with its HOST:PORT."""
        child = self.start(
            "controller", "controller", "--listen", listen, "--db", str(db_path), *extra_args
        )
        return child, child.wait_for(LISTENING).group(1)

    def agent(self, controller: str, region: str) -> ChildProcess:
        """Start `llmping agent` for a region and wait until the controller lists it."""
        agent_id = f"cli-{region}"
        child = self.start(
            f"agent-{region}",
            "agent",
            "--controller",
            controller,
            "--region",
            region,
            "--agent-id",
            agent_id,
        )

        def connected() -> bool:
            if child.popen.poll() is not None:
                pytest.fail(f"agent {agent_id} exited\n{child.describe()}")
            with ControlClient(ClientConfig(address=controller)) as client:
                try:
                    return any(a.agent_id == agent_id for a in client.list_agents())
                except LlmpingError:
                    return False

        poll_until(connected, START_TIMEOUT_S, f"agent {agent_id} to connect")
        return child

    def describe(self) -> str:
        return "\n".join(child.describe() for child in self.children)

    def stop_all(self) -> None:
        """Stop agents first and controllers last, so agents can send their last results."""
        controllers = [c for c in self.children if c.name == "controller"]
        for child in [c for c in self.children if c.name != "controller"] + controllers:
            child.stop()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    yield started
    started.stop_all()
