"""Self-diagnosis: when the agent itself is the bottleneck, does its AgentDiagnosis report it?

Three scenarios, each one open-loop assignment through the real agent runtime (see
bench/inprocess_agent.py) in this process, pinned to core 1, against a server on
core 0. Each prints the figures of the final AssignmentUpdate's AgentDiagnosis (the
controller stores it and ``llmping report`` prints it) beside what really happened:

- ``control``: ``--control-rate-per-s`` (default 100/s) against bench/accuracy_server.py
  with a known TTFT. The agent has room to spare; the verdict should stay empty.
- ``overload``: ``--overload-rate-per-s`` (default 5,000/s, beyond what one core
  parses) against nginx serving a static 64-chunk stream, with the plan's
  max_in_flight at ``--overload-max-in-flight`` (default 1,000, overflow "delay"). The
  agent falls behind its schedule. The verdict should name start lag, event-loop lag
  and CPU, and the achieved rate shows how far behind the agent fell. With no cap (0) the
  in-flight requests grow until the process runs out of file descriptors.
- ``burner``: the control load plus a task in the agent's own event loop that keeps
  the CPU busy for ``--burn-ms`` out of every ``--burn-period-ms`` without yielding
  (the way a slow exporter or a blocking call would). The reported TTFT exceeds the
  injected truth by up to the burn time. The verdict should report the agent as
  saturated, with an event-loop lag close to ``--burn-ms``.

Run:
    python bench/self_diagnosis.py --duration-s 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
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


@contextlib.contextmanager
def accuracy_server(ttft_ms: float, core: int | None) -> Iterator[str]:
    """Run bench/accuracy_server.py (5 ms gaps, 16 chunks) and yield its base URL."""
    command = [
        sys.executable,
        str(BENCH_DIR / "accuracy_server.py"),
        "--ttft-ms",
        str(ttft_ms),
        "--gap-ms",
        "5",
        "--chunks",
        "16",
    ]
    process = subprocess.Popen(harness.pinned(command, core), stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("accuracy server listening on "):
            raise RuntimeError(f"the accuracy server did not start: {line!r}")
        yield line.rsplit(" ", 1)[1]
    finally:
        process.terminate()
        process.communicate(timeout=30)


def open_loop(
    base_url: str, rate_per_s: float, args: argparse.Namespace, max_in_flight: int = 0
) -> pb.Assignment:
    load = pb.LoadSpec(
        mode=pb.LoadSpec.CONSTANT,
        rate_per_s=rate_per_s,
        duration_s=args.warmup_s + args.duration_s,
        warmup_s=args.warmup_s,
        max_in_flight=max_in_flight,
        overflow="delay",
    )
    return build_assignment(build_plan(base_url + "/v1", load))


async def burn_cpu(burn_ms: float, period_ms: float) -> None:
    """Hold the event loop for ``burn_ms`` out of every ``period_ms``, until cancelled."""
    while True:
        until_ns = time.perf_counter_ns() + round(burn_ms * 1e6)
        while time.perf_counter_ns() < until_ns:
            pass
        await asyncio.sleep((period_ms - burn_ms) / 1000)


async def run_with_burner(
    assignment: pb.Assignment, burn_ms: float, period_ms: float
) -> AssignmentResult:
    burner = asyncio.create_task(burn_cpu(burn_ms, period_ms))
    return await run_assignment(assignment, background=burner)


def print_result(
    witness: harness.LoadWitness,
    name: str,
    result: AssignmentResult,
    args: argparse.Namespace,
    rate_per_s: float,
    ttft_truth_ms: float | None,
) -> None:
    """Print the diagnosis next to the achieved rate and the TTFT error."""
    records = [record for record in result.link.records if not record.warmup]
    ok = [record for record in records if not record.error_class]
    sends_ns = sorted(result.scheduled_perf_ns(r) + round(r.start_lag_ms * 1e6) for r in records)
    achieved = (
        (len(sends_ns) - 1) / ((sends_ns[-1] - sends_ns[0]) / 1e9) if len(sends_ns) > 1 else 0.0
    )
    # Latencies count from the scheduled start in open loop, so scheduled + e2e is the end.
    ends_ns = [result.scheduled_perf_ns(r) + round(r.e2e_ms * 1e6) for r in ok]
    span_s = (max(ends_ns) - sends_ns[0]) / 1e9 if ends_ns else 0.0
    completed = len(ok) / span_s if span_s > 0 else 0.0

    diagnosis = result.diagnosis
    print(f"--- {name}: target {rate_per_s:,.0f} requests/s")
    classes = Counter(record.error_class for record in records if record.error_class)
    print(
        f"  sent {len(records)} requests ({achieved:,.0f}/s from send times), "
        f"{len(ok)} succeeded ({completed:,.0f}/s over the {span_s:.1f} s from the first send "
        f"to the last end), errors {dict(classes.most_common(4)) or 0}"
    )
    lags = harness.summarize([record.start_lag_ms for record in records])
    print(
        f"  start lag measured here: p50 {lags['p50']:.2f} ms, p99 {lags['p99']:.2f} ms, "
        f"max {lags['max']:.2f} ms"
    )
    if ttft_truth_ms is not None and ok:
        errors_ms = harness.summarize([record.ttft_ms - ttft_truth_ms for record in ok])
        print(
            f"  TTFT reported - injected {ttft_truth_ms:.0f} ms: p50 {errors_ms['p50']:.2f} ms, "
            f"p99 {errors_ms['p99']:.2f} ms, max {errors_ms['max']:.2f} ms"
        )
    print(
        f"  AgentDiagnosis: start_lag_p99_ms {diagnosis.start_lag_p99_ms:.2f}, "
        f"event_loop_lag_max_ms {diagnosis.event_loop_lag_max_ms:.2f}, "
        f"cpu_percent_max {diagnosis.cpu_percent_max:.0f}, "
        f"requests_delayed_by_cap {diagnosis.requests_delayed_by_cap}, "
        f"requests_dropped_by_cap {diagnosis.requests_dropped_by_cap}"
    )
    print(f"  verdict: {diagnosis.verdict!r}")
    print(f"  agent CPU {result.cpu_s:.1f} s over {result.wall_s:.1f} s")
    print(f"  {witness.summary()}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Show that the agent diagnoses its own overload.")
    parser.add_argument(
        "--duration-s", type=float, default=10.0, help="measured seconds per scenario"
    )
    parser.add_argument(
        "--warmup-s", type=float, default=1.0, help="seconds left out before measuring"
    )
    parser.add_argument(
        "--control-rate-per-s",
        type=float,
        default=100.0,
        help="rate of the control and burner runs",
    )
    parser.add_argument(
        "--overload-rate-per-s", type=float, default=5000.0, help="rate of the overload run"
    )
    parser.add_argument(
        "--overload-max-in-flight",
        type=int,
        default=1000,
        help="plan max_in_flight of the overload run (overflow delay); 0 for no cap",
    )
    parser.add_argument(
        "--ttft-ms", type=float, default=50.0, help="injected TTFT of the accuracy server"
    )
    parser.add_argument("--burn-ms", type=float, default=40.0, help="CPU burst of the burner task")
    parser.add_argument(
        "--burn-period-ms", type=float, default=100.0, help="period of the burner task"
    )
    parser.add_argument(
        "--scenarios", default="control,overload,burner", help="comma-separated subset"
    )
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="agent event loop"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    server_core, client_core = harness.default_cores()
    harness.print_machine_info()
    print(f"cores: servers on {server_core}, agent on {client_core}, loop {args.loop}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(harness.wait_for_idle(), flush=True)
    if client_core is not None:
        os.sched_setaffinity(0, {client_core})
    scenarios = args.scenarios.split(",")

    if "control" in scenarios or "burner" in scenarios:
        with accuracy_server(args.ttft_ms, server_core) as base_url:
            assignment = open_loop(base_url, args.control_rate_per_s, args)
            if "control" in scenarios:
                witness = harness.LoadWitness()
                result = run_on_loop(run_assignment(assignment), args.loop)
                print_result(
                    witness, "control", result, args, args.control_rate_per_s, args.ttft_ms
                )
            if "burner" in scenarios:
                coroutine = run_with_burner(assignment, args.burn_ms, args.burn_period_ms)
                witness = harness.LoadWitness()
                result = run_on_loop(coroutine, args.loop)
                name = f"burner ({args.burn_ms:.0f} ms busy every {args.burn_period_ms:.0f} ms)"
                print_result(witness, name, result, args, args.control_rate_per_s, args.ttft_ms)

    if "overload" in scenarios:
        with harness.nginx_server(harness.build_event_stream(64), server_core) as server:
            cap = args.overload_max_in_flight
            assignment = open_loop(server.url, args.overload_rate_per_s, args, cap)
            witness = harness.LoadWitness()
            result = run_on_loop(run_assignment(assignment), args.loop)
            print_result(witness, "overload", result, args, args.overload_rate_per_s, None)


if __name__ == "__main__":
    main()
