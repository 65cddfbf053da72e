"""Agent ceiling: streaming responses per second that one llmping agent process parses.

The server responds at once, so the agent is the only thing that can limit the rate.
nginx serves a static event-stream file on a free loopback port, with one worker
process pinned to core 0. The file has 64 OpenAI-style chunks with one word of text
each, a finish chunk, a usage chunk and ``data: [DONE]`` (16 KB). The load generators
are pinned to core 1 and run closed loop (each of N connections sends its next request
as soon as the previous response has ended) for ``--duration-s`` after ``--warmup-s``:

- ``llmping``: the real agent runtime in one process: ``AssignmentRunner`` with its
  closed-loop driver, ``RequestExecutor`` (aiohttp) and the OpenAI stream parser, one
  record per response, records batched and serialized the way the agent sends them.
  Only the gRPC connection to a controller is left out; batches are counted instead.
- ``locust``: Locust's FastHttpUser (geventhttpclient) with the same request, reading
  the body and parsing every ``data:`` line with ``json.loads`` (bench/locust_stream.py),
  from a separate virtual environment (``--locust``).
- ``wrk``: one wrk thread; it reads the bytes without parsing them, so it shows what
  this machine's loopback and nginx can serve at all.

With ``--processes 2`` the llmping figure is also taken with two agent processes side
by side, one per core (nginx then shares core 0 with one of them), which is what an
agent started with several worker processes would do. ``--profile`` records the
llmping process with py-spy and prints where its CPU time goes.

Setup (Debian; the Locust virtual environment keeps gevent out of llmping's):
    apt-get install -y nginx wrk
    python3 -m venv .bench-venv && .bench-venv/bin/pip install locust
    pip install py-spy      # only for --profile

Run:
    python bench/agent_ceiling.py --duration-s 10 --concurrency 32,64,128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import harness
from inprocess_agent import (
    AssignmentResult,
    build_assignment,
    build_plan,
    run_assignment,
    run_on_loop,
)
from plain_client import KINDS as PLAIN_KINDS
from plain_client import run_plain

from llmping.agent.tracing import AgentTracing
from llmping.otel import OtlpTarget, build_tracer_provider
from llmping.v1 import llmping_pb2 as pb

BENCH_DIR = Path(__file__).resolve().parent
# Locust pins gevent and friends, so it lives in its own virtualenv (see the docstring).
DEFAULT_LOCUST = str(BENCH_DIR.parent / ".bench-venv" / "bin" / "locust")
WORKER_KINDS = ("llmping", *PLAIN_KINDS)


# ---------------------------------------------------------------------------
# The llmping worker: one agent process, run as a subprocess pinned to a core.
# ---------------------------------------------------------------------------


@dataclass
class WorkerResult:
    """Figures of one worker process, printed as one JSON line."""

    concurrency: int
    measured_s: float
    responses: int
    responses_per_s: float
    errors: dict[str, int]
    text_chunks_per_response: float
    ttft_p50_ms: float
    e2e_p50_ms: float
    e2e_p99_ms: float
    cpu_s: float
    verdict: str
    loop: str
    batches: int = 0
    machine_load: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def ceiling_assignment(
    base_url: str, concurrency: int, duration_s: float, warmup_s: float
) -> pb.Assignment:
    """Build a closed-loop assignment against the nginx server at ``base_url``."""
    load = pb.LoadSpec(
        mode=pb.LoadSpec.CLOSED,
        concurrency=concurrency,
        duration_s=warmup_s + duration_s,
        warmup_s=warmup_s,
    )
    return build_assignment(build_plan(base_url + "/v1", load))


async def run_llmping(
    base_url: str, concurrency: int, duration_s: float, warmup_s: float, otlp_endpoint: str
) -> WorkerResult:
    """Run one closed-loop assignment through the real runner and summarize its records.

    With an ``otlp_endpoint`` every request becomes a span exported there over OTLP gRPC.
    """
    tracing = None
    if otlp_endpoint:
        provider = build_tracer_provider(
            "llmping-agent", {"service.instance.id": "bench-agent"}, OtlpTarget(otlp_endpoint)
        )
        tracing = AgentTracing(provider, "bench-agent", request_sample_ratio=1.0)
    witness = harness.LoadWitness()
    assignment = ceiling_assignment(base_url, concurrency, duration_s, warmup_s)
    result = await run_assignment(assignment, tracing=tracing)
    summary = summarize_records(result, concurrency, duration_s)
    summary.machine_load = witness.summary()
    if tracing is not None:
        # Export what is still queued; the time it takes is part of tracing's cost.
        flush_started_ns = time.perf_counter_ns()
        await asyncio.to_thread(tracing.shutdown)
        summary.extra["tracing_flush_s"] = (time.perf_counter_ns() - flush_started_ns) / 1e9
    return summary


def summarize_records(
    result: AssignmentResult, concurrency: int, duration_s: float
) -> WorkerResult:
    """Count the measured (non-warm-up) records and their latencies."""
    link = result.link
    measured = [record for record in link.records if not record.warmup]
    errors = Counter(record.error_class for record in measured if record.error_class)
    successes = [record for record in measured if not record.error_class]
    chunks = sum(record.content_chunks for record in successes) / max(1, len(successes))
    ttft = harness.summarize([record.ttft_ms for record in successes])
    e2e = harness.summarize([record.e2e_ms for record in successes])

    update = link.final_update
    verdict = update.diagnosis.verdict if update is not None else "no final update"
    if update is not None and update.state != pb.AssignmentUpdate.FINISHED:
        verdict = f"{pb.AssignmentUpdate.State.Name(update.state)}: {update.message}; {verdict}"

    return WorkerResult(
        concurrency=concurrency,
        measured_s=duration_s,
        responses=len(measured),
        responses_per_s=len(successes) / duration_s,
        errors=dict(errors),
        text_chunks_per_response=chunks,
        ttft_p50_ms=ttft["p50"],
        e2e_p50_ms=e2e["p50"],
        e2e_p99_ms=e2e["p99"],
        cpu_s=result.cpu_s,
        verdict=verdict,
        loop=type(asyncio.get_running_loop()).__module__,
        batches=link.batches,
        extra={
            # All records, warm-up included, over all CPU time: robust to other load.
            "responses_per_cpu_s": len(link.records) / result.cpu_s if result.cpu_s else 0.0,
            "records_total": float(len(link.records)),
            "cpu_percent_max": update.diagnosis.cpu_percent_max if update else 0.0,
            "event_loop_lag_max_ms": update.diagnosis.event_loop_lag_max_ms if update else 0.0,
        },
    )


def worker_main(args: argparse.Namespace) -> None:
    """Entry point of the ``--worker KIND`` subprocess: run, then print one JSON line."""
    concurrency = args.concurrency[0]
    if args.worker == "llmping":
        coroutine = run_llmping(
            args.url, concurrency, args.duration_s, args.warmup_s, args.otlp_endpoint
        )
        result = run_on_loop(coroutine, args.loop)
    else:
        witness = harness.LoadWitness()
        reference = run_plain(args.worker, args.url, concurrency, args.duration_s, args.warmup_s)
        rate = run_on_loop(reference, args.loop)
        result = WorkerResult(
            concurrency=concurrency,
            measured_s=args.duration_s,
            responses=round(rate * args.duration_s),
            responses_per_s=rate,
            errors={},
            text_chunks_per_response=0.0,
            ttft_p50_ms=0.0,
            e2e_p50_ms=0.0,
            e2e_p99_ms=0.0,
            cpu_s=0.0,
            verdict="",
            loop=args.loop,
            machine_load=witness.summary(),
        )
    print(json.dumps(asdict(result)), flush=True)


# ---------------------------------------------------------------------------
# The orchestrator: nginx, then each tool at each concurrency.
# ---------------------------------------------------------------------------


def worker_command(
    args: argparse.Namespace,
    url: str,
    concurrency: int,
    kind: str = "llmping",
    otlp_endpoint: str = "",
) -> list[str]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--url",
        url,
        "--concurrency",
        str(concurrency),
        "--duration-s",
        str(args.duration_s),
        "--warmup-s",
        str(args.warmup_s),
        "--loop",
        args.loop,
    ]
    if otlp_endpoint:
        command += ["--otlp-endpoint", otlp_endpoint]
    return command


def run_workers(
    args: argparse.Namespace,
    url: str,
    concurrency: int,
    cores: list[int | None],
    kind: str = "llmping",
    otlp_endpoint: str = "",
) -> list[WorkerResult]:
    """Start one worker per core in ``cores`` at the same time; return their results."""
    processes = []
    for core in cores:
        command = worker_command(args, url, concurrency, kind, otlp_endpoint)
        command = harness.pinned(command, core)
        processes.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    results = []
    for process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{kind} worker failed with exit status {process.returncode}")
        results.append(WorkerResult(**json.loads(output.strip().splitlines()[-1])))
    return results


def run_traced(
    args: argparse.Namespace,
    url: str,
    concurrency: int,
    client_core: int | None,
    sink_core: int | None,
) -> None:
    """Run llmping with tracing on against a fresh OTLP sink and print both sides."""
    command = harness.pinned([sys.executable, str(BENCH_DIR / "otlp_sink.py")], sink_core)
    sink = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        line = sink.stdout.readline().strip()
        if not line.startswith("otlp sink listening on "):
            raise RuntimeError(f"the OTLP sink did not start: {line!r}")
        endpoint = line.rsplit(" ", 1)[1]
        (result,) = run_workers(args, url, concurrency, [client_core], "llmping", endpoint)
    finally:
        sink.send_signal(signal.SIGTERM)
        output, _ = sink.communicate(timeout=30)
    received = json.loads(output.strip().splitlines()[-1])
    print_worker("llmping + tracing", result)
    print(
        f"  OTLP sink received {received['spans']} spans in {received['export_calls']} export "
        f"calls for {result.extra['records_total']:.0f} records (warm-up included) and one "
        f"assignment span; flushing the exporter took {result.extra['tracing_flush_s']:.2f} s",
        flush=True,
    )


def run_llmping_profiled(
    args: argparse.Namespace, url: str, concurrency: int, core: int | None
) -> Path:
    """Run one worker under ``py-spy record`` and return the collapsed-stack file."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    output = Path(tempfile.gettempdir()) / f"llmping-ceiling-c{concurrency}.txt"
    command = [py_spy, "record", "--format", "raw", "--rate", "250", "--output", str(output), "--"]
    command += worker_command(args, url, concurrency)
    subprocess.run(harness.pinned(command, core), check=True, stdout=subprocess.DEVNULL)
    return output


