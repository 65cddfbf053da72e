"""Fixtures of the end-to-end tests: real processes on loopback, nothing faked.

- ``litellm_gateway`` (session): the LiteLLM proxy, a real third-party
  OpenAI-compatible gateway, serving ``mock_response`` models. Installed by
  scripts/install-litellm.sh into its own virtualenv; the tests fail, never skip, when
  it is missing.
- ``cluster_factory``: a controller and agents started as ``llmping controller`` and
  ``llmping agent`` OS processes, talking real gRPC; ``Cluster.run_plan`` submits a plan
  with ``llmping run --format json``.
- ``simulator_factory``: ``llmping simulate`` processes with profiles from YAML.

Every wait polls a condition under a deadline; every process is stopped at teardown.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import json_format

from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
POLL_INTERVAL_S = 0.05
PROCESS_STOP_TIMEOUT_S = 10.0
CONTROLLER_START_TIMEOUT_S = 20.0
AGENT_CONNECT_TIMEOUT_S = 30.0
SIMULATOR_START_TIMEOUT_S = 20.0
# LiteLLM imports a large dependency tree: it took 6 to 12 s to answer its health check
# on the 2-core development machine, depending on the load.
GATEWAY_START_TIMEOUT_S = 60.0
RUN_TIMEOUT_S = 60.0

CONTROLLER_LISTENING = re.compile(r"llmping controller listening on (\S+:\d+)")
SIMULATOR_LISTENING = re.compile(r"llmping simulator listening on (http://\S+)")
GATEWAY_LISTENING = re.compile(r"Uvicorn running on (http://127\.0\.0\.1:\d+)")

# Variables that would point llmping's processes somewhere else than this test wants:
# a controller address or token from the developer's shell, a proxy that aiohttp
# would honour, an OTLP exporter endpoint.
_INHERITED_PREFIXES_DROPPED = ("LLMPING_", "OTEL_")
_INHERITED_NAMES_DROPPED = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy"}
    | {"all_proxy", "no_proxy"}
)


# ---------------------------------------------------------------------------
# Small helpers.
# ---------------------------------------------------------------------------


def free_port() -> int:
    """Return a loopback port that was free a moment ago (bind to 0, then close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, details: Callable[[], str]
) -> None:
    """Poll ``condition`` until it is true; fail naming ``what`` and showing ``details``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}\n{details()}")
        time.sleep(POLL_INTERVAL_S)


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment without settings that would redirect a child."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_INHERITED_PREFIXES_DROPPED) and name not in _INHERITED_NAMES_DROPPED
    }
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(extra or {})
    return environment


def llmping_executable() -> Path:
    """Return the ``llmping`` console script of the interpreter running the tests."""
    script = Path(sys.executable).parent / "llmping"
    if not script.exists():
        pytest.fail(
            f"console script not found: {script}, install llmping into this environment "
            "with: pip install -e '.[dev]'"
        )
    return script


# ---------------------------------------------------------------------------
# Processes.
# ---------------------------------------------------------------------------


@dataclass
class ManagedProcess:
    """A child process whose stdout and stderr go to files in the test's log folder."""

    name: str
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def is_running(self) -> bool:
        return self.popen.poll() is None

    def describe(self, max_chars: int = 3000) -> str:
        """Return the exit status and the end of both outputs, for failure messages."""
        status = "running" if self.is_running() else f"exited {self.popen.returncode}"
        return (
            f"--- {self.name} (pid {self.pid}, {status})\n"
            f"stdout: ...{self.stdout_text()[-max_chars:]}\n"
            f"stderr: ...{self.stderr_text()[-max_chars:]}"
        )

    def wait_for_output(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
        """Poll stdout, then stderr, for ``pattern``; fail if the process exits first."""
        found: list[re.Match[str]] = []

        def matched() -> bool:
            for text in (self.stdout_text(), self.stderr_text()):
                match = pattern.search(text)
                if match is not None:
                    found.append(match)
                    return True
            if not self.is_running():
                pytest.fail(
                    f"{self.name} exited before printing {pattern.pattern!r}\n" + self.describe()
                )
            return False

        wait_until(matched, timeout_s, f"{self.name} to print {pattern.pattern!r}", self.describe)
        return found[0]

    def cpu_time_s(self) -> float:
        """Return the user plus system CPU seconds the process has used so far (Linux)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # After the command name, utime and stime are the 12th and 13th fields.
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """Send SIGKILL, as a crash or an OOM kill would, and reap the process."""
        if self.is_running():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=PROCESS_STOP_TIMEOUT_S)

    def request_stop(self) -> None:
        """Send SIGTERM without waiting; ``stop`` then waits for the exit."""
        if self.is_running():
            self.popen.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """Ask the process to stop with SIGTERM; SIGKILL it when it does not."""
        self.request_stop()
        try:
            self.popen.wait(timeout=PROCESS_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=PROCESS_STOP_TIMEOUT_S)


@dataclass
class ProcessLauncher:
    """Starts child processes and stops all of them at teardown."""

    log_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def start(
        self, name: str, command: Sequence[str | Path], environment: Mapping[str, str]
    ) -> ManagedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stdout_path = self.log_dir / f"{name}.stdout"
        stderr_path = self.log_dir / f"{name}.stderr"
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            popen = subprocess.Popen(
                [str(part) for part in command],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=dict(environment),
                cwd=self.log_dir,
            )
        process = ManagedProcess(name, popen, stdout_path, stderr_path)
        self.processes.append(process)
        return process

    def describe_all(self) -> str:
        return "\n".join(process.describe() for process in self.processes)

    def stop_all(self) -> None:
        """Stop every process: agents and servers together first, controllers last.

        An agent that stops sends its remaining results to the controller, so the
        controller stays up until the agents are gone. Stopping the others at the same
        time saves seconds.
        """
        controllers = [p for p in self.processes if p.name == "controller"]
        others = [p for p in self.processes if p.name != "controller"]
        for group in (others, controllers):
            for process in group:
                process.request_stop()
            for process in group:
                process.stop()


# ---------------------------------------------------------------------------
# LiteLLM proxy.
# ---------------------------------------------------------------------------

# Environment of the LiteLLM process, built from scratch so that nothing from the
# developer's shell (DATABASE_URL, OPENAI_API_KEY, proxies) reaches it. Checked against
# the source of litellm 1.108.7: the LITELLM_LOCAL_* switches make it use the copies
# bundled in the package. Without them it fetches the model cost map, Anthropic beta
# headers, blog posts, policy templates and autorouter presets from GitHub.
# LITELLM_TELEMETRY_DISABLED turns its usage telemetry off. With these set, strace
# showed no connect() to any address but loopback while the proxy started and served
# streaming requests.
LITELLM_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_TELEMETRY_DISABLED": "true",
    "DISABLE_ADMIN_UI": "True",
    "HF_HUB_OFFLINE": "1",
}
GATEWAY_MASTER_KEY = "sk-llmping-e2e-gateway-master"
# The variable that plans name in api_key_env; only the agents' environment sets it.
GATEWAY_KEY_ENV = "E2E_GATEWAY_API_KEY"

# Model name -> litellm_params beyond the model itself. mock_response makes LiteLLM
# answer without any upstream; mock_delay (seconds) sleeps before the answer starts.
GATEWAY_ENGLISH_TEXT = "The quick brown fox measures the latency of a mock gateway."
GATEWAY_CHINESE_TEXT = "你好，这是一个模拟的中文回答，用来测量首个令牌的时间。"
GATEWAY_SLOW_DELAY_S = 0.3
GATEWAY_MODELS: dict[str, dict[str, Any]] = {
    "mock-en": {"mock_response": GATEWAY_ENGLISH_TEXT},
    "mock-zh": {"mock_response": GATEWAY_CHINESE_TEXT},
    "mock-slow": {"mock_response": "A slow answer.", "mock_delay": GATEWAY_SLOW_DELAY_S},
    # LiteLLM turns this mock_response into a 429 Too Many Requests.
    "mock-ratelimited": {"mock_response": "litellm.RateLimitError"},
}


def litellm_executable() -> Path:
    tools_dir = Path(os.environ.get("LLMPING_TOOLS_DIR") or ROOT / ".tools")
    return tools_dir / "litellm" / "bin" / "litellm"


def write_gateway_config(path: Path) -> None:
    """Write a LiteLLM proxy config that serves GATEWAY_MODELS from mock responses."""
    model_list = [
        {
            "model_name": name,
            # The openai/ prefix picks LiteLLM's OpenAI handler; the key is never used
            # because mock_response answers before any upstream call.
            "litellm_params": {"model": f"openai/{name}", "api_key": "unused", **params},
        }
        for name, params in GATEWAY_MODELS.items()
    ]
    config = {"model_list": model_list, "litellm_settings": {"num_retries": 0}}
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")


@dataclass(frozen=True)
class Gateway:
    """A running LiteLLM proxy."""

    base_url: str
    master_key: str
    process: ManagedProcess
    key_env: str = GATEWAY_KEY_ENV

    def post_chat(self, body: Mapping[str, Any], timeout_s: float = 10.0) -> bytes:
        """Send one chat completion straight to the gateway and return the raw body."""
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions",
            data=json.dumps(body).encode("utf-8"),
            headers={
                "Authorization": f"Bearer {self.master_key}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body_bytes: bytes = response.read()
            return body_bytes

    def stream_events(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Send a streaming request and return the JSON of each SSE data line before [DONE]."""
        raw = self.post_chat({**body, "stream": True}).decode("utf-8")
        events: list[dict[str, Any]] = []
        for line in raw.splitlines():
            if not line.startswith("data:"):
                continue
            data = line.removeprefix("data:").strip()
            if data == "[DONE]":
                break
            events.append(json.loads(data))
        return events

    @staticmethod
    def answer_text(model: str) -> str:
        """Return the text the gateway streams for one of GATEWAY_MODELS."""
        text: str = GATEWAY_MODELS[model]["mock_response"]
        return text

    @staticmethod
    def slow_delay_s() -> float:
        """Return the delay before mock-slow starts its response, in seconds."""
        return GATEWAY_SLOW_DELAY_S


def gateway_is_alive(root_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{root_url}/health/liveliness", timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def litellm_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    executable = litellm_executable()
    if not executable.exists():
        pytest.fail(
            f"LiteLLM proxy not installed: {executable} is missing, "
            "run `bash scripts/install-litellm.sh` (scripts/test.sh does it for you)"
        )
    work_dir = tmp_path_factory.mktemp("litellm")
    config_path = work_dir / "config.yaml"
    write_gateway_config(config_path)
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(work_dir),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "LITELLM_MASTER_KEY": GATEWAY_MASTER_KEY,
        **LITELLM_OFFLINE_ENV,
    }
    launcher = ProcessLauncher(work_dir)
    # With port 0 uvicorn binds a free port and logs the one it got.
    command: list[str | Path] = [executable, "--config", config_path, "--host", "127.0.0.1"]
    command += ["--port", "0"]
    process = launcher.start("litellm", command, environment)

    try:
        match = process.wait_for_output(GATEWAY_LISTENING, GATEWAY_START_TIMEOUT_S)
        root_url = match.group(1)
        wait_until(
            lambda: gateway_is_alive(root_url),
            GATEWAY_START_TIMEOUT_S,
            "LiteLLM /health/liveliness",
            process.describe,
        )
        yield Gateway(f"{root_url}/v1", GATEWAY_MASTER_KEY, process)
    finally:
        launcher.stop_all()


# ---------------------------------------------------------------------------
# llmping controller, agents and CLI.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    """The outcome of one ``llmping`` client command."""

    exit_code: int
    stdout: str
    stderr: str

    def report(self) -> pb.Report:
        """Parse the stdout of ``--format json`` back into the Report message."""
        try:
            document = json.loads(self.stdout)
        except json.JSONDecodeError as error:
            pytest.fail(f"stdout is not JSON ({error}):\n{self.stdout}\nstderr:\n{self.stderr}")
        report = pb.Report()
        json_format.ParseDict(document, report, ignore_unknown_fields=True)
        return report


@dataclass
class Cluster:
    """One controller with its SQLite file, and the agents connected to it."""

    launcher: ProcessLauncher
    db_path: Path
    controller: ManagedProcess | None = None
    address: str = ""
    agents: dict[str, ManagedProcess] = field(default_factory=dict)

    def start_controller(self, extra_args: Sequence[str] = (), listen: str = "127.0.0.1:0") -> None:
        """Start ``llmping controller`` and read its bound address from stdout."""
        command: list[str | Path] = [llmping_executable(), "controller", "--listen", listen]
        command += ["--db", str(self.db_path), *extra_args]
        self.controller = self.launcher.start("controller", command, child_environment())
        match = self.controller.wait_for_output(CONTROLLER_LISTENING, CONTROLLER_START_TIMEOUT_S)
        self.address = match.group(1)

    def start_agent(
        self,
        region: str,
        environment: Mapping[str, str] | None = None,
        agent_id: str = "",
        extra_args: Sequence[str] = (),
    ) -> ManagedProcess:
        """Start ``llmping agent`` for a region; ``environment`` adds variables (API keys)."""
        agent_id = agent_id or f"e2e-{region}"
        command: list[str | Path] = [llmping_executable(), "agent", "--controller", self.address]
        command += ["--region", region, "--agent-id", agent_id, *extra_args]
        process = self.launcher.start(f"agent-{agent_id}", command, child_environment(environment))
        self.agents[agent_id] = process
        return process

    def list_agents(self) -> list[pb.AgentInfo]:
        with grpc.insecure_channel(self.address) as channel:
            stub = pb_grpc.ControlServiceStub(channel)
            response = stub.ListAgents(pb.ListAgentsRequest(), timeout=5.0)
        return list(response.agents)

    def wait_for_agents(self, agent_ids: Sequence[str]) -> None:
        """Wait until the controller lists every one of ``agent_ids`` as connected."""

        def all_connected() -> bool:
            try:
                connected = {agent.agent_id for agent in self.list_agents()}
            except grpc.RpcError:
                return False
            return set(agent_ids) <= connected

        wait_until(
            all_connected,
            AGENT_CONNECT_TIMEOUT_S,
            f"agents {sorted(agent_ids)} to connect",
            self.describe,
        )

    def llmping(self, *args: str, timeout_s: float = RUN_TIMEOUT_S) -> CliResult:
        """Run one ``llmping`` client command against this controller."""
        command = [str(llmping_executable()), *args, "--controller", self.address]
        try:
            completed = subprocess.run(
                command,
                capture_output=True,
                env=child_environment(),
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            pytest.fail(
                f"`llmping {' '.join(args)}` did not finish in {timeout_s:g} s\n"
                f"{error.stderr!r}\n{self.describe()}"
            )
        return CliResult(
            completed.returncode,
            completed.stdout.decode("utf-8", errors="replace"),
            completed.stderr.decode("utf-8", errors="replace"),
        )

    def run_plan(self, plan_path: Path, timeout_s: float = RUN_TIMEOUT_S) -> CliResult:
        """Submit a plan with ``llmping run`` and wait for its JSON report."""
        return self.llmping(
            "run", str(plan_path), "--format", "json", "--no-progress", timeout_s=timeout_s
        )

    def start_run(self, plan_path: Path) -> subprocess.Popen[bytes]:
        """Start ``llmping run`` without waiting; its stdout and stderr are pipes."""
        command = [str(llmping_executable()), "run", str(plan_path), "--format", "json"]
        command += ["--no-progress", "--controller", self.address]
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_environment(),
        )

    def records(self, run_id: str) -> list[dict[str, Any]]:
        """Read the stored records of a run straight from the controller's SQLite file."""
        connection = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5.0)
        try:
            connection.row_factory = sqlite3.Row
            rows = connection.execute("SELECT * FROM records WHERE run_id = ?", (run_id,))
            return [dict(row) for row in rows]
        finally:
            connection.close()

    def count_records(self, where: str = "1", parameters: Sequence[Any] = ()) -> int:
        """Count stored records matching an SQL condition; 0 while the table is missing."""
        if not self.db_path.exists():
            return 0
        connection = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=5.0)
        try:
            row = connection.execute(f"SELECT count(*) FROM records WHERE {where}", parameters)
            count: int = row.fetchone()[0]
            return count
        except sqlite3.OperationalError:
            return 0
        finally:
            connection.close()

    def start_simulator(self, profiles: Sequence[Mapping[str, Any]]) -> Simulator:
        """Start a simulator that stops with this cluster."""
        return start_simulator(self.launcher, profiles)

    def write_plan(self, plan: Mapping[str, Any]) -> Path:
        """Write a plan into this cluster's folder and return its path."""
        number = len(list(self.launcher.log_dir.glob("plan-*.yaml")))
        return write_plan(self.launcher.log_dir / f"plan-{number}.yaml", plan)

    def describe(self) -> str:
        return self.launcher.describe_all()


