"""An assignment larger than gRPC's default 4 MiB message limit reaches the agent."""

from __future__ import annotations

from typing import Any

from llmping.v1 import llmping_pb2 as pb

PROMPT_BYTES = 5 * 1024 * 1024


async def test_large_assignment_accepted(
    peer: Any,
    make_agent: Any,
    waiter: Any,
    plan_factory: Any,
    assignment_factory: Any,
    provider: Any,
) -> None:
    await make_agent(peer.address)
    await waiter(lambda: peer.controller.current is not None, what="the agent to connect")
    plan = plan_factory(
        [provider.provider()], pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=1, request_count=1)
    )
    plan.request.messages[0].content = "x" * PROMPT_BYTES
    assignment = assignment_factory(plan, pb.LoadShare(concurrency=1, request_count=1))
    assert assignment.ByteSize() > 4 * 1024 * 1024

    peer.controller.assign(assignment)
    await waiter(lambda: peer.controller.final_update("a-1") is not None, what="a final update")

    assert peer.controller.states("a-1") == ["ACCEPTED", "RUNNING", "FINISHED"]
    # The stream that carried the assignment stayed up: no reconnect.
    assert len(peer.controller.streams) == 1
    assert provider.behaviour.requests == 1
