"""The agent's one long-lived stream to the controller (AgentService.Connect).

The connection dials out, sends Hello, waits for Welcome, then runs three tasks on the
stream: a writer draining the outgoing queue, a reader dispatching controller
messages, and a heartbeat timer that also notices a silent controller. When the stream
breaks or the controller cannot be reached, it retries forever with exponential
backoff and jitter. After every reconnect it sends Hello with the active assignment
ids, then resends every unacked batch and unconfirmed update, in their original order.

A connection that fails its TLS handshake is retried like any other, and the first
failure of a series is logged as an error naming the likely cause (an untrusted
certificate, a missing client certificate, TLS on one side only).

The one exception is a Goodbye saying that a newer stream with the same agent id replaced
this one: another agent uses the id, and reconnecting would only replace it in turn, so
run() raises AgentReplacedError instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn, Protocol

import grpc

from llmping.agent.batches import Outbox
from llmping.agent.clock import ClockEstimator
from llmping.errors import LlmpingError
from llmping.protocol import MAX_MESSAGE_BYTES, REPLACED_GOODBYE_PREFIX
from llmping.tls import ClientTls, diagnose_connect_failure
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL_S = 1.0
# How often the count of batches buffered during an outage is logged.
BUFFERED_LOG_INTERVAL_S = 10.0
# Heartbeats written but not yet replied to, remembered for the clock estimate.
MAX_PENDING_HEARTBEATS = 64
# The controller's limits: a long prompt makes an Assignment bigger than gRPC's 4 MiB
# default, and an agent that cannot receive it would reconnect forever.
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff between connection attempts, with jitter."""

    initial_s: float = 0.5
    max_s: float = 30.0
    multiplier: float = 2.0

    def delay_s(self, failures: int, rng: random.Random) -> float:
        """Return the wait after ``failures`` failed attempts in a row (1 or more).

        The wait is drawn between half and all of the exponential value, so agents
        that lost the same controller spread out and never retry in a tight loop.
        """
        ceiling = min(self.max_s, self.initial_s * self.multiplier ** max(0, failures - 1))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class ConnectionConfig:
    """Controller address, token and retry settings."""

    address: str
    token: str | None = None
    # Named in every log line, so the logs of many agents can be separated.
    agent_id: str = ""
    backoff: Backoff = field(default_factory=Backoff)
    welcome_timeout_s: float = 10.0
    # The stream counts as dead after this many heartbeat intervals without a message.
    silent_heartbeats_limit: int = 5
    # None dials in plaintext.
    tls: ClientTls | None = None


class ControllerHandler(Protocol):
    """The agent side of the protocol, called by the connection."""

    def hello(self) -> pb.Hello:
        """Build the Hello for a new stream, with the active assignment ids."""
        ...

    def on_welcome(self, welcome: pb.Welcome) -> None: ...

    def on_assignment(self, assignment: pb.Assignment) -> None: ...

    def on_cancel(self, cancel: pb.CancelAssignment) -> None: ...

    def agent_load(self) -> pb.AgentLoad: ...


class StreamEndedError(Exception):
    """The stream ended without a gRPC error; the message gives the reason."""


class AgentReplacedError(LlmpingError):
    """The controller replaced this agent's stream with a newer one using the same agent id."""


@dataclass
class _SentHeartbeat:
    number: int
    sent_perf_ns: int


@dataclass
class _Session:
    """State of one established stream."""

    generation: int
    call: grpc.aio.StreamStreamCall
    heartbeat_interval_s: float
    # None in place of a message makes the writer half-close the stream.
    queue: asyncio.Queue[tuple[int, pb.AgentMessage | None]] = field(default_factory=asyncio.Queue)
    message_count: int = 0
    last_received_ns: int = field(default_factory=time.perf_counter_ns)
    heartbeats: OrderedDict[int, _SentHeartbeat] = field(default_factory=OrderedDict)
    heartbeat_now: asyncio.Event = field(default_factory=asyncio.Event)
    goodbye_reason: str = ""

    def enqueue(self, message: pb.AgentMessage | None) -> None:
        self.message_count += 1
        self.queue.put_nowait((self.message_count, message))