ClusterFactory = Callable[..., Cluster]


def _cluster_builder(
    new_log_dir: Callable[[], Path], launchers: list[ProcessLauncher]
) -> ClusterFactory:
    def build(controller_args: Sequence[str] = (), start_controller: bool = True) -> Cluster:
        """Return a cluster, with its controller started unless ``start_controller`` is False."""
        launcher = ProcessLauncher(new_log_dir())
        launchers.append(launcher)
        cluster = Cluster(launcher, launcher.log_dir / "records.db")
        if start_controller:
            cluster.start_controller(controller_args)
        return cluster

    return build


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator[ClusterFactory]:
    """Build clusters that are stopped when the test ends."""
    launchers: list[ProcessLauncher] = []
    yield _cluster_builder(lambda: tmp_path / f"cluster-{len(launchers)}", launchers)
    for launcher in launchers:
        launcher.stop_all()


@pytest.fixture(scope="module")
def module_cluster_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ClusterFactory]:
    """Like cluster_factory, for clusters shared by the tests of one module."""
    launchers: list[ProcessLauncher] = []
    yield _cluster_builder(lambda: tmp_path_factory.mktemp("cluster"), launchers)
    for launcher in launchers:
        launcher.stop_all()


SHARED_REGIONS = ("shanghai", "tokyo")


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A controller with agents e2e-shanghai and e2e-tokyo, for tests that break nothing.

    Starting a controller and two agents costs seconds, so the test modules share this
    one; every test reads back only its own run. The agents hold the gateway key.
    """
    launchers: list[ProcessLauncher] = []
    cluster = _cluster_builder(lambda: tmp_path_factory.mktemp("shared-cluster"), launchers)()
    try:
        for region in SHARED_REGIONS:
            cluster.start_agent(region, environment={GATEWAY_KEY_ENV: GATEWAY_MASTER_KEY})
        cluster.wait_for_agents([f"e2e-{region}" for region in SHARED_REGIONS])
        yield cluster
    finally:
        for launcher in launchers:
            launcher.stop_all()


# ---------------------------------------------------------------------------
# llmping's simulator.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Simulator:
    """A running ``llmping simulate`` process."""

    url: str
    process: ManagedProcess

    def base_url(self, provider: str) -> str:
        """Return the OpenAI-compatible base URL of one simulated provider."""
        return f"{self.url}/{provider}/v1"


def start_simulator(launcher: ProcessLauncher, profiles: Sequence[Mapping[str, Any]]) -> Simulator:
    """Start ``llmping simulate`` serving ``profiles`` (YAML mappings of ProviderProfile)."""
    number = sum(1 for process in launcher.processes if process.name.startswith("simulator"))
    launcher.log_dir.mkdir(parents=True, exist_ok=True)
    config_path = launcher.log_dir / f"simulator-{number}.yaml"
    config_path.write_text(yaml.safe_dump({"providers": [dict(p) for p in profiles]}), "utf-8")
    command: list[str | Path] = [llmping_executable(), "simulate", "--listen", "127.0.0.1:0"]
    command += ["--config", str(config_path)]
    process = launcher.start(f"simulator-{number}", command, child_environment())
    match = process.wait_for_output(SIMULATOR_LISTENING, SIMULATOR_START_TIMEOUT_S)
    return Simulator(match.group(1).rstrip("/"), process)


@pytest.fixture
def simulator_factory(tmp_path: Path) -> Iterator[Callable[[list[dict[str, Any]]], Simulator]]:
    """Start ``llmping simulate`` processes that are stopped when the test ends."""
    launcher = ProcessLauncher(tmp_path / "simulators")
    yield lambda profiles: start_simulator(launcher, profiles)
    launcher.stop_all()


# ---------------------------------------------------------------------------
# Plans.
# ---------------------------------------------------------------------------


def write_plan(path: Path, plan: Mapping[str, Any]) -> Path:
    """Write a plan mapping as YAML (UTF-8, Chinese kept as is) and return its path."""
    path.write_text(yaml.safe_dump(dict(plan), allow_unicode=True, sort_keys=False), "utf-8")
    return path


# ---------------------------------------------------------------------------
# Helpers handed to tests as fixtures (test modules cannot import conftest).
# ---------------------------------------------------------------------------

WaitFor = Callable[[Callable[[], bool], float, str, Callable[[], str]], None]


@pytest.fixture(scope="session")
def wait_for() -> WaitFor:
    """Return ``wait_until``: poll a condition under a deadline, fail with details."""
    return wait_until


@pytest.fixture(scope="session")
def find_free_port() -> Callable[[], int]:
    """Return ``free_port``: a loopback port with nothing listening a moment ago."""
    return free_port