def print_profile(collapsed: Path, top: int = 25) -> None:
    """Print the functions with the most samples, by self time and by inclusive time."""
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame]
        samples += count
        if frames:
            self_counts[_short_frame(frames[-1])] += count
        for frame in {_short_frame(frame) for frame in frames}:
            total_counts[frame] += count
    print(f"profile: {samples} samples, {collapsed}")
    print("  self time:")
    for frame, count in self_counts.most_common(top):
        print(f"    {100 * count / samples:5.1f}%  {frame}")
    print("  inclusive time:")
    for frame, count in total_counts.most_common(top):
        print(f"    {100 * count / samples:5.1f}%  {frame}")


def _short_frame(frame: str) -> str:
    """Turn ``func (/path/to/pkg/module.py:12)`` into ``func (pkg/module.py)``."""
    name, _, location = frame.partition(" (")
    path = location.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    return f"{name} ({'/'.join(parts[-2:])})"


def run_locust(args: argparse.Namespace, url: str, concurrency: int, core: int | None) -> float:
    """Run Locust headless and return responses per second after the warm-up."""
    run_s = round(args.warmup_s + args.duration_s) + 1
    command = [
        args.locust,
        "-f",
        str(BENCH_DIR / "locust_stream.py"),
        "--headless",
        "--users",
        str(concurrency),
        "--spawn-rate",
        "100000",
        "--run-time",
        f"{run_s}s",
        "--host",
        url,
        "--json",
        "--skip-log",
        "--loglevel",
        "ERROR",
    ]
    completed = subprocess.run(harness.pinned(command, core), capture_output=True, text=True)
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"locust failed ({completed.returncode}): {completed.stderr[-2000:]}")
    stats = json.loads(completed.stdout)
    entry = stats[0]
    if entry["num_failures"]:
        raise RuntimeError(
            f"locust saw {entry['num_failures']} failures: {completed.stderr[-2000:]}"
        )
    return rate_after_warmup(entry["num_reqs_per_sec"], args.warmup_s)


