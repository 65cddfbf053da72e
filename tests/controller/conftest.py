"""Fixtures for controller tests: a real controller on port 0 and a protocol-level agent.

TestAgent speaks the agent side of AgentService.Connect through the generated stub.
Apart from heartbeats it sends nothing on its own, so tests can produce resends,
duplicates and abrupt disconnects on demand. End-to-end tests cover the real agent process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
import pytest

from llmping.controller.server import Controller, ControllerConfig, serve
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

EXPECT_TIMEOUT_S = 5.0
BASE_UNIX_NS = 1_700_000_000_000_000_000


def make_record(
    index: int,
    provider: str = "alpha",
    target: str = "tokyo",
    ttft_ms: float | None = 100.0,
    e2e_ms: float | None = 500.0,
    error_class: str = "",
    error_detail: str = "",
    warmup: bool = False,
    start_unix_ns: int | None = None,
    **fields: Any,
) -> pb.Record:
    """Build one record; latencies are left unset when given as None."""
    record = pb.Record(
        provider=provider,
        target=target,
        model="gpt-4o",
        index=index,
        warmup=warmup,
        start_unix_ns=BASE_UNIX_NS + index * 1_000_000 if start_unix_ns is None else start_unix_ns,
        error_class=error_class,
        error_detail=error_detail,
        **fields,
    )
    if ttft_ms is not None:
        record.ttft_ms = ttft_ms
    if e2e_ms is not None:
        record.e2e_ms = e2e_ms
    return record


def make_plan(
    targets: Iterable[tuple[str, dict[str, str]]] = (("tokyo", {"region": "tokyo"}),),
    providers: Iterable[str] = ("alpha",),
    concurrency: int = 4,
    request_count: int = 0,
    duration_s: float = 1.0,
) -> pb.Plan:
    plan = pb.Plan(name="test-plan")
    for name in providers:
        plan.providers.append(
            pb.Provider(
                name=name, kind="openai_compatible", base_url="http://127.0.0.1:9", model="gpt-4o"
            )
        )
    for name, selector in targets:
        plan.targets.append(pb.Target(name=name, selector=selector))
    plan.load.mode = pb.LoadSpec.CLOSED
    plan.load.concurrency = concurrency
    plan.load.request_count = request_count
    plan.load.duration_s = duration_s
    plan.timeouts.total_s = 5.0
    return plan


class TestAgent:
    """Agent side of one AgentService.Connect stream, driven step by step by a test."""

    __test__ = False  # not a test class, despite the name

    def __init__(
        self,
        address: str,
        agent_id: str,
        labels: dict[str, str] | None = None,
        token: str = "",
        heartbeats: bool = True,
    ) -> None:
        self.address = address
        self.agent_id = agent_id
        self.labels = labels if labels is not None else {"region": "tokyo"}
        self.token = token
        self.heartbeats = heartbeats
        self.received: dict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        self._outgoing: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._channel: grpc.aio.Channel | None = None
        self.call: Any = None
        self.welcome: pb.Welcome | None = None
        self.error: grpc.aio.AioRpcError | None = None

    async def connect(self, active_assignment_ids: Iterable[str] = ()) -> pb.Welcome:
        self._outgoing = asyncio.Queue()
        self.received = defaultdict(asyncio.Queue)
        self._channel = grpc.aio.insecure_channel(self.address)
        stub = pb_grpc.AgentServiceStub(self._channel)
        metadata = (("authorization", f"Bearer {self.token}"),) if self.token else None
        self.call = stub.Connect(self._requests(), metadata=metadata)
        hello = pb.Hello(
            agent_id=self.agent_id,
            labels=self.labels,
            version="test",
            hostname="test-host",
            active_assignment_ids=list(active_assignment_ids),
        )
        self.send(pb.AgentMessage(hello=hello))
        reader = asyncio.create_task(self._read())
        self._tasks.append(reader)
        welcome = asyncio.create_task(self.expect("welcome"))
        await asyncio.wait({reader, welcome}, return_when=asyncio.FIRST_COMPLETED)
        if not welcome.done():
            welcome.cancel()
            raise self.error or AssertionError("stream ended before Welcome")
        self.welcome = welcome.result()
        if self.heartbeats:
            self._tasks.append(asyncio.create_task(self._beat(self.welcome.heartbeat_interval_s)))
        return self.welcome

    async def _requests(self) -> AsyncIterator[pb.AgentMessage]:
        while True:
            message = await self._outgoing.get()
            if message is None:
                return
            yield message

    async def _read(self) -> None:
        try:
            async for message in self.call:
                kind = message.WhichOneof("body")
                self.received[kind].put_nowait(getattr(message, kind))
        except grpc.aio.AioRpcError as exc:
            self.error = exc

    async def _beat(self, interval_s: float) -> None:
        while True:
            self.send(pb.AgentMessage(heartbeat=pb.Heartbeat(sent_unix_ns=1)))
            await asyncio.sleep(interval_s / 2)

    def send(self, message: pb.AgentMessage) -> None:
        self._outgoing.put_nowait(message)

    async def expect(self, kind: str, timeout_s: float = EXPECT_TIMEOUT_S) -> Any:
        """Return the next received message body of this kind, such as "assignment"."""
        return await asyncio.wait_for(self.received[kind].get(), timeout_s)

    def update(
        self,
        assignment_id: str,
        state: int,
        final_batch_seq: int = 0,
        records_total: int = 0,
        message: str = "",
        diagnosis: pb.AgentDiagnosis | None = None,
    ) -> None:
        update = pb.AssignmentUpdate(
            assignment_id=assignment_id,
            state=state,
            final_batch_seq=final_batch_seq,
            records_total=records_total,
            message=message,
        )
        if diagnosis is not None:
            update.diagnosis.CopyFrom(diagnosis)
        self.send(pb.AgentMessage(assignment_update=update))

    def send_batch(self, assignment_id: str, seq: int, records: Iterable[pb.Record]) -> None:
        batch = pb.ResultBatch(assignment_id=assignment_id, seq=seq, records=list(records))
        self.send(pb.AgentMessage(result_batch=batch))

    async def expect_ack(self, assignment_id: str, seq: int) -> None:
        ack = await self.expect("batch_ack")
        assert (ack.assignment_id, ack.seq) == (assignment_id, seq)

    async def disconnect(self) -> None:
        """Drop the connection at once, as a killed process or cut network would."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.call is not None:
            self.call.cancel()
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def run_assignment(
        self, assignment: pb.Assignment, batches: list[list[pb.Record]]
    ) -> None:
        """Accept, run, send every batch (waiting for each ack) and finish."""
        self.update(assignment.assignment_id, pb.AssignmentUpdate.ACCEPTED)
        self.update(assignment.assignment_id, pb.AssignmentUpdate.RUNNING)
        for seq, records in enumerate(batches, start=1):
            self.send_batch(assignment.assignment_id, seq, records)
            await self.expect_ack(assignment.assignment_id, seq)
        self.update(
            assignment.assignment_id,
            pb.AssignmentUpdate.FINISHED,
            final_batch_seq=len(batches),
            records_total=sum(len(b) for b in batches),
        )


