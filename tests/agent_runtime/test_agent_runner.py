"""Whole assignments: a controller peer over gRPC, the real executor, a local provider."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from llmping.agent.caps import lane_cap
from llmping.agent.runner import default_executor_factory
from llmping.v1 import llmping_pb2 as pb

RUN_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


async def connected(peer: Any, make_agent: Any, waiter: Any, **overrides: Any) -> Any:
    running = await make_agent(peer.address, **overrides)
    await waiter(lambda: peer.controller.current is not None, what="the agent to connect")
    return running


async def finished(peer: Any, waiter: Any, assignment_id: str = "a-1") -> pb.AssignmentUpdate:
    """Wait for the final update and for every batch up to final_batch_seq to be stored."""
    controller = peer.controller
    await waiter(lambda: controller.final_update(assignment_id) is not None, what="a final update")
    final = controller.final_update(assignment_id)
    stored = lambda: {seq for aid, seq in controller.stored if aid == assignment_id}  # noqa: E731
    await waiter(lambda: stored() == set(range(1, final.final_batch_seq + 1)), what="all batches")
    return final


async def test_closed_loop_run_fills_records(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter)
    plan = plan_factory(
        [provider.provider(name="local-a")],
        pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=2, request_count=10),
    )
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(concurrency=2, request_count=10)))

    final = await finished(peer, waiter)

    assert peer.controller.states("a-1") == ["ACCEPTED", "RUNNING", "FINISHED"]
    assert final.records_total == 10
    records = peer.controller.records("a-1")
    assert sorted(r.index for r in records) == list(range(10))
    assert provider.behaviour.max_in_flight == 2
    for record in records:
        assert (record.run_id, record.assignment_id, record.agent_id) == ("run-1", "a-1", "agent-0")
        assert (record.target, record.provider, record.model) == ("test", "local-a", "test-model")
        assert record.attempt == 1
        assert record.error_class == ""
        assert record.trace_id == RUN_TRACE_ID
        assert record.ttft_ms >= 15
        lag_ns = round(record.start_lag_ms * 1e6)
        assert record.start_unix_ns == record.scheduled_unix_ns + lag_ns
        assert abs(record.scheduled_unix_ns - time.time_ns()) < 10_000_000_000
    assert final.diagnosis.requests_dropped_by_cap == 0


async def test_open_loop_latency_counts_from_schedule(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter)
    provider.behaviour.first_chunk_delay_s = 0.02
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=0.6, warmup_s=0.1)
    plan = plan_factory([provider.provider()], load)
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(rate_per_s=50.0)))
    await waiter(lambda: "RUNNING" in peer.controller.states("a-1"), what="RUNNING")

    # Stall the event loop for 80 ms mid-run, as an overloaded agent would.
    await asyncio.sleep(0.25)
    busy_until = time.perf_counter() + 0.08
    while time.perf_counter() < busy_until:
        pass

    final = await finished(peer, waiter)
    records = peer.controller.records("a-1")
    assert len(records) == 30
    assert sum(r.warmup for r in records) == 5
    late = [r for r in records if r.start_lag_ms > 30]
    assert late, "the stall should delay some sends"
    for record in records:
        # E2E counts from the scheduled time, so it contains the start lag in full.
        assert record.e2e_ms >= record.start_lag_ms + 15
    assert max(r.start_lag_ms for r in records) >= 50
    assert final.diagnosis.start_lag_p99_ms >= 50
    # The health ticker wakes every 50 ms, so it measures at least 80 - 50 ms of the stall.
    assert final.diagnosis.event_loop_lag_max_ms >= 25
    assert "agent saturated" in final.diagnosis.verdict


async def test_every_provider_gets_full_share(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter)
    plan = plan_factory(
        [provider.provider(name="p1"), provider.provider(name="p2")],
        pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=1, request_count=4),
    )
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(concurrency=1, request_count=4)))

    final = await finished(peer, waiter)

    records = peer.controller.records("a-1")
    assert final.records_total == 8
    assert sorted(r.provider for r in records) == ["p1"] * 4 + ["p2"] * 4
    assert sorted(r.index for r in records) == list(range(8))
    # Both lanes ran at the same time.
    assert provider.behaviour.max_in_flight == 2


async def test_missing_api_key_fails_assignment(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter, env={"OTHER_KEY": "x"})
    plan = plan_factory(
        [provider.provider(name="openai", api_key_env="OPENAI_API_KEY")],
        pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=1, request_count=1),
    )
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(concurrency=1, request_count=1)))

    final = await finished(peer, waiter)

    assert peer.controller.states("a-1") == ["FAILED"]
    assert "OPENAI_API_KEY" in final.message
    assert "'openai'" in final.message
    assert "agent-0" in final.message
    assert final.records_total == 0
    assert provider.behaviour.requests == 0


async def test_api_key_from_agent_environment(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter, env={"LOCAL_KEY": "sk-local-123"})
    plan = plan_factory(
        [provider.provider(api_key_env="LOCAL_KEY")],
        pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=1, request_count=2),
    )
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(concurrency=1, request_count=2)))

    final = await finished(peer, waiter)

    assert pb.AssignmentUpdate.State.Name(final.state) == "FINISHED"
    assert provider.behaviour.authorizations == ["Bearer sk-local-123"] * 2


async def test_cancel_records_in_flight_as_cancelled(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter)
    provider.behaviour.first_chunk_delay_s = 5.0
    plan = plan_factory(
        [provider.provider()], pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=2, duration_s=30)
    )
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(concurrency=2)))
    await waiter(lambda: provider.behaviour.in_flight == 2, what="two requests in flight")

    cancel = pb.CancelAssignment(assignment_id="a-1", reason="run cancelled by user")
    peer.controller.send(pb.ControllerMessage(cancel=cancel))

    final = await finished(peer, waiter)
    assert peer.controller.states("a-1") == ["ACCEPTED", "RUNNING", "CANCELLED"]
    assert final.message == "run cancelled by user"
    records = peer.controller.records("a-1")
    assert len(records) == 2
    assert final.records_total == 2
    assert [r.error_class for r in records] == ["cancelled", "cancelled"]


async def test_start_waits_for_start_at(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    running = await connected(peer, make_agent, waiter)
    await waiter(lambda: running.agent.clock.has_estimate, what="a clock estimate")
    plan = plan_factory(
        [provider.provider()], pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=0.2)
    )
    start_at_ns = time.time_ns() + 400_000_000
    peer.controller.assign(
        assignment_factory(plan, pb.LoadShare(rate_per_s=10.0), start_at_unix_ns=start_at_ns)
    )

    await waiter(lambda: "ACCEPTED" in peer.controller.states("a-1"), what="ACCEPTED")
    assert provider.behaviour.requests == 0
    await finished(peer, waiter)

    first = min(peer.controller.records("a-1"), key=lambda r: r.index)
    # Same host, so the estimated offset is near zero and the schedule starts at start_at.
    assert abs(first.scheduled_unix_ns - start_at_ns) < 20_000_000
    assert first.start_unix_ns >= start_at_ns - 20_000_000


async def test_drop_cap_counted_in_diagnosis(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter)
    provider.behaviour.first_chunk_delay_s = 0.1
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=0.3, max_in_flight=2, overflow="drop")
    plan = plan_factory([provider.provider()], load)
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(rate_per_s=100.0)))

    final = await finished(peer, waiter)

    dropped = final.diagnosis.requests_dropped_by_cap
    assert dropped > 10
    assert final.records_total + dropped == 30
    assert provider.behaviour.max_in_flight <= 2


async def test_share_cap_wins_over_plan_cap(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter)
    provider.behaviour.first_chunk_delay_s = 0.1
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=0.3, max_in_flight=20, overflow="drop")
    plan = plan_factory([provider.provider()], load)
    share = pb.LoadShare(rate_per_s=100.0, agent_count=2, max_in_flight=1)
    peer.controller.assign(assignment_factory(plan, share))

    final = await finished(peer, waiter)

    assert final.diagnosis.requests_dropped_by_cap > 10
    assert provider.behaviour.max_in_flight == 1


def test_lane_cap_falls_back_without_share_cap() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, max_in_flight=5)

    # A controller that fills LoadShare.max_in_flight decides the cap.
    assert lane_cap(load, pb.LoadShare(agent_index=0, agent_count=2, max_in_flight=2)) == 2
    # An older controller leaves it 0, so the agent computes its part of the plan's cap.
    assert lane_cap(load, pb.LoadShare(agent_index=0, agent_count=2)) == 3
    assert lane_cap(load, pb.LoadShare(agent_index=1, agent_count=2)) == 2
    assert lane_cap(pb.LoadSpec(mode=pb.LoadSpec.CONSTANT), pb.LoadShare(agent_count=2)) == 0


async def test_plan_seed_gives_each_agent_its_schedule(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter)
    load = pb.LoadSpec(mode=pb.LoadSpec.POISSON, request_count=6, seed=11)
    plan = plan_factory([provider.provider()], load)
    agent_indexes = {"a-1": 0, "a-2": 0, "a-3": 1}
    for assignment_id, agent_index in agent_indexes.items():
        share = pb.LoadShare(rate_per_s=100.0, request_count=6, agent_index=agent_index)
        peer.controller.assign(assignment_factory(plan, share, assignment_id=assignment_id))

    offsets = {}
    for assignment_id in agent_indexes:
        await finished(peer, waiter, assignment_id)
        scheduled = sorted(r.scheduled_unix_ns for r in peer.controller.records(assignment_id))
        offsets[assignment_id] = [t - scheduled[0] for t in scheduled]

    assert len(offsets["a-1"]) == 6
    assert offsets["a-1"] == offsets["a-2"]
    assert offsets["a-1"] != offsets["a-3"]


class FlakyExecutor:
    """Wraps the real executor and raises on every second request, like a bug would."""

    def __init__(self, *args: Any) -> None:
        self._real = default_executor_factory(*args)
        self.calls = 0

    async def start(self) -> None:
        await self._real.start()

    async def execute(
        self, record: pb.Record, scheduled_perf_ns: int, from_scheduled: bool
    ) -> None:
        self.calls += 1
        if self.calls % 2 == 0:
            raise RuntimeError("executor bug")
        await self._real.execute(record, scheduled_perf_ns, from_scheduled)

    async def close(self) -> None:
        await self._real.close()


async def test_executor_bug_does_not_end_run(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter, executor_factory=FlakyExecutor)
    plan = plan_factory(
        [provider.provider()], pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=1, request_count=6)
    )
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(concurrency=1, request_count=6)))

    final = await finished(peer, waiter)

    assert pb.AssignmentUpdate.State.Name(final.state) == "FINISHED"
    # The failed half left no record that could pass for a success.
    assert final.records_total == 3
    assert "3 requests failed inside agent agent-0" in final.message
    assert all(r.error_class == "" and r.e2e_ms > 0 for r in peer.controller.records("a-1"))


async def test_agent_stop_cancels_and_flushes(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    running = await connected(peer, make_agent, waiter)
    plan = plan_factory(
        [provider.provider()], pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=2, duration_s=30)
    )
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(concurrency=2)))
    await waiter(lambda: provider.behaviour.requests >= 6, what="a few requests")

    running.stop.set()
    await asyncio.wait_for(running.task, 5)

    final = peer.controller.final_update("a-1")
    assert final is not None
    assert pb.AssignmentUpdate.State.Name(final.state) == "CANCELLED"
    assert "shutting down" in final.message
    stored = {seq for aid, seq in peer.controller.stored if aid == "a-1"}
    assert stored == set(range(1, final.final_batch_seq + 1))
    assert len(peer.controller.records("a-1")) == final.records_total
    assert running.agent.outbox.batch_count == 0
    # A heartbeat reply after the CANCELLED update confirmed that it was delivered.
    assert running.agent.outbox.assignment_ids() == set()


async def test_repeated_assignment_runs_once(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter)
    plan = plan_factory(
        [provider.provider()], pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=1, request_count=3)
    )
    assignment = assignment_factory(plan, pb.LoadShare(concurrency=1, request_count=3))
    peer.controller.assign(assignment)
    peer.controller.assign(assignment)

    await finished(peer, waiter)
    peer.controller.assign(assignment)
    await asyncio.sleep(0.1)

    assert peer.controller.states("a-1") == ["ACCEPTED", "RUNNING", "FINISHED"]
    assert provider.behaviour.requests == 3


async def test_batches_sent_while_running(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await connected(peer, make_agent, waiter)
    plan = plan_factory(
        [provider.provider()], pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=1.6)
    )
    peer.controller.assign(assignment_factory(plan, pb.LoadShare(rate_per_s=20.0)))
    await waiter(lambda: "RUNNING" in peer.controller.states("a-1"), what="RUNNING")
    running_at = time.monotonic()

    await waiter(lambda: peer.controller.batches_received, what="a first batch")
    first_batch_s = time.monotonic() - running_at
    final = await finished(peer, waiter)

    # Batches go out at least every 0.5 s while the run lasts, not only at its end.
    assert first_batch_s < 0.9
    assert final.final_batch_seq >= 3
    assert final.records_total == 32
