"""Measurement accuracy: llmping's reported TTFT and E2E against injected, known delays.

The server is bench/accuracy_server.py in its own process on core 0: each response's
first text chunk leaves ``--ttft-ms`` after the request arrived and the last one
(with the finish chunk, usage and [DONE]) ``--ttft-ms + (chunks - 1) * --gap-ms``
after it, within microseconds. This process pins itself to core 1. It runs one
open-loop assignment at ``--rate-per-s`` (constant pacing by default) for
``--duration-s`` after ``--warmup-s`` through the real agent runtime: the runner, the
open-loop driver, RequestExecutor and the stream parser (see bench/inprocess_agent.py).

Figures, over the non-warm-up records:

- TTFT error and E2E error: reported value minus the injected truth. In open loop
  llmping counts latency from the scheduled start, so the error holds everything the
  agent adds: start lag, the loopback trip both ways, the server's own lateness and the
  time until the agent reads and timestamps the chunk.
- Achieved rate: requests actually sent per second, from their send times, against
  the target.
- Start lag: send time minus scheduled time.
- Breakdown per request, matched to the server's own timings by the response id the
  server writes into its chunks (both processes read CLOCK_MONOTONIC): request
  delivery (agent send to server read), server lateness (first and last chunk write
  against due time) and read delay (server write to the agent's timestamp).

Run:
    python bench/accuracy.py --rate-per-s 500 --duration-s 20
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import harness
from inprocess_agent import (
    AssignmentResult,
    build_assignment,
    build_plan,
    run_assignment,
    run_on_loop,
)

from llmping.v1 import llmping_pb2 as pb

BENCH_DIR = Path(__file__).resolve().parent


@dataclass
class ServerTimings:
    """One request as the accuracy server saw it (perf_counter_ns)."""

    arrival_ns: int
    first_write_ns: int
    last_write_ns: int


def start_server(
    args: argparse.Namespace, core: int | None, timings_path: str
) -> tuple[subprocess.Popen[str], str]:
    """Start the accuracy server and return (process, base URL)."""
    command = [
        sys.executable,
        str(BENCH_DIR / "accuracy_server.py"),
        "--port",
        "0",
        "--ttft-ms",
        str(args.ttft_ms),
        "--gap-ms",
        str(args.gap_ms),
        "--chunks",
        str(args.chunks),
        "--timings-file",
        timings_path,
    ]
    process = subprocess.Popen(harness.pinned(command, core), stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("accuracy server listening on "):
        process.kill()
        raise RuntimeError(f"the accuracy server did not start: {line!r}")
    return process, line.rsplit(" ", 1)[1]


def stop_server(process: subprocess.Popen[str]) -> dict[str, object]:
    """Stop the server with SIGTERM and return the lateness report it prints."""
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    return dict(json.loads(output.strip().splitlines()[-1]))


def read_server_timings(path: str) -> dict[str, ServerTimings]:
    """Read the per-request timings file, keyed by response id."""
    timings = {}
    for line in Path(path).read_text().splitlines():
        entry = json.loads(line)
        timings[entry["id"]] = ServerTimings(
            entry["arrival_ns"], entry["first_write_ns"], entry["last_write_ns"]
        )
    return timings


def accuracy_assignment(args: argparse.Namespace, base_url: str) -> pb.Assignment:
    mode = pb.LoadSpec.POISSON if args.poisson else pb.LoadSpec.CONSTANT
    load = pb.LoadSpec(
        mode=mode,
        rate_per_s=args.rate_per_s,
        duration_s=args.warmup_s + args.duration_s,
        warmup_s=args.warmup_s,
    )
    return build_assignment(build_plan(base_url + "/v1", load))


def row(name: str, values: list[float], target: str = "") -> str:
    figures = harness.summarize(values)
    return (
        f"  {name:<34} p50 {figures['p50']:8.3f}  p99 {figures['p99']:8.3f}  "
        f"max {figures['max']:8.3f}  (n={int(figures['count'])}){target}"
    )


def report(
    args: argparse.Namespace,
    result: AssignmentResult,
    timings: dict[str, ServerTimings],
    lateness: dict[str, object],
) -> None:
    """Print every accuracy figure."""
    records = [record for record in result.link.records if not record.warmup]
    failed = [record for record in records if record.error_class]
    ok = [record for record in records if not record.error_class]
    e2e_truth_ms = args.ttft_ms + (args.chunks - 1) * args.gap_ms
    print(f"requests: {len(records)} measured, {len(failed)} failed", end="")
    if failed:
        classes: dict[str, int] = {}
        for record in failed:
            classes[record.error_class] = classes.get(record.error_class, 0) + 1
        print(f" {classes}", end="")
    print(f"; injected TTFT {args.ttft_ms} ms, E2E {e2e_truth_ms} ms")

    print("error against the injected truth (ms; target: within 1 ms at p99):")
    print(row("TTFT reported - injected", [r.ttft_ms - args.ttft_ms for r in ok]))
    print(row("E2E reported - injected", [r.e2e_ms - e2e_truth_ms for r in ok]))
    print(row("start lag (target p99 < 2 ms)", [r.start_lag_ms for r in records]))

    print_rate(args, result, records)
    print_breakdown(result, ok, timings, args)
    print(
        f"server lateness over all requests (ms): {json.dumps(lateness.get('any_write_late_ms'))}"
    )
    diagnosis = result.diagnosis
    print(
        f"agent diagnosis: start lag p99 {diagnosis.start_lag_p99_ms:.3f} ms, event-loop lag max "
        f"{diagnosis.event_loop_lag_max_ms:.3f} ms, CPU max {diagnosis.cpu_percent_max:.0f}%, "
        f"verdict {diagnosis.verdict or 'none'!r}"
    )
    print(f"agent CPU: {result.cpu_s:.1f} s over {result.wall_s:.1f} s")


def print_rate(
    args: argparse.Namespace, result: AssignmentResult, records: list[pb.Record]
) -> None:
    sends_ns = sorted(result.scheduled_perf_ns(r) + round(r.start_lag_ms * 1e6) for r in records)
    if len(sends_ns) < 2:
        print("rate: too few requests")
        return
    achieved = (len(sends_ns) - 1) / ((sends_ns[-1] - sends_ns[0]) / 1e9)
    per_duration = len(records) / args.duration_s
    deviation = 100 * (achieved - args.rate_per_s) / args.rate_per_s
    print(
        f"rate: target {args.rate_per_s:.1f}/s, achieved {achieved:.2f}/s from send times "
        f"({deviation:+.3f}%; target within 0.5%), {per_duration:.2f}/s counted over the "
        f"{args.duration_s:.0f} s window"
    )


def print_breakdown(
    result: AssignmentResult,
    ok: list[pb.Record],
    timings: dict[str, ServerTimings],
    args: argparse.Namespace,
) -> None:
    delivery, first_late, last_late, first_read, last_read = [], [], [], [], []
    # (TTFT error, start lag, delivery, server lateness, read delay) of each request.
    ttft_parts: list[tuple[float, float, float, float, float]] = []
    ttft_ns = round(args.ttft_ms * 1e6)
    e2e_ns = round((args.ttft_ms + (args.chunks - 1) * args.gap_ms) * 1e6)
    for record in ok:
        server = timings.get(record.response_id)
        if server is None:
            continue
        scheduled_ns = result.scheduled_perf_ns(record)
        send_ns = scheduled_ns + round(record.start_lag_ms * 1e6)
        delivery.append((server.arrival_ns - send_ns) / 1e6)
        first_late.append((server.first_write_ns - server.arrival_ns - ttft_ns) / 1e6)
        last_late.append((server.last_write_ns - server.arrival_ns - e2e_ns) / 1e6)
        first_read.append((scheduled_ns + record.ttft_ms * 1e6 - server.first_write_ns) / 1e6)
        last_read.append((scheduled_ns + record.e2e_ms * 1e6 - server.last_write_ns) / 1e6)
        ttft_parts.append(
            (
                record.ttft_ms - args.ttft_ms,
                record.start_lag_ms,
                delivery[-1],
                first_late[-1],
                first_read[-1],
            )
        )
    print(f"breakdown (ms), {len(delivery)} of {len(ok)} records matched to server timings:")
    print(row("request delivery (send -> server)", delivery))
    print(row("server lateness, first chunk", first_late))
    print(row("server lateness, last chunk", last_late))
    print(row("read delay, first chunk", first_read))
    print(row("read delay, last chunk", last_read))
    print_tail(ttft_parts)


def print_tail(ttft_parts: list[tuple[float, float, float, float, float]]) -> None:
    """Print what the requests with a TTFT error at or above its p99 spent their time on."""
    if not ttft_parts:
        return
    ttft_parts.sort()
    tail = ttft_parts[int(0.99 * len(ttft_parts)) :]
    means = [sum(part[index] for part in tail) / len(tail) for index in range(5)]
    print(
        f"the {len(tail)} requests with the largest TTFT error (mean ms): error {means[0]:.3f} = "
        f"start lag {means[1]:.3f} + delivery {means[2]:.3f} + server lateness "
        f"{means[3]:.3f} + read delay {means[4]:.3f}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare llmping's latencies with injected delays."
    )
    parser.add_argument(
        "--rate-per-s", type=float, default=500.0, help="open-loop arrivals per second"
    )
    parser.add_argument("--duration-s", type=float, default=20.0, help="measured seconds")
    parser.add_argument(
        "--warmup-s", type=float, default=2.0, help="seconds left out before measuring"
    )
    parser.add_argument("--ttft-ms", type=float, default=100.0, help="injected time to first token")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="injected gap between chunks")
    parser.add_argument("--chunks", type=int, default=32, help="text chunks per response")
    parser.add_argument(
        "--poisson", action="store_true", help="Poisson arrivals instead of constant"
    )
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="agent event loop"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    server_core, client_core = harness.default_cores()
    harness.print_machine_info()
    print(f"cores: server on {server_core}, agent on {client_core}, loop {args.loop}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(harness.wait_for_idle(), flush=True)

    with tempfile.NamedTemporaryFile(prefix="llmping-accuracy-", suffix=".jsonl") as timings_file:
        process, base_url = start_server(args, server_core, timings_file.name)
        try:
            if client_core is not None:
                os.sched_setaffinity(0, {client_core})
            witness = harness.LoadWitness()
            result = run_on_loop(run_assignment(accuracy_assignment(args, base_url)), args.loop)
            print(witness.summary())
        finally:
            lateness = stop_server(process)
        timings = read_server_timings(timings_file.name)
    report(args, result, timings, lateness)


if __name__ == "__main__":
    main()
