"""Shared pieces of the benchmark scripts: machine facts, a static nginx server, wrk.

Every benchmark here talks only to servers it starts itself on 127.0.0.1. The scripts
pin processes to cores with ``taskset`` so that the load generator and the server do
not share a core. On a machine with fewer than two cores they run unpinned and print
no core numbers.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmping.stats import percentile

LOOPBACK = "127.0.0.1"
CHAT_PATH = "/v1/chat/completions"
BENCH_MODEL = "gpt-4o-mini"


def machine_info() -> dict[str, str]:
    """Collect the facts that a benchmark figure needs beside it."""
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "nproc": str(os.cpu_count() or 0),
        "cpu_model": _cpu_model(),
        "memory_gib": f"{_memory_bytes() / 2**30:.1f}",
        "python": platform.python_version(),
        "kernel": platform.release(),
        "aiohttp": _version_of("aiohttp"),
        "uvloop": _version_of("uvloop"),
    }


def print_machine_info() -> None:
    """Print the machine facts as one block."""
    print("machine:")
    for key, value in machine_info().items():
        print(f"  {key}: {value}")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_bytes() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _version_of(module_name: str) -> str:
    try:
        module = __import__(module_name)
    except ImportError:
        return "not installed"
    return str(getattr(module, "__version__", "unknown"))


def free_port() -> int:
    """Return a TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    """Poll until something accepts TCP connections on the loopback port."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                message = f"nothing listens on {LOOPBACK}:{port} after {timeout_s} s"
                raise TimeoutError(message) from error
            time.sleep(0.05)


def pinned(command: Sequence[str], core: int | None) -> list[str]:
    """Prefix a command with ``taskset -c CORE`` when a core is given and taskset exists."""
    if core is None or shutil.which("taskset") is None:
        return list(command)
    return ["taskset", "-c", str(core), *command]


def default_cores() -> tuple[int | None, int | None]:
    """Return (server core, client core): 0 and 1 on a machine with two or more cores."""
    if (os.cpu_count() or 1) >= 2:
        return 0, 1
    return None, None


# ---------------------------------------------------------------------------
# The response body: an OpenAI-style chat completion stream.
# ---------------------------------------------------------------------------


def build_event_stream(content_chunks: int = 64) -> bytes:
    """Build a chat.completion.chunk event stream as OpenAI sends it with include_usage.

    The stream is ``content_chunks`` chunks that carry one word of text each (the first
    also carries the role), one chunk with an empty delta and finish_reason "stop", one
    usage chunk with no choices, then ``data: [DONE]``. Every chunk carries
    ``"usage": null`` the way OpenAI sends it when stream_options.include_usage is set.
    """
    events: list[str] = []
    for index in range(content_chunks):
        delta: dict[str, object] = {"content": f" word{index}"}
        if index == 0:
            delta = {"role": "assistant", "content": "word0"}
        events.append(_chunk_json([_choice(delta, None)], None))
    events.append(_chunk_json([_choice({}, "stop")], None))
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": content_chunks,
        "total_tokens": 12 + content_chunks,
    }
    events.append(_chunk_json([], usage))
    lines = [f"data: {event}\n\n" for event in events]
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def _choice(delta: dict[str, object], finish_reason: str | None) -> dict[str, object]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def _chunk_json(choices: list[dict[str, object]], usage: dict[str, int] | None) -> str:
    chunk = {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": BENCH_MODEL,
        "system_fingerprint": "fp_bench",
        "choices": choices,
        "usage": usage,
    }
    return json.dumps(chunk, separators=(",", ":"))


def request_body() -> bytes:
    """Return the JSON body a client sends (the servers here do not read it)."""
    body = {
        "model": BENCH_MODEL,
        "messages": [{"role": "user", "content": "Write a 100-character essay."}],
        "max_tokens": 100,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    return json.dumps(body).encode()


# ---------------------------------------------------------------------------
# nginx serving the event stream as a static file.
# ---------------------------------------------------------------------------

_NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type text/event-stream;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    server {{
        listen {host}:{port} backlog=4096;
        root {tmp}/www;
        # The static module rejects POST with 405, and error_page turns the 405 into
        # an internal GET of the event-stream file with status 200.
        location = {chat_path} {{
            alias {tmp}/www/stream.sse;
            error_page 405 =200 /stream.sse;
        }}
        location = /stream.sse {{ }}
    }}
}}
"""


@dataclass
class NginxServer:
    """An nginx master and one worker in the foreground, configured in a temporary folder."""

    port: int
    process: subprocess.Popen[bytes]
    folder: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


