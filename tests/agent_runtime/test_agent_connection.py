"""The agent's stream to a controller peer: Hello, heartbeats, tokens, reconnects."""

from __future__ import annotations

import logging
import random
import socket
from typing import Any

import pytest

from llmping.agent.connection import Backoff
from llmping.v1 import llmping_pb2 as pb


async def test_hello_welcome_and_heartbeats(peer: Any, make_agent: Any, waiter: Any) -> None:
    controller = peer.controller
    running = await make_agent(peer.address, labels={"isp": "telecom"}, max_concurrency=64)

    await waiter(lambda: len(controller.of_kind("heartbeat")) >= 3, what="three heartbeats")

    hello = controller.of_kind("hello")[0]
    assert hello.agent_id == "agent-0"
    assert dict(hello.labels) == {"region": "test", "isp": "telecom"}
    assert hello.capacity.max_concurrency == 64
    assert hello.capacity.cpu_count >= 1
    assert hello.version
    assert hello.hostname == socket.gethostname()
    assert list(hello.active_assignment_ids) == []
    assert controller.received[0].WhichOneof("body") == "hello"

    await waiter(lambda: running.agent.clock.has_estimate, what="a clock estimate")
    # Both ends share one clock here, so the offset is within the round trip.
    assert abs(running.agent.clock.offset_ns) <= running.agent.clock.uncertainty_ns + 2_000_000
    heartbeats = controller.of_kind("heartbeat")
    assert all(h.sent_unix_ns > 0 for h in heartbeats)
    assert heartbeats[-1].load.cpu_percent >= 0


async def test_token_sent_as_bearer_metadata(peer: Any, make_agent: Any, waiter: Any) -> None:
    peer.controller.token = "s3cret"
    await make_agent(peer.address, token="s3cret")

    await waiter(lambda: len(peer.controller.of_kind("hello")) == 1, what="Hello")

    assert peer.controller.rejected_tokens == 0


async def test_rejected_token_logs_error_and_retries(
    peer: Any, make_agent: Any, waiter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="llmping.agent")
    peer.controller.token = "right"
    await make_agent(peer.address, token="wrong", backoff=Backoff(initial_s=0.01, max_s=0.05))

    await waiter(lambda: peer.controller.rejected_tokens >= 3, what="three rejected attempts")

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "rejected this agent's token" in errors[0].getMessage()
    assert "--token or LLMPING_TOKEN" in errors[0].getMessage()
    assert "wrong" not in caplog.text
    assert peer.controller.of_kind("hello") == []


async def test_unreachable_controller_warns_once(
    make_agent: Any, waiter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="llmping.agent")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    await make_agent(address, backoff=Backoff(initial_s=0.01, max_s=0.02))

    def attempts() -> int:
        return sum("connection attempt" in r.getMessage() for r in caplog.records)

    await waiter(lambda: attempts() >= 3, what="three logged retries")

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "controller unreachable" in warnings[0].getMessage()
    assert address in warnings[0].getMessage()
    assert "connection attempt 3" in caplog.text


def test_backoff_grows_to_cap_with_jitter() -> None:
    backoff = Backoff(initial_s=0.5, max_s=30.0)
    rng = random.Random(1)

    delays = [backoff.delay_s(failures, rng) for failures in range(1, 12)]

    assert 0.25 <= delays[0] <= 0.5
    assert 0.5 <= delays[1] <= 1.0
    assert all(15.0 <= d <= 30.0 for d in delays[7:])
    assert len(set(delays)) == len(delays)


async def test_reconnect_resends_unacked_batches(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="llmping.agent")
    controller = peer.controller
    controller.ack_batches = False
    running = await make_agent(peer.address)
    await waiter(lambda: controller.current is not None, what="the agent to connect")

    plan = plan_factory(
        [provider.provider()], pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=0.6)
    )
    controller.assign(assignment_factory(plan, pb.LoadShare(rate_per_s=20.0)))
    await waiter(lambda: len(controller.batches_received) >= 1, what="a first batch")

    # The controller goes away mid-run, before it acked anything.
    await peer.stop()
    await waiter(lambda: running.agent.outbox.batch_count >= 2, what="batches buffered")
    await waiter(lambda: not running.agent.runners, what="the run to finish offline")

    controller.ack_batches = True
    await peer.start()
    await waiter(lambda: controller.final_update("a-1") is not None, what="the final update")
    final = controller.final_update("a-1")
    await waiter(
        lambda: len({k for k in controller.stored if k[0] == "a-1"}) == final.final_batch_seq,
        what="every batch stored",
    )

    hellos = controller.of_kind("hello")
    assert len(hellos) == 2
    assert list(hellos[1].active_assignment_ids) == ["a-1"]
    assert pb.AssignmentUpdate.State.Name(final.state) == "FINISHED"
    assert final.records_total == 12
    records = controller.records("a-1")
    assert sorted(r.index for r in records) == list(range(12))
    # After the reconnect the batches came back in seq order, starting at 1.
    resent = [seq for aid, seq in controller.batches_received[-final.final_batch_seq :]]
    assert resent == list(range(1, final.final_batch_seq + 1))
    await waiter(lambda: running.agent.outbox.batch_count == 0, what="acks to clear the outbox")
    assert "reconnected to controller" in caplog.text
    lost = [r for r in caplog.records if "connection to controller lost" in r.getMessage()]
    assert len(lost) == 1


async def test_welcome_cancels_unwanted_assignment(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    controller = peer.controller
    running = await make_agent(peer.address)
    await waiter(lambda: controller.current is not None, what="the agent to connect")
    plan = plan_factory([provider.provider()], pb.LoadSpec(mode=pb.LoadSpec.CLOSED, duration_s=30))
    controller.assign(assignment_factory(plan, pb.LoadShare(concurrency=1)))
    await waiter(lambda: "RUNNING" in controller.states("a-1"), what="RUNNING")

    controller.cancelled_assignment_ids = ["a-1"]
    await peer.stop()
    await peer.start()

    await waiter(lambda: not running.agent.runners, what="the runner to stop")
    assert list(controller.of_kind("hello")[1].active_assignment_ids) == ["a-1"]