def rate_after_warmup(per_second: dict[str, int], warmup_s: float) -> float:
    """Average the whole seconds after the warm-up, leaving out the last, partial one."""
    seconds = sorted(int(second) for second in per_second)
    first = seconds[0] + int(warmup_s) + 1
    kept = [per_second[str(second)] for second in seconds if first <= second < seconds[-1]]
    if not kept:
        raise RuntimeError("locust ran too short to leave whole seconds after the warm-up")
    return sum(kept) / len(kept)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure how many streaming responses per second one llmping agent parses."
    )
    parser.add_argument("--duration-s", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument(
        "--warmup-s", type=float, default=2.0, help="seconds left out before measuring"
    )
    parser.add_argument(
        "--concurrency",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[32, 64, 128],
        help="comma-separated connection counts, one run each (default 32,64,128)",
    )
    parser.add_argument("--chunks", type=int, default=64, help="text chunks per response")
    parser.add_argument(
        "--tools",
        default="llmping,aiohttp,aiohttp-json,aiohttp-orjson,locust,wrk",
        help="comma-separated subset of llmping, aiohttp, aiohttp-json, aiohttp-orjson, "
        "locust, wrk",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="also run this many llmping processes at once (1 or 2)",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of the llmping process",
    )
    parser.add_argument("--locust", default=DEFAULT_LOCUST, help="path of the locust executable")
    parser.add_argument(
        "--profile", action="store_true", help="profile one llmping run with py-spy"
    )
    parser.add_argument("--worker", choices=WORKER_KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="also run llmping with a span per request exported to a local OTLP sink",
    )
    parser.add_argument("--otlp-endpoint", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def print_worker(label: str, result: WorkerResult) -> None:
    print(
        f"{label}: {result.responses_per_s:,.0f} responses/s "
        f"({result.responses} responses in {result.measured_s:.0f} s, errors {result.errors or 0}, "
        f"{result.text_chunks_per_response:.0f} text chunks each, "
        f"e2e p50 {result.e2e_p50_ms:.2f} ms p99 {result.e2e_p99_ms:.2f} ms, "
        f"CPU {result.cpu_s:.1f} s, loop {result.loop}, "
        f"verdict {result.verdict or 'none'!r})",
        flush=True,
    )
    per_cpu_s = result.extra.get("responses_per_cpu_s", 0.0)
    print(f"  {per_cpu_s:,.0f} responses per CPU second; {result.machine_load}", flush=True)


def main() -> None:
    args = parse_args()
    if args.worker:
        worker_main(args)
        return

    server_core, client_core = harness.default_cores()
    tools = args.tools.split(",")
    harness.print_machine_info()
    print(f"cores: nginx on {server_core}, load generator on {client_core}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(harness.wait_for_idle(), flush=True)

    body = harness.build_event_stream(args.chunks)
    with harness.nginx_server(body, server_core) as server:
        print(f"nginx at {server.url}, response body {len(body)} bytes")
        for concurrency in args.concurrency:
            print(f"--- concurrency {concurrency}", flush=True)
            if "llmping" in tools:
                (result,) = run_workers(args, server.url, concurrency, [client_core])
                print_worker("llmping (1 process)", result)
                if args.processes >= 2:
                    results = run_workers(args, server.url, concurrency, [client_core, server_core])
                    total = sum(result.responses_per_s for result in results)
                    print(
                        f"llmping (2 processes, cores {client_core} and {server_core}): "
                        f"{total:,.0f} responses/s in total"
                    )
                    for number, result in enumerate(results):
                        print_worker(f"  process {number}", result)
            if args.tracing:
                run_traced(args, server.url, concurrency, client_core, server_core)
            for kind in PLAIN_KINDS:
                if kind in tools:
                    (result,) = run_workers(args, server.url, concurrency, [client_core], kind)
                    print(f"{kind}: {result.responses_per_s:,.0f} responses/s", flush=True)
                    print(f"  {result.machine_load}", flush=True)
            if "locust" in tools:
                witness = harness.LoadWitness(children=True)
                rate = run_locust(args, server.url, concurrency, client_core)
                print(f"locust: {rate:,.0f} responses/s\n  {witness.summary()}", flush=True)
            if "wrk" in tools:
                witness = harness.LoadWitness(children=True)
                rate = harness.run_wrk(server.url, concurrency, args.duration_s, client_core)
                print(f"wrk: {rate:,.0f} responses/s\n  {witness.summary()}", flush=True)
        if args.profile:
            concurrency = args.concurrency[0]
            print(f"--- py-spy profile of llmping at concurrency {concurrency}", flush=True)
            print_profile(run_llmping_profiled(args, server.url, concurrency, client_core))


if __name__ == "__main__":
    main()
