"""AgentService.Connect: one long-lived bidirectional stream per agent.

The stream carries, from the agent: Hello (first), Heartbeat, AssignmentUpdate and
ResultBatch; to the agent: Welcome (first), HeartbeatReply, Assignment,
CancelAssignment, BatchAck and Goodbye. Messages from one agent are handled in the
order they arrive, so an update that follows a batch is applied after the batch is
stored. A BatchAck is sent only after the batch's transaction committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc

from llmping import __version__
from llmping.errors import StoreError
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

from .auth import require_token
from .observers import ObserverGroup
from .registry import AgentRegistry, AgentSession, format_labels
from .runs import RunManager

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0


class AgentService(pb_grpc.AgentServiceServicer):
    """Serves agents: registration, heartbeats, assignments and result ingest."""

    def __init__(
        self,
        registry: AgentRegistry,
        runs: RunManager,
        token: str = "",
        observers: ObserverGroup | None = None,
    ) -> None:
        self._registry = registry
        self._runs = runs
        self._token = token
        self._observers = observers or ObserverGroup()

    async def Connect(self, request_iterator: object, context: grpc.aio.ServicerContext) -> None:
        await require_token(context, self._token, "the agent")
        hello = await self._read_hello(context)
        session = self._register(hello, context.peer())

        reader = asyncio.create_task(
            self._read_messages(session, context), name=f"agent-{session.agent_id}"
        )
        try:
            await self._write_messages(session, context)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._unregister(session)

    async def _read_hello(self, context: grpc.aio.ServicerContext) -> pb.Hello:
        try:
            first = await asyncio.wait_for(context.read(), HELLO_TIMEOUT_S)
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no Hello within {HELLO_TIMEOUT_S:g} s of connecting; "
                "the agent must send Hello first",
            )
        if first is grpc.aio.EOF or not first.HasField("hello"):
            received = "end of stream" if first is grpc.aio.EOF else first.WhichOneof("body")
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the first message must be a Hello, got {received}; upgrade the agent",
            )
        hello: pb.Hello = first.hello
        if not hello.agent_id:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Hello.agent_id is empty; the agent must send a stable, non-empty id",
            )
        return hello

    def _register(self, hello: pb.Hello, peer: str) -> AgentSession:
        session = AgentSession.from_hello(hello, peer)
        self._registry.register(session)

        welcome = pb.Welcome(
            controller_version=__version__,
            heartbeat_interval_s=self._registry.heartbeat_interval_s,
            cancelled_assignment_ids=self._runs.unwanted_assignments(
                hello.agent_id, hello.active_assignment_ids
            ),
        )
        session.send(pb.ControllerMessage(welcome=welcome))
        self._runs.agent_connected(session, hello)

        log.info(
            "agent %s connected from %s (host %s, version %s, labels %s, %d active assignments)",
            session.agent_id,
            peer,
            hello.hostname or "unknown",
            hello.version or "unknown",
            format_labels(session.labels),
            len(hello.active_assignment_ids),
        )
        self._observers.notify(lambda o: o.agent_connected(session.agent_id, dict(session.labels)))
        return session

    def _unregister(self, session: AgentSession) -> None:
        session.close()
        if self._registry.unregister(session):
            log.info("agent %s disconnected", session.agent_id)
            self._observers.notify(lambda o: o.agent_disconnected(session.agent_id))

    async def _write_messages(
        self, session: AgentSession, context: grpc.aio.ServicerContext
    ) -> None:
        while True:
            message = await session.outbox.get()
            if message is None:
                return
            await context.write(message)

    async def _read_messages(
        self, session: AgentSession, context: grpc.aio.ServicerContext
    ) -> None:
        """Handle the agent's messages in order; closes the session when the stream ends."""
        try:
            while True:
                message = await context.read()
                if message is grpc.aio.EOF:
                    log.debug("agent %s closed its stream", session.agent_id)
                    return
                session.touch()
                await self._dispatch(session, message)
        except StoreError as exc:
            log.error(
                "agent %s: the store failed, closing the stream so it resends: %s",
                session.agent_id,
                exc,
            )
        except grpc.aio.AioRpcError as exc:
            log.info("agent %s stream failed: %s", session.agent_id, exc.code())
        except Exception:
            # A bug must not leave the agent on a stream that is no longer read. Closing
            # the stream makes the agent reconnect.
            log.exception(
                "agent %s: handling a message failed; closing the stream", session.agent_id
            )
        finally:
            session.close()

    async def _dispatch(self, session: AgentSession, message: pb.AgentMessage) -> None:
        kind = message.WhichOneof("body")
        if kind == "heartbeat":
            self._reply_heartbeat(session, message.heartbeat)
        elif kind == "result_batch":
            batch = message.result_batch
            if await self._runs.handle_batch(session, batch):
                ack = pb.BatchAck(assignment_id=batch.assignment_id, seq=batch.seq)
                session.send(pb.ControllerMessage(batch_ack=ack))
        elif kind == "assignment_update":
            await self._runs.handle_update(session, message.assignment_update)
        elif kind == "hello":
            log.warning(
                "agent %s sent a second Hello on the same stream; ignored", session.agent_id
            )
        else:
            log.warning("agent %s sent an empty or unknown message; ignored", session.agent_id)

    @staticmethod
    def _reply_heartbeat(session: AgentSession, heartbeat: pb.Heartbeat) -> None:
        session.record_heartbeat(heartbeat)
        reply = pb.HeartbeatReply(
            agent_sent_unix_ns=heartbeat.sent_unix_ns, controller_unix_ns=time.time_ns()
        )
        session.send(pb.ControllerMessage(heartbeat_reply=reply))