async def wait_until(
    condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, interval_s: float = 0.05
) -> None:
    """Poll an async condition until it holds; fail the test on timeout."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        await asyncio.sleep(interval_s)


class ControllerHarness:
    """Starts controllers on port 0 over one database file and cleans up after the test."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.controllers: list[Controller] = []
        self.agents: list[TestAgent] = []
        self.channels: list[grpc.aio.Channel] = []

    async def start(self, **overrides: Any) -> Controller:
        settings: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "db_path": self.db_path,
            "agent_grace_s": 1.0,
            "heartbeat_interval_s": 0.2,
            "start_delay_s": 0.1,
            "shutdown_grace_s": 0.2,
        }
        settings.update(overrides)
        controller = await serve(ControllerConfig(**settings))
        self.controllers.append(controller)
        return controller

    def agent(self, controller: Controller, agent_id: str, **kwargs: Any) -> TestAgent:
        agent = TestAgent(controller.address, agent_id, **kwargs)
        self.agents.append(agent)
        return agent

    def control(self, controller: Controller) -> pb_grpc.ControlServiceStub:
        channel = grpc.aio.insecure_channel(controller.address)
        self.channels.append(channel)
        return pb_grpc.ControlServiceStub(channel)

    async def close(self) -> None:
        for agent in self.agents:
            await agent.disconnect()
        for channel in self.channels:
            await channel.close()
        for controller in self.controllers:
            await controller.stop()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[ControllerHarness]:
    harness = ControllerHarness(tmp_path / "controller.db")
    yield harness
    await harness.close()


# Test modules cannot import this conftest under --import-mode=importlib, so the
# helpers reach them as fixtures.
@pytest.fixture(name="make_record")
def make_record_fixture() -> Callable[..., pb.Record]:
    return make_record


@pytest.fixture(name="make_plan")
def make_plan_fixture() -> Callable[..., pb.Plan]:
    return make_plan


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Awaitable[None]]:
    return wait_until