@dataclass(frozen=True)
class _Attempt:
    """Outcome of one connection attempt."""

    established: bool
    error: str
    unauthenticated: bool = False
    # gRPC's details of an UNAVAILABLE error before the stream was established.
    unavailable_details: str = ""
    # The likely TLS cause of the failure and what to check, when TLS is to blame.
    tls_problem: str = ""


class ControllerConnection:
    """Keeps the stream to the controller up and carries the agent's messages over it."""

    def __init__(
        self,
        config: ConnectionConfig,
        handler: ControllerHandler,
        clock: ClockEstimator,
        outbox: Outbox,
    ) -> None:
        self.config = config
        self.connected = asyncio.Event()
        self.sessions_established = 0
        self._handler = handler
        self._clock = clock
        self._outbox = outbox
        self._session: _Session | None = None
        self._generation = 0
        self._rng = random.Random()
        self._last_buffered_log_ns: int | None = None
        self._closing = False
        self._stopped = asyncio.Event()
        # Failed attempts in a row, and when the current outage began.
        self._failures = 0
        self._outage_start_ns: int | None = None
        # The TLS problem last logged as an error, so a repeated one is logged at DEBUG.
        self._logged_tls_problem = ""

    # -- AgentLink: what runners send -------------------------------------------------

    def send_update(self, update: pb.AssignmentUpdate) -> None:
        """Send ``update`` now if connected; keep it for a resend until confirmed."""
        self._outbox.set_update(update)
        if self._session is not None:
            self._session.enqueue(pb.AgentMessage(assignment_update=update))

    def send_batch(self, message: pb.AgentMessage) -> None:
        """Send a ResultBatch message now if connected; keep it until acked."""
        self._outbox.add_batch(message)
        if self._session is not None:
            self._session.enqueue(message)
        else:
            self._log_buffered()

    def request_heartbeat(self) -> None:
        """Send a heartbeat now, so recent updates get confirmed sooner."""
        if self._session is not None:
            self._session.heartbeat_now.set()

    # -- connection loop ---------------------------------------------------------------

    async def close(self, timeout_s: float = 1.0) -> None:
        """Half-close the stream, so the controller gets an orderly end, and stop run()."""
        self._closing = True
        if self._session is not None:
            self._session.enqueue(None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), timeout_s)

    async def run(self) -> None:
        """Connect, and reconnect after every failure, until cancelled or closed.

        Raises AgentReplacedError, without reconnecting, when the controller's Goodbye
        reports that another stream with this agent id replaced this one.
        """
        try:
            await self._run_until_closed()
        except AgentReplacedError as exc:
            log.error("agent %s stopped: %s", self.config.agent_id, exc)
            raise
        finally:
            self._stopped.set()

    async def _run_until_closed(self) -> None:
        while not self._closing:
            attempt = await self._connect_once()
            if self._closing:
                return
            if attempt.established:
                self._failures = 0
                self._outage_start_ns = None
                self._logged_tls_problem = ""
            self._failures += 1
            if self._outage_start_ns is None:
                self._outage_start_ns = time.perf_counter_ns()
            attempt = await self._diagnose_tls(attempt)
            self._log_failure(attempt, self._failures)
            if attempt.unauthenticated:
                delay_s = self.config.backoff.max_s
            else:
                delay_s = self.config.backoff.delay_s(self._failures, self._rng)
            await asyncio.sleep(delay_s)

    async def _connect_once(self) -> _Attempt:
        """Run one stream from dialing to its end and report how it ended."""
        self._generation += 1
        channel = self._open_channel()
        call = pb_grpc.AgentServiceStub(channel).Connect(metadata=self._metadata())
        established = False
        try:
            await call.write(pb.AgentMessage(hello=self._handler.hello()))
            welcome = await asyncio.wait_for(
                self._read_welcome(call), self.config.welcome_timeout_s
            )
            session = self._start_session(call, welcome)
            established = True
            await self._serve(session)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            details = exc.details() or ""
            unavailable = code == grpc.StatusCode.UNAVAILABLE and not established
            return _Attempt(
                established,
                f"{code.name}: {details}",
                unauthenticated=code == grpc.StatusCode.UNAUTHENTICATED,
                unavailable_details=details if unavailable else "",
            )
        except TimeoutError:
            return _Attempt(established, f"no Welcome within {self.config.welcome_timeout_s:.0f} s")
        except StreamEndedError as exc:
            return _Attempt(established, str(exc))
        except AgentReplacedError:
            raise
        except Exception as exc:
            # A bug on this side; the stream is retried like any other failure.
            log.exception("agent %s: the controller stream failed", self.config.agent_id)
            return _Attempt(established, f"internal error: {exc}")
        finally:
            self._session = None
            self.connected.clear()
            call.cancel()
            await channel.close()

    def _open_channel(self) -> grpc.aio.Channel:
        tls = self.config.tls
        if tls is None:
            return grpc.aio.insecure_channel(self.config.address, options=CHANNEL_OPTIONS)
        return grpc.aio.secure_channel(
            self.config.address,
            tls.credentials(),
            options=CHANNEL_OPTIONS + tls.channel_options(),
        )

    async def _diagnose_tls(self, attempt: _Attempt) -> _Attempt:
        """Add the TLS cause of a failed connection to ``attempt``, when TLS is to blame.

        Runs in a thread because the check of a plaintext dial opens a TLS probe
        connection to the controller.
        """
        if not attempt.unavailable_details:
            return attempt
        problem = await asyncio.to_thread(
            diagnose_connect_failure,
            attempt.unavailable_details,
            self.config.tls,
            self.config.address,
        )
        return replace(attempt, tls_problem=problem) if problem else attempt

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        if not self.config.token:
            return ()
        return (("authorization", f"Bearer {self.config.token}"),)

    async def _read_welcome(self, call: grpc.aio.StreamStreamCall) -> pb.Welcome:
        message = await call.read()
        if message is grpc.aio.EOF:
            raise StreamEndedError("the controller closed the stream before Welcome")
        assert isinstance(message, pb.ControllerMessage)
        if not message.HasField("welcome"):
            raise StreamEndedError(
                f"the controller sent {message.WhichOneof('body')} instead of Welcome"
            )
        return message.welcome

    def _start_session(self, call: grpc.aio.StreamStreamCall, welcome: pb.Welcome) -> _Session:
        """Adopt the stream: apply Welcome, queue the resends, then accept live messages."""
        interval_s = welcome.heartbeat_interval_s or DEFAULT_HEARTBEAT_INTERVAL_S
        session = _Session(self._generation, call, interval_s)
        self._log_connected()

        for assignment_id in welcome.cancelled_assignment_ids:
            dropped = self._outbox.drop_assignment(assignment_id)
            if dropped:
                log.warning(
                    "agent %s: controller no longer wants assignment %s; dropped %d unsent records",
                    self.config.agent_id,
                    assignment_id,
                    dropped,
                )
        self._call_handler(self._handler.on_welcome, welcome)

        # No await between queuing the resends and publishing the session, so live
        # messages can only follow the resends.
        for message in self._outbox.resend_messages():
            session.enqueue(message)
        self._session = session
        self.sessions_established += 1
        self.connected.set()
        return session

    async def _serve(self, session: _Session) -> NoReturn:
        """Run writer, reader and heartbeats until one of them fails, then raise its error."""
        tasks = [
            asyncio.create_task(self._write_loop(session)),
            asyncio.create_task(self._read_loop(session)),
            asyncio.create_task(self._heartbeat_loop(session)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
            raise StreamEndedError("a stream task ended without an error")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _write_loop(self, session: _Session) -> None:
        while True:
            number, message = await session.queue.get()
            if message is None:
                await session.call.done_writing()
                raise StreamEndedError("the agent closed the stream")
            if message.HasField("heartbeat"):
                # Stamped at write time, so time spent in the queue does not skew the clock.
                message.heartbeat.sent_unix_ns = time.time_ns()
                self._remember_heartbeat(session, message.heartbeat.sent_unix_ns, number)
            try:
                await session.call.write(message)
            except asyncio.InvalidStateError as exc:
                # grpc.aio raises this for a write after the controller ended the call.
                raise StreamEndedError("the controller closed the stream") from exc
            if message.HasField("assignment_update"):
                self._outbox.mark_update_sent(
                    message.assignment_update, (session.generation, number)
                )

    async def _read_loop(self, session: _Session) -> None:
        while True:
            message = await session.call.read()
            if message is grpc.aio.EOF:
                reason = session.goodbye_reason or "no Goodbye"
                raise StreamEndedError(f"the controller closed the stream ({reason})")
            assert isinstance(message, pb.ControllerMessage)
            session.last_received_ns = time.perf_counter_ns()
            self._dispatch(session, message)

    async def _heartbeat_loop(self, session: _Session) -> None:
        interval_s = session.heartbeat_interval_s
        limit_s = self.config.silent_heartbeats_limit * interval_s
        while True:
            heartbeat = pb.Heartbeat(
                clock_offset_ns=self._clock.offset_ns,
                clock_offset_uncertainty_ms=self._clock.uncertainty_ms,
                load=self._handler.agent_load(),
            )
            session.enqueue(pb.AgentMessage(heartbeat=heartbeat))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(session.heartbeat_now.wait(), interval_s)
            session.heartbeat_now.clear()
            silent_s = (time.perf_counter_ns() - session.last_received_ns) / 1e9
            if silent_s > limit_s:
                raise StreamEndedError(f"no message from the controller for {silent_s:.1f} s")

    # -- incoming messages -------------------------------------------------------------

    def _dispatch(self, session: _Session, message: pb.ControllerMessage) -> None:
        kind = message.WhichOneof("body")
        if kind == "heartbeat_reply":
            self._on_heartbeat_reply(session, message.heartbeat_reply)
        elif kind == "batch_ack":
            ack = message.batch_ack
            if not self._outbox.ack(ack.assignment_id, ack.seq):
                log.debug("repeated ack for batch %d of %s", ack.seq, ack.assignment_id)
        elif kind == "assignment":
            self._call_handler(self._handler.on_assignment, message.assignment)
        elif kind == "cancel":
            self._call_handler(self._handler.on_cancel, message.cancel)
        elif kind == "goodbye":
            session.goodbye_reason = message.goodbye.reason or "Goodbye without a reason"
            if session.goodbye_reason.startswith(REPLACED_GOODBYE_PREFIX):
                raise AgentReplacedError(self._replaced_message(session.goodbye_reason))
            log.info(
                "agent %s: controller at %s sent Goodbye: %s",
                self.config.agent_id,
                self.config.address,
                session.goodbye_reason,
            )
        else:
            log.debug("ignoring controller message %s", kind)

    def _replaced_message(self, reason: str) -> str:
        return (
            f"the controller at {self.config.address} closed this agent's stream, "
            f"{reason}; another agent uses the agent id {self.config.agent_id}, so this "
            "one does not reconnect; give each agent a unique --agent-id, or leave it out "
            "for a generated one"
        )

    def _remember_heartbeat(self, session: _Session, sent_unix_ns: int, number: int) -> None:
        session.heartbeats[sent_unix_ns] = _SentHeartbeat(number, time.perf_counter_ns())
        while len(session.heartbeats) > MAX_PENDING_HEARTBEATS:
            session.heartbeats.popitem(last=False)

    def _on_heartbeat_reply(self, session: _Session, reply: pb.HeartbeatReply) -> None:
        sent = session.heartbeats.pop(reply.agent_sent_unix_ns, None)
        if sent is None:
            return
        rtt_ns = time.perf_counter_ns() - sent.sent_perf_ns
        self._clock.add_reply(reply.agent_sent_unix_ns, reply.controller_unix_ns, rtt_ns)
        # The controller reads the stream in order, so it has read everything
        # written before this heartbeat.
        self._outbox.confirm_updates((session.generation, sent.number))

    def _call_handler(self, method: Callable[[Any], None], argument: object) -> None:
        """Call a handler method; a bug in it is logged instead of breaking the stream."""
        try:
            method(argument)
        except Exception:
            log.exception("handling %s from the controller failed", type(argument).__name__)

    # -- logging -----------------------------------------------------------------------

    def _log_connected(self) -> None:
        if self._outage_start_ns is None:
            log.info(
                "agent %s connected to controller at %s", self.config.agent_id, self.config.address
            )
        else:
            outage_s = (time.perf_counter_ns() - self._outage_start_ns) / 1e9
            log.info(
                "agent %s reconnected to controller at %s after %d failed attempts (%.1f s); "
                "resending %d batches (%d records)",
                self.config.agent_id,
                self.config.address,
                self._failures,
                outage_s,
                self._outbox.batch_count,
                self._outbox.record_count,
            )

    def _log_failure(self, attempt: _Attempt, failures: int) -> None:
        address = self.config.address
        if attempt.tls_problem:
            self._log_tls_failure(attempt, failures)
            return
        if attempt.unauthenticated:
            if failures == 1:
                log.error(
                    "agent %s: controller at %s rejected this agent's token (%s); start the "
                    "agent with the controller's token in --token or LLMPING_TOKEN; retrying "
                    "every %g s",
                    self.config.agent_id,
                    address,
                    attempt.error,
                    self.config.backoff.max_s,
                )
            else:
                log.debug("token rejected again by %s (attempt %d)", address, failures)
            return
        if failures > 1:
            log.debug("connection attempt %d to %s failed: %s", failures, address, attempt.error)
            return
        event = "connection to controller lost" if attempt.established else "controller unreachable"
        log.warning(
            "agent %s: %s at %s: %s; retrying with backoff up to %g s, %d unacked batches kept",
            self.config.agent_id,
            event,
            address,
            attempt.error,
            self.config.backoff.max_s,
            self._outbox.batch_count,
        )

    def _log_tls_failure(self, attempt: _Attempt, failures: int) -> None:
        """Log a TLS failure as an error once, and again only when its cause changes."""
        if attempt.tls_problem == self._logged_tls_problem:
            log.debug("TLS connection attempt %d failed again: %s", failures, attempt.error)
            return
        self._logged_tls_problem = attempt.tls_problem
        log.error(
            "agent %s: TLS connection to controller at %s failed: %s; retrying with backoff "
            "up to %g s, %d unacked batches kept",
            self.config.agent_id,
            self.config.address,
            attempt.tls_problem,
            self.config.backoff.max_s,
            self._outbox.batch_count,
        )

    def _log_buffered(self) -> None:
        now_ns = time.perf_counter_ns()
        last_ns = self._last_buffered_log_ns
        if last_ns is not None and now_ns - last_ns < BUFFERED_LOG_INTERVAL_S * 1e9:
            return
        self._last_buffered_log_ns = now_ns
        log.warning(
            "agent %s: controller at %s unreachable: %d records in %d batches kept in memory "
            "until it is back",
            self.config.agent_id,
            self.config.address,
            self._outbox.record_count,
            self._outbox.batch_count,
        )