@contextlib.contextmanager
def nginx_server(body: bytes, core: int | None) -> Iterator[NginxServer]:
    """Start nginx on a free loopback port serving ``body`` at the chat completions path."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise SystemExit("error: nginx not found, install it with `apt-get install -y nginx`")
    with tempfile.TemporaryDirectory(prefix="llmping-bench-nginx-") as tmp:
        folder = Path(tmp)
        # nginx started as root serves files as "nobody", which needs to read them.
        folder.chmod(0o755)
        (folder / "www").mkdir(mode=0o755)
        (folder / "www" / "stream.sse").write_bytes(body)
        port = free_port()
        config = _NGINX_CONF.format(tmp=tmp, host=LOOPBACK, port=port, chat_path=CHAT_PATH)
        (folder / "nginx.conf").write_text(config)
        command = pinned([binary, "-p", tmp, "-c", str(folder / "nginx.conf")], core)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(port)
            yield NginxServer(port=port, process=process, folder=folder)
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate a child process and wait for it, killing it after 5 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------
# wrk, the reference for what this machine's loopback and nginx can do.
# ---------------------------------------------------------------------------

_WRK_POST_SCRIPT = """\
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key"
"""


def run_wrk(url: str, connections: int, duration_s: float, core: int | None) -> float:
    """Run wrk with one thread for ``duration_s`` and return responses per second."""
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("error: wrk not found, install it with `apt-get install -y wrk`")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_POST_SCRIPT.format(body=_lua_string(request_body().decode())))
    try:
        command = [
            binary,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "-s",
            script.name,
            url + CHAT_PATH,
        ]
        output = subprocess.run(
            pinned(command, core), check=True, capture_output=True, text=True
        ).stdout
    finally:
        os.unlink(script.name)
    return _parse_wrk_rate(output)


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def _parse_wrk_rate(output: str) -> float:
    match = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    if match is None:
        raise RuntimeError(f"wrk printed no Requests/sec line:\n{output}")
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk received errors:\n{output}")
    return float(match.group(1))


# ---------------------------------------------------------------------------
# Other load on the machine, which skews every figure here.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CoreTimes:
    """Jiffies of one core from /proc/stat: busy (all but idle and iowait), irq work, total."""

    busy: int
    interrupts: int
    total: int


def core_jiffies() -> dict[str, CoreTimes]:
    """Return the CoreTimes of every core from /proc/stat ("cpu" is all cores together)."""
    result: dict[str, CoreTimes] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            if not line.startswith("cpu"):
                continue
            name, *fields = line.split()
            values = [int(value) for value in fields]
            # Columns: user nice system idle iowait irq softirq steal guest guest_nice;
            # guest time is already counted in user, so only the first eight add up.
            total = sum(values[:8])
            result[name] = CoreTimes(total - values[3] - values[4], values[5] + values[6], total)
    return result


def busy_percent(
    before: dict[str, CoreTimes], after: dict[str, CoreTimes]
) -> dict[str, tuple[float, float]]:
    """Return {core: (busy %, interrupt %)} between two core_jiffies() snapshots."""
    shares = {}
    for name, end in after.items():
        start = before.get(name, CoreTimes(0, 0, 0))
        total = end.total - start.total
        if total <= 0:
            shares[name] = (0.0, 0.0)
            continue
        busy = 100.0 * (end.busy - start.busy) / total
        shares[name] = (busy, 100.0 * (end.interrupts - start.interrupts) / total)
    return shares


def format_busy(shares: dict[str, tuple[float, float]]) -> str:
    """Render per-core shares as ``cpu0 12% (irq 1%), cpu1 97% (irq 20%)``."""
    parts = [
        f"{name} {busy:.0f}% (irq {interrupts:.0f}%)"
        for name, (busy, interrupts) in sorted(shares.items())
        if name != "cpu"
    ]
    return ", ".join(parts)


class LoadWitness:
    """Measures how busy each core was during a run, and how much of it was this process.

    Other processes on the machine take CPU from the benchmark, and involuntary
    context switches count how often the kernel preempted this process. The "irq"
    share is interrupt and softirq work, which on loopback is mostly the kernel moving
    this benchmark's own packets, charged to the core but to no process.
    """

    def __init__(self, children: bool = False) -> None:
        # RUSAGE_CHILDREN covers child processes once they have been waited for, which
        # suits tools run with subprocess.run.
        self._usage_target = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
        self._subject = "its child processes" if children else "this process"
        self._jiffies = core_jiffies()
        self._usage = resource.getrusage(self._usage_target)
        self._started_ns = time.perf_counter_ns()

    def summary(self) -> str:
        """Return a line with per-core busy shares, this process's CPU share and preemptions."""
        shares = busy_percent(self._jiffies, core_jiffies())
        usage = resource.getrusage(self._usage_target)
        wall_s = (time.perf_counter_ns() - self._started_ns) / 1e9
        cpu_s = (usage.ru_utime - self._usage.ru_utime) + (usage.ru_stime - self._usage.ru_stime)
        preempted = usage.ru_nivcsw - self._usage.ru_nivcsw
        return (
            f"cores busy during the run: {format_busy(shares)}; {self._subject}: "
            f"{100 * cpu_s / wall_s:.0f}% of one core, preempted {preempted} times"
        )


def tree_cpu_seconds(root_pid: int) -> float:
    """Return the user + system CPU seconds of a process and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    cpu_ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces; the fields after it are fixed.
        fields = text.rsplit(")", 1)[1].split()
        parents[int(entry.name)] = int(fields[1])
        cpu_ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    tree = {root_pid}
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        grown = bool(children)
        tree |= children
    return sum(cpu_ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def wait_for_idle(max_busy_percent: float = 15.0, timeout_s: float = 60.0) -> str:
    """Wait until every core was below ``max_busy_percent`` busy for one second.

    Returns a line with how busy the cores were when the wait ended, printed beside
    the figures so that a run on a busy machine is marked as one.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        before = core_jiffies()
        time.sleep(1.0)
        shares = busy_percent(before, core_jiffies())
        per_core = [busy for name, (busy, _) in shares.items() if name != "cpu"]
        idle = all(share <= max_busy_percent for share in per_core)
        if idle or time.monotonic() >= deadline:
            state = "idle" if idle else f"still busy after {timeout_s:.0f} s"
            return f"machine before the run: {state} ({format_busy(shares)})"


# ---------------------------------------------------------------------------
# Figures.
# ---------------------------------------------------------------------------


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Return count, p50, p90, p99 and max of the values (all 0 when there are none)."""
    if not values:
        return {"count": 0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(values)
    return {
        "count": float(len(ordered)),
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
    }
