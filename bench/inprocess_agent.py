"""Run one llmping assignment in this process, through the agent's real runtime.

``AssignmentRunner`` drives the plan's load with the real drivers and the real
``RequestExecutor``, fills records and batches them. What is left out is the gRPC
connection to a controller: ``CountingLink`` takes the place of the agent's
connection, serializes each batch as the connection would, and keeps the records so
a benchmark can read them. No controller assigns the work, so the assignment starts
at once (start_at_unix_ns 0) with a clock offset of 0.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from llmping.agent.clock import ClockEstimator, ClockMapping
from llmping.agent.diagnosis import HealthMonitor
from llmping.agent.gc_tuning import tune_gc
from llmping.agent.runner import AssignmentRunner, RunnerContext
from llmping.agent.tracing import AgentTracing
from llmping.v1 import llmping_pb2 as pb

API_KEY_ENV = "LLMPING_BENCH_API_KEY"
T = TypeVar("T")
FINAL_STATES = (
    pb.AssignmentUpdate.FINISHED,
    pb.AssignmentUpdate.FAILED,
    pb.AssignmentUpdate.CANCELLED,
)


class CountingLink:
    """Stands in for the controller connection: serializes and keeps what the runner sends."""

    def __init__(self) -> None:
        self.messages: list[pb.AgentMessage] = []
        self.final_update: pb.AssignmentUpdate | None = None

    @property
    def batches(self) -> int:
        return len(self.messages)

    @property
    def records(self) -> list[pb.Record]:
        """Every record sent so far, for reading after the run."""
        return [record for message in self.messages for record in message.result_batch.records]

    def send_update(self, update: pb.AssignmentUpdate) -> None:
        if update.state in FINAL_STATES:
            self.final_update = update

    def send_batch(self, message: pb.AgentMessage) -> None:
        # The real connection serializes each batch for gRPC; pay that cost here too.
        # The records are read after the run, because copying them out of the batch
        # here would block the loop in a way the real agent does not.
        message.SerializeToString()
        self.messages.append(message)


class RecordingClock(ClockEstimator):
    """A clock estimator with no samples (offset 0) that keeps the mapping it handed out.

    The runner converts perf_counter_ns to wall-clock instants with one mapping per
    assignment. Keeping that mapping lets a benchmark turn a record's scheduled_unix_ns
    back into the exact perf_counter_ns the driver used.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_mapping: ClockMapping | None = None

    def mapping(self) -> ClockMapping:
        self.last_mapping = super().mapping()
        return self.last_mapping


@dataclass
class AssignmentResult:
    """Messages the runner sent, the process's CPU time and the runner's clock mapping."""

    link: CountingLink
    cpu_s: float
    wall_s: float
    mapping: ClockMapping | None

    @property
    def diagnosis(self) -> pb.AgentDiagnosis:
        update = self.link.final_update
        return update.diagnosis if update is not None else pb.AgentDiagnosis()

    def scheduled_perf_ns(self, record: pb.Record) -> int:
        """Return the perf_counter_ns the driver scheduled the record's request at."""
        assert self.mapping is not None
        local_unix_ns = record.scheduled_unix_ns - self.mapping.offset_ns
        return self.mapping.perf_ns + (local_unix_ns - self.mapping.unix_ns)


def build_plan(base_url: str, load: pb.LoadSpec) -> pb.Plan:
    """Build a plan with one OpenAI-compatible provider at ``base_url`` (ending in /v1)."""
    plan = pb.Plan(name="bench")
    plan.providers.add(
        name="bench-server",
        kind="openai_compatible",
        base_url=base_url,
        model="gpt-4o-mini",
        api_key_env=API_KEY_ENV,
    )
    plan.request.messages.add(role="user", content="Write a 100-character essay.")
    plan.request.max_tokens = 100
    plan.request.stream = True
    plan.request.include_usage = True
    plan.load.CopyFrom(load)
    plan.timeouts.connect_s = 10
    plan.timeouts.ttft_s = 30
    plan.timeouts.idle_s = 30
    plan.timeouts.total_s = 60
    plan.targets.add(name="bench", selector={"region": "bench"})
    return plan


def build_assignment(plan: pb.Plan) -> pb.Assignment:
    """Wrap a plan into this agent's whole share of it, starting at once."""
    load = plan.load
    share = pb.LoadShare(
        agent_index=0,
        agent_count=1,
        concurrency=load.concurrency,
        rate_per_s=load.rate_per_s,
        request_count=load.request_count,
    )
    for stage in load.stages:
        share.stages.add(concurrency=stage.concurrency, rate_per_s=stage.rate_per_s)
    return pb.Assignment(
        run_id="run-bench",
        assignment_id="asg-bench",
        target="bench",
        plan=plan,
        share=share,
    )


async def run_assignment(
    assignment: pb.Assignment,
    background: asyncio.Task[None] | None = None,
    tracing: AgentTracing | None = None,
) -> AssignmentResult:
    """Run the assignment to its final update with a live HealthMonitor.

    ``background`` is a task the caller started (for example a CPU burner); it is
    cancelled when the assignment ends. ``tracing`` turns on request spans; the caller
    shuts it down.
    """
    link = CountingLink()
    clock = RecordingClock()
    health = HealthMonitor()
    health_task = asyncio.create_task(health.run())
    context = RunnerContext(
        agent_id="bench-agent",
        link=link,
        clock=clock,
        health=health,
        env={API_KEY_ENV: "bench-key"},
        tracing=tracing,
    )
    runner = AssignmentRunner(assignment, context)
    cpu_start_s = time.process_time()
    wall_start_ns = time.perf_counter_ns()
    try:
        await runner.run()
    finally:
        health_task.cancel()
        if background is not None:
            background.cancel()
    return AssignmentResult(
        link=link,
        cpu_s=time.process_time() - cpu_start_s,
        wall_s=(time.perf_counter_ns() - wall_start_ns) / 1e9,
        mapping=clock.last_mapping,
    )


def run_on_loop(coroutine: Coroutine[Any, Any, T], loop_name: str) -> T:
    """Run a coroutine on uvloop or the standard asyncio loop and return its result.

    The collector is tuned first, as ``llmping agent`` does before its event loop starts.
    """
    tune_gc()
    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)
