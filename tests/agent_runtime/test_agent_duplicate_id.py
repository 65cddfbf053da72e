"""Two agents with one agent id: the older one stops instead of replacing the newer one."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from llmping.agent.batches import Outbox
from llmping.agent.clock import ClockEstimator
from llmping.agent.connection import (
    AgentReplacedError,
    Backoff,
    ConnectionConfig,
    ControllerConnection,
)
from llmping.controller.server import ControllerConfig, serve
from llmping.protocol import replaced_goodbye_reason
from llmping.v1 import llmping_pb2 as pb

FAST_BACKOFF = Backoff(initial_s=0.05, max_s=0.2)


class QuietHandler:
    """The agent side of the protocol with no assignments."""

    def hello(self) -> pb.Hello:
        return pb.Hello(agent_id="dup", labels={"region": "test"}, version="test")

    def on_welcome(self, welcome: pb.Welcome) -> None:
        pass

    def on_assignment(self, assignment: pb.Assignment) -> None:
        pass

    def on_cancel(self, cancel: pb.CancelAssignment) -> None:
        pass

    def agent_load(self) -> pb.AgentLoad:
        return pb.AgentLoad()


def connection_to(address: str) -> ControllerConnection:
    config = ConnectionConfig(address, agent_id="dup", backoff=FAST_BACKOFF)
    return ControllerConnection(config, QuietHandler(), ClockEstimator(), Outbox())


async def test_replaced_goodbye_stops_connection(
    peer: Any, waiter: Any, caplog: pytest.LogCaptureFixture
) -> None:
    connection = connection_to(peer.address)
    task = asyncio.create_task(connection.run())
    await waiter(lambda: peer.controller.current is not None, what="the agent to connect")

    reason = replaced_goodbye_reason("dup", "ipv4:127.0.0.1:5555")
    peer.controller.send(pb.ControllerMessage(goodbye=pb.Goodbye(reason=reason)))

    with pytest.raises(AgentReplacedError):
        await asyncio.wait_for(task, 5)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "ipv4:127.0.0.1:5555" in errors[0].getMessage()
    assert "give each agent a unique --agent-id" in errors[0].getMessage()
    assert len(peer.controller.streams) == 1


async def test_other_goodbye_reconnects(peer: Any, waiter: Any) -> None:
    connection = connection_to(peer.address)
    task = asyncio.create_task(connection.run())
    try:
        await waiter(lambda: peer.controller.current is not None, what="the agent to connect")

        # What a controller that shuts down for a restart sends.
        peer.controller.send(pb.ControllerMessage(goodbye=pb.Goodbye(reason="shutting down")))
        peer.controller.send(None)  # type: ignore[arg-type]

        await waiter(lambda: connection.sessions_established == 2, what="a reconnect")
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_duplicate_agents_stop_flapping(tmp_path: Path, make_agent: Any, waiter: Any) -> None:
    controller = await serve(
        ControllerConfig(
            listen="127.0.0.1:0",
            db_path=tmp_path / "llmping.db",
            heartbeat_interval_s=0.1,
            shutdown_grace_s=0.2,
        )
    )
    try:
        first = await make_agent(controller.address, agent_id="dup")
        await waiter(lambda: first.agent.connection.connected.is_set(), what="the first agent")
        second = await make_agent(controller.address, agent_id="dup")
        await waiter(lambda: second.agent.connection.connected.is_set(), what="the second agent")

        await waiter(lambda: not first.agent.connection.connected.is_set(), what="the first stop")
        # Long enough for several reconnects with the test backoff of at most 0.2 s.
        await asyncio.sleep(1.0)

        assert first.agent.connection.sessions_established == 1
        assert second.agent.connection.sessions_established == 1
        assert second.agent.connection.connected.is_set()
        assert [s.agent_id for s in controller.registry.sessions()] == ["dup"]
        # The replaced agent's run ends with the error, which makes the CLI exit 1.
        with pytest.raises(AgentReplacedError):
            await asyncio.wait_for(first.task, 5)
    finally:
        await controller.stop()
