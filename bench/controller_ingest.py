"""Controller benchmark: record ingest into SQLite, and a report over a million records.

What it measures:

1. Ingest: ``Store.insert_batch`` (one SQLite transaction per batch, as the controller
   stores every ResultBatch) with batches of ``--batch-size`` records, until
   ``--records`` are stored. Each batch is decoded from its serialized ResultBatch
   bytes first, as gRPC hands it to the controller, so the figure covers decode +
   row conversion + insert. It runs twice: straight on the calling thread
   (``direct``), and through ``StoreWorker`` from asyncio with ``--producers``
   concurrent callers, the way the controller's agent streams call it (``worker``).
2. Report: ``build_report`` over the run's stored records, on a read-only connection,
   as the controller does for ``llmping report``, with its wall time and the
   process's peak resident memory before and after.

The records are realistic streaming records with every field set, spread over 2
providers x 2 targets and ``--records / 1000`` seconds of start times. 2% of them are
HTTP 429 failures that carry rate-limit headers (the agent keeps those headers for
429s only). A pool of distinct records is built before timing starts and reused,
because building a million protobuf messages would take longer than storing them.

Usage:
    python bench/controller_ingest.py [--records 1000000] [--batch-size 500]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import LoadWitness, print_machine_info

from llmping.controller.aggregate import build_report
from llmping.controller.store import AssignmentRow, RunRow, Store, StoreWorker, open_reader
from llmping.v1 import llmping_pb2 as pb

PROVIDERS = ("openai", "relay-a")
TARGETS = ("shanghai", "tokyo")
POOL_BATCHES = 40
RUN_ID = "run-bench"


@dataclass(frozen=True)
class Assignment:
    """One agent's share of the benchmark run: which provider x target its records carry."""

    assignment_id: str
    agent_id: str
    target: str


def build_plan() -> pb.Plan:
    """Return a plan with the benchmark's providers and targets."""
    plan = pb.Plan(name="ingest-bench")
    for name in PROVIDERS:
        plan.providers.add(
            name=name, kind="openai", base_url="https://api.example.com/v1", model="gpt-4o"
        )
    for target in TARGETS:
        plan.targets.add(name=target, selector={"region": target})
    plan.load.mode = pb.LoadSpec.CONSTANT
    plan.load.rate_per_s = 500
    return plan


def build_record(
    rng: random.Random, index: int, provider: str, origin_ns: int, span_s: float
) -> pb.Record:
    """Build one record with every field a real streaming request fills."""
    ttft_ms = rng.lognormvariate(6.0, 0.4)
    e2e_ms = ttft_ms + rng.uniform(800.0, 2400.0)
    start_ns = origin_ns + int(rng.uniform(0.0, span_s) * 1e9)
    record = pb.Record(
        provider=provider,
        model="gpt-4o",
        index=index,
        scheduled_unix_ns=start_ns,
        start_unix_ns=start_ns + 120_000,
        start_lag_ms=0.12,
        dns_ms=0.0,
        connect_ms=0.0,
        tls_ms=0.0,
        connection_reused=True,
        ttfb_ms=ttft_ms - 2.0,
        ttft_ms=ttft_ms,
        ttft_content_ms=ttft_ms,
        e2e_ms=e2e_ms,
        itl_count=63,
        itl_mean_ms=(e2e_ms - ttft_ms) / 63,
        itl_p50_ms=(e2e_ms - ttft_ms) / 70,
        itl_p90_ms=(e2e_ms - ttft_ms) / 40,
        itl_max_ms=(e2e_ms - ttft_ms) / 10,
        tpot_ms=(e2e_ms - ttft_ms) / 63,
        output_tokens=64,
        input_tokens=12,
        content_chunks=64,
        bytes_received=16286,
        http_status=200,
        http_version="HTTP/1.1",
        remote_ip="127.0.0.1",
        finish_reason="stop",
        response_model="gpt-4o-2024-08-06",
        response_id=f"chatcmpl-{index:012d}",
        attempt=1,
        trace_id=f"{rng.getrandbits(128):032x}",
        span_id=f"{rng.getrandbits(64):016x}",
        clock_offset_ns=-1_250_000,
    )
    if rng.random() < 0.02:
        # The agent keeps rate-limit headers for 429 answers only.
        record.rate_limit_headers.update({"x-ratelimit-remaining-requests": "0"})
        record.error_class = "http_429"
        record.error_detail = "Rate limit reached for gpt-4o, retry after 1 s"
        record.error_phase = "headers"
        record.http_status = 429
        record.ClearField("ttft_ms")
        record.ClearField("e2e_ms")
    return record


