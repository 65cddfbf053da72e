"""Fixtures for the agent runtime tests.

- ``peer``: a minimal controller written with the generated stub, served by a real
  grpc.aio server on 127.0.0.1 port 0. It replies to Hello and heartbeats, stores each
  batch once per (assignment_id, seq) and acks it, records everything it receives, and
  can be stopped and started again on the same port.
- ``provider``: a real aiohttp server on port 0 that streams an OpenAI-style chat
  completion after a configurable delay.
- ``make_agent``: builds an Agent aimed at the peer and runs it in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from aiohttp import web

from llmping.agent.app import Agent, AgentConfig
from llmping.agent.connection import Backoff
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

HEARTBEAT_INTERVAL_S = 0.1
FAST_BACKOFF = Backoff(initial_s=0.05, max_s=0.2)


async def wait_until(
    condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class PeerStream:
    """One Connect stream on the peer's side."""

    hello: pb.Hello
    outgoing: asyncio.Queue[pb.ControllerMessage | None] = field(default_factory=asyncio.Queue)
    closed: bool = False


class PeerController(pb_grpc.AgentServiceServicer):
    """The controller's side of AgentService.Connect, reduced to what the tests check."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.heartbeat_interval_s = HEARTBEAT_INTERVAL_S
        self.ack_batches = True
        self.cancelled_assignment_ids: list[str] = []
        self.streams: list[PeerStream] = []
        self.received: list[pb.AgentMessage] = []
        self.rejected_tokens = 0
        # (assignment_id, seq) -> batch, each stored once.
        self.stored: dict[tuple[str, int], pb.ResultBatch] = {}
        self.batches_received: list[tuple[str, int]] = []

    # -- what the tests read ----------------------------------------------------------

    @property
    def current(self) -> PeerStream | None:
        open_streams = [stream for stream in self.streams if not stream.closed]
        return open_streams[-1] if open_streams else None

    def of_kind(self, kind: str) -> list[Any]:
        return [getattr(m, kind) for m in self.received if m.WhichOneof("body") == kind]

    def updates(self, assignment_id: str) -> list[pb.AssignmentUpdate]:
        return [u for u in self.of_kind("assignment_update") if u.assignment_id == assignment_id]

    def states(self, assignment_id: str) -> list[str]:
        return [pb.AssignmentUpdate.State.Name(u.state) for u in self.updates(assignment_id)]

    def final_update(self, assignment_id: str) -> pb.AssignmentUpdate | None:
        finals = (
            pb.AssignmentUpdate.FINISHED,
            pb.AssignmentUpdate.FAILED,
            pb.AssignmentUpdate.CANCELLED,
        )
        for update in self.updates(assignment_id):
            if update.state in finals:
                return update
        return None

    def records(self, assignment_id: str) -> list[pb.Record]:
        return [
            record
            for (stored_id, _), batch in sorted(self.stored.items())
            if stored_id == assignment_id
            for record in batch.records
        ]

    def send(self, message: pb.ControllerMessage) -> None:
        stream = self.current
        assert stream is not None, "no agent is connected"
        stream.outgoing.put_nowait(message)

    def assign(self, assignment: pb.Assignment) -> None:
        self.send(pb.ControllerMessage(assignment=assignment))

    # -- the service ------------------------------------------------------------------

    async def Connect(
        self, request_iterator: AsyncIterator[pb.AgentMessage], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ControllerMessage]:
        if self.token is not None:
            metadata = dict(context.invocation_metadata() or ())
            if metadata.get("authorization") != f"Bearer {self.token}":
                self.rejected_tokens += 1
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid token")

        first = await anext(request_iterator)
        self.received.append(first)
        stream = PeerStream(first.hello)
        self.streams.append(stream)
        yield pb.ControllerMessage(
            welcome=pb.Welcome(
                controller_version="peer",
                heartbeat_interval_s=self.heartbeat_interval_s,
                cancelled_assignment_ids=[
                    i
                    for i in first.hello.active_assignment_ids
                    if i in self.cancelled_assignment_ids
                ],
            )
        )
        reader = asyncio.create_task(self._read(request_iterator, stream))
        try:
            while True:
                message = await stream.outgoing.get()
                if message is None:
                    return
                yield message
        finally:
            stream.closed = True
            reader.cancel()

    async def _read(
        self, request_iterator: AsyncIterator[pb.AgentMessage], stream: PeerStream
    ) -> None:
        try:
            async for message in request_iterator:
                self.received.append(message)
                self._handle(message, stream)
        finally:
            stream.closed = True
            stream.outgoing.put_nowait(None)

    def _handle(self, message: pb.AgentMessage, stream: PeerStream) -> None:
        kind = message.WhichOneof("body")
        if kind == "heartbeat":
            reply = pb.HeartbeatReply(
                agent_sent_unix_ns=message.heartbeat.sent_unix_ns, controller_unix_ns=time.time_ns()
            )
            stream.outgoing.put_nowait(pb.ControllerMessage(heartbeat_reply=reply))
        elif kind == "result_batch":
            batch = message.result_batch
            key = (batch.assignment_id, batch.seq)
            self.batches_received.append(key)
            if self.ack_batches:
                self.stored.setdefault(key, batch)
                ack = pb.BatchAck(assignment_id=batch.assignment_id, seq=batch.seq)
                stream.outgoing.put_nowait(pb.ControllerMessage(batch_ack=ack))


class PeerServer:
    """Runs a PeerController on a grpc.aio server that can stop and start on one port."""

    def __init__(self, controller: PeerController) -> None:
        self.controller = controller
        self.port = 0
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        server = grpc.aio.server()
        pb_grpc.add_AgentServiceServicer_to_server(self.controller, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None
        for stream in self.controller.streams:
            stream.closed = True


@pytest.fixture
async def peer() -> AsyncIterator[PeerServer]:
    server = PeerServer(PeerController())
    await server.start()
    yield server
    await server.stop()


# -- provider ------------------------------------------------------------------------


@dataclass
class ProviderBehaviour:
    """How the provider responds, and what it counted; tests change it while it runs."""

    first_chunk_delay_s: float = 0.02
    chunks: int = 3
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    authorizations: list[str] = field(default_factory=list)


BEHAVIOUR_KEY = web.AppKey("behaviour", ProviderBehaviour)


def _chunk(text: str, finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-test",
        "model": "test-model",
        "choices": [
            {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
        ],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    behaviour = request.app[BEHAVIOUR_KEY]
    behaviour.requests += 1
    behaviour.in_flight += 1
    behaviour.max_in_flight = max(behaviour.max_in_flight, behaviour.in_flight)
    behaviour.authorizations.append(request.headers.get("Authorization", ""))
    try:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await asyncio.sleep(behaviour.first_chunk_delay_s)
        for index in range(behaviour.chunks):
            await response.write(_chunk(f"word{index} "))
        await response.write(_chunk("", finish="stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    finally:
        behaviour.in_flight -= 1


@dataclass
class ProviderServer:
    behaviour: ProviderBehaviour
    base_url: str

    def provider(self, name: str = "local", api_key_env: str = "") -> pb.Provider:
        return pb.Provider(
            name=name,
            kind="openai_compatible",
            base_url=self.base_url,
            model="test-model",
            api_key_env=api_key_env,
        )


@pytest.fixture
async def provider() -> AsyncIterator[ProviderServer]:
    behaviour = ProviderBehaviour()
    app = web.Application()
    app[BEHAVIOUR_KEY] = behaviour
    app.router.add_post("/v1/chat/completions", _chat_completions)
    # Cancel a handler when its client goes away, so a slow response ends with the test.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield ProviderServer(behaviour, f"http://127.0.0.1:{port}/v1")
    await runner.cleanup()


# -- agents --------------------------------------------------------------------------


@dataclass
class RunningAgent:
    agent: Agent
    stop: asyncio.Event
    task: asyncio.Task[None]


@pytest.fixture
async def make_agent() -> AsyncIterator[Callable[..., Awaitable[RunningAgent]]]:
    """Start agents in the background; each is stopped (cleanly) at the end of the test."""
    running: list[RunningAgent] = []

    async def start(
        address: str, env: dict[str, str] | None = None, **overrides: Any
    ) -> RunningAgent:
        values: dict[str, Any] = {
            "controller": address,
            "region": "test",
            "agent_id": f"agent-{len(running)}",
            "backoff": FAST_BACKOFF,
            "shutdown_grace_s": 2.0,
            "tracing": False,
        }
        values.update(overrides)
        agent = Agent(AgentConfig(**values), env=env if env is not None else {})
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        handle = RunningAgent(agent, stop, task)
        running.append(handle)
        return handle

    yield start
    for handle in running:
        handle.stop.set()
    for handle in running:
        if handle.task.done() and not handle.task.cancelled() and handle.task.exception():
            continue  # the test already checked how this agent ended
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(handle.task, 10)


def make_plan(providers: list[pb.Provider], load: pb.LoadSpec, **extra: Any) -> pb.Plan:
    """Build a plan around the given providers and load."""
    return pb.Plan(
        name="agent-runtime-test",
        providers=providers,
        request=pb.RequestSpec(
            messages=[pb.ChatMessage(role="user", content="hello")], max_tokens=16, stream=True
        ),
        load=load,
        timeouts=pb.Timeouts(connect_s=2, ttft_s=5, idle_s=5, total_s=10),
        **extra,
    )


def make_assignment(
    plan: pb.Plan,
    share: pb.LoadShare,
    assignment_id: str = "a-1",
    start_at_unix_ns: int = 0,
) -> pb.Assignment:
    """Build an Assignment of run-1 for target "test"."""
    return pb.Assignment(
        run_id="run-1",
        assignment_id=assignment_id,
        target="test",
        plan=plan,
        share=share,
        start_at_unix_ns=start_at_unix_ns,
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )


@pytest.fixture
def plan_factory() -> Callable[..., pb.Plan]:
    return make_plan


@pytest.fixture
def assignment_factory() -> Callable[..., pb.Assignment]:
    return make_assignment


@pytest.fixture
def waiter() -> Callable[..., Awaitable[None]]:
    return wait_until