def build_pool(batch_size: int, span_s: float, origin_ns: int) -> list[list[bytes]]:
    """Return, per provider, POOL_BATCHES serialized ResultBatch payloads of distinct records."""
    rng = random.Random(7)
    pool: list[list[bytes]] = []
    for provider in PROVIDERS:
        payloads = []
        for batch_index in range(POOL_BATCHES):
            batch = pb.ResultBatch()
            for offset in range(batch_size):
                index = batch_index * batch_size + offset
                batch.records.append(build_record(rng, index, provider, origin_ns, span_s))
            payloads.append(batch.SerializeToString())
        pool.append(payloads)
    return pool


def create_run(store: Store, plan: pb.Plan, origin_ns: int) -> list[Assignment]:
    """Insert the run and one assignment per provider x target; return the assignments."""
    assignments = [
        Assignment(f"asg-{provider}-{target}", f"agent-{target}", target)
        for provider in PROVIDERS
        for target in TARGETS
    ]
    run = RunRow(
        RUN_ID, plan.name, plan.SerializeToString(), pb.RUNNING, "", origin_ns, origin_ns, 0, ""
    )
    rows = [
        AssignmentRow(
            a.assignment_id,
            RUN_ID,
            a.agent_id,
            a.target,
            b"",
            pb.AssignmentUpdate.RUNNING,
            "",
            0,
            0,
            None,
            0,
        )
        for a in assignments
    ]
    store.insert_run(run, rows)
    return assignments


def batch_plan(
    total_records: int, batch_size: int, assignments: Sequence[Assignment]
) -> list[tuple[int, int]]:
    """Return (assignment number, seq) for every batch, round robin over the assignments."""
    batches = total_records // batch_size
    seqs = [0] * len(assignments)
    order = []
    for number in range(batches):
        which = number % len(assignments)
        seqs[which] += 1
        order.append((which, seqs[which]))
    return order


def store_one(store: Store, payload: bytes, assignment: Assignment, seq: int) -> int:
    """Decode one serialized batch and store it; return the number of records stored."""
    batch = pb.ResultBatch.FromString(payload)
    identity = (RUN_ID, assignment.assignment_id, assignment.agent_id, assignment.target)
    store.insert_batch(assignment.assignment_id, seq, batch.records, identity)
    return len(batch.records)


def ingest_direct(
    store: Store,
    pool: list[list[bytes]],
    order: list[tuple[int, int]],
    assignments: Sequence[Assignment],
) -> tuple[int, float]:
    """Store every batch from this thread; return (records, seconds)."""
    stored = 0
    started_ns = time.perf_counter_ns()
    for number, (which, seq) in enumerate(order):
        payload = pool[which % len(PROVIDERS)][number % POOL_BATCHES]
        stored += store_one(store, payload, assignments[which], seq)
    return stored, (time.perf_counter_ns() - started_ns) / 1e9


async def ingest_worker(
    store: Store,
    pool: list[list[bytes]],
    order: list[tuple[int, int]],
    assignments: Sequence[Assignment],
    producers: int,
) -> tuple[int, float]:
    """Store every batch through StoreWorker from ``producers`` concurrent tasks."""
    worker = StoreWorker(store)
    queue: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()
    for number, (which, seq) in enumerate(order):
        queue.put_nowait((number, which, seq))
    stored = 0

    async def produce() -> None:
        nonlocal stored
        while not queue.empty():
            number, which, seq = queue.get_nowait()
            payload = pool[which % len(PROVIDERS)][number % POOL_BATCHES]
            # The controller decodes on the event loop (grpc.aio) and stores on the worker.
            batch = pb.ResultBatch.FromString(payload)
            assignment = assignments[which]
            identity = (RUN_ID, assignment.assignment_id, assignment.agent_id, assignment.target)
            await worker.call(
                store.insert_batch, assignment.assignment_id, seq, batch.records, identity
            )
            stored += len(batch.records)

    started_ns = time.perf_counter_ns()
    await asyncio.gather(*(produce() for _ in range(producers)))
    elapsed_s = (time.perf_counter_ns() - started_ns) / 1e9
    await worker.close()
    return stored, elapsed_s


def peak_rss_mib() -> float:
    """Return this process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_report(path: Path, plan: pb.Plan, origin_ns: int) -> tuple[float, pb.Report]:
    """Build the run's report on a read-only connection; return (seconds, report)."""
    run = pb.RunInfo(
        run_id=RUN_ID, plan_name=plan.name, state=pb.COMPLETED, start_at_unix_ns=origin_ns
    )
    conn = open_reader(path)
    try:
        started_ns = time.perf_counter_ns()
        report = build_report(conn, run, plan)
        return (time.perf_counter_ns() - started_ns) / 1e9, report
    finally:
        conn.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark controller ingest and report time.")
    parser.add_argument("--records", type=int, default=1_000_000, help="records to store per mode")
    parser.add_argument("--batch-size", type=int, default=500, help="records per ResultBatch")
    parser.add_argument(
        "--producers", type=int, default=4, help="concurrent callers in worker mode"
    )
    parser.add_argument("--folder", help="folder for the SQLite files (default: a temporary one)")
    parser.add_argument("--skip-worker", action="store_true", help="run only the direct mode")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print_machine_info()
    plan = build_plan()
    origin_ns = time.time_ns()
    span_s = max(1.0, args.records / 1000)
    pool = build_pool(args.batch_size, span_s, origin_ns)
    print(
        f"pool: {POOL_BATCHES} batches x {args.batch_size} records per provider, "
        f"peak RSS {peak_rss_mib():.0f} MiB"
    )

    with tempfile.TemporaryDirectory(prefix="llmping-bench-store-", dir=args.folder) as folder:
        path = Path(folder) / "direct.db"
        store = Store(path)
        assignments = create_run(store, plan, origin_ns)
        order = batch_plan(args.records, args.batch_size, assignments)
        witness = LoadWitness()
        stored, elapsed_s = ingest_direct(store, pool, order, assignments)
        store.close()
        print(
            f"ingest direct: {stored} records in {elapsed_s:.2f} s "
            f"= {stored / elapsed_s:,.0f} records/s\n  {witness.summary()}"
        )
        print(f"database size: {path.stat().st_size / 2**20:.0f} MiB")

        rss_before = peak_rss_mib()
        witness = LoadWitness()
        report_s, report = time_report(path, plan, origin_ns)
        total = sum(summary.requests for summary in report.summaries)
        print(
            f"report: {total} records in {len(report.summaries)} summaries and "
            f"{len(report.timeline)} timeline buckets in {report_s:.2f} s; "
            f"peak RSS {rss_before:.0f} MiB before, {peak_rss_mib():.0f} MiB after"
            f"\n  {witness.summary()}"
        )

        if not args.skip_worker:
            worker_path = Path(folder) / "worker.db"
            store = Store(worker_path)
            assignments = create_run(store, plan, origin_ns)
            witness = LoadWitness()
            stored, elapsed_s = asyncio.run(
                ingest_worker(store, pool, order, assignments, args.producers)
            )
            print(
                f"ingest worker ({args.producers} producers): {stored} records "
                f"in {elapsed_s:.2f} s = {stored / elapsed_s:,.0f} records/s"
                f"\n  {witness.summary()}"
            )


if __name__ == "__main__":
    main()
