"""Connected agents: who they are, when they last spoke, and how to reach them.

An agent is keyed by its agent_id. A second connection with the same id replaces the
first, because the agent process reconnected. The old stream gets a Goodbye saying it
was replaced: an agent that still reads it is a second agent with the same id, and it
stops instead of reconnecting. An agent is
live while it has sent any message within LOST_AFTER_HEARTBEATS heartbeat intervals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from llmping.protocol import replaced_goodbye_reason
from llmping.v1 import llmping_pb2 as pb

log = logging.getLogger(__name__)

LOST_AFTER_HEARTBEATS = 5


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Return True when the labels carry every key=value pair of the selector.

    An empty selector matches every agent.
    """
    return all(labels.get(key) == value for key, value in selector.items())


def format_labels(labels: Mapping[str, str]) -> str:
    """Format labels as ``{k=v,k=v}`` sorted by key, the form used in messages."""
    return "{" + ",".join(f"{key}={labels[key]}" for key in sorted(labels)) + "}"


@dataclass(eq=False)
class AgentSession:
    """One live connection of one agent, with the queue of messages to send it."""

    agent_id: str
    labels: dict[str, str]
    version: str
    hostname: str
    peer: str
    capacity: pb.AgentCapacity
    connected_unix_ns: int = field(default_factory=time.time_ns)
    last_heartbeat_unix_ns: int = 0
    last_seen_perf_ns: int = field(default_factory=time.perf_counter_ns)
    clock_offset_ns: int = 0
    clock_offset_uncertainty_ms: float = 0.0
    load: pb.AgentLoad = field(default_factory=pb.AgentLoad)
    # None in the queue makes the sender loop end the stream.
    outbox: asyncio.Queue[pb.ControllerMessage | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    @classmethod
    def from_hello(cls, hello: pb.Hello, peer: str) -> AgentSession:
        capacity = pb.AgentCapacity()
        capacity.CopyFrom(hello.capacity)
        return cls(
            agent_id=hello.agent_id,
            labels=dict(hello.labels),
            version=hello.version,
            hostname=hello.hostname,
            peer=peer,
            capacity=capacity,
        )

    def touch(self) -> None:
        """Note that a message arrived just now."""
        self.last_seen_perf_ns = time.perf_counter_ns()

    def record_heartbeat(self, heartbeat: pb.Heartbeat) -> None:
        self.touch()
        self.last_heartbeat_unix_ns = time.time_ns()
        self.clock_offset_ns = heartbeat.clock_offset_ns
        self.clock_offset_uncertainty_ms = heartbeat.clock_offset_uncertainty_ms
        self.load.CopyFrom(heartbeat.load)

    def silent_for_s(self, now_perf_ns: int | None = None) -> float:
        now = time.perf_counter_ns() if now_perf_ns is None else now_perf_ns
        return (now - self.last_seen_perf_ns) / 1e9

    def send(self, message: pb.ControllerMessage) -> bool:
        """Queue a message for the agent; returns False when the session is closed."""
        if self.closed:
            return False
        self.outbox.put_nowait(message)
        return True

    def close(self, reason: str = "") -> None:
        """End the stream after the messages already queued, with a Goodbye if a reason is given."""
        if self.closed:
            return
        if reason:
            self.outbox.put_nowait(pb.ControllerMessage(goodbye=pb.Goodbye(reason=reason)))
        self.closed = True
        self.outbox.put_nowait(None)


class AgentRegistry:
    """The agents connected right now, keyed by agent_id."""

    def __init__(self, heartbeat_interval_s: float) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        self._sessions: dict[str, AgentSession] = {}

    @property
    def lost_after_s(self) -> float:
        return LOST_AFTER_HEARTBEATS * self.heartbeat_interval_s

    def register(self, session: AgentSession) -> AgentSession | None:
        """Add a session and return the one it replaced, already closed, if any."""
        previous = self._sessions.get(session.agent_id)
        self._sessions[session.agent_id] = session
        if previous is not None:
            log.info(
                "agent %s connected again from %s; closing its previous connection from %s "
                "(if another agent uses the same id, that one stops)",
                session.agent_id,
                session.peer,
                previous.peer,
            )
            previous.close(replaced_goodbye_reason(session.agent_id, session.peer))
        return previous

    def unregister(self, session: AgentSession) -> bool:
        """Remove the session unless a newer one replaced it; returns True when removed."""
        if self._sessions.get(session.agent_id) is not session:
            return False
        del self._sessions[session.agent_id]
        return True

    def get(self, agent_id: str) -> AgentSession | None:
        return self._sessions.get(agent_id)

    def is_live(self, session: AgentSession, now_perf_ns: int | None = None) -> bool:
        return not session.closed and session.silent_for_s(now_perf_ns) < self.lost_after_s

    def live_agent(self, agent_id: str) -> AgentSession | None:
        """Return the agent's session when it is connected and not silent for too long."""
        session = self._sessions.get(agent_id)
        if session is None or not self.is_live(session):
            return None
        return session

    def sessions(self) -> list[AgentSession]:
        """Return every connected session, sorted by agent_id."""
        return [self._sessions[agent_id] for agent_id in sorted(self._sessions)]

    def live_sessions(self) -> list[AgentSession]:
        now = time.perf_counter_ns()
        return [s for s in self.sessions() if self.is_live(s, now)]

    def match(self, selector: Mapping[str, str]) -> list[AgentSession]:
        """Return the live agents whose labels match the selector, sorted by agent_id."""
        return [s for s in self.live_sessions() if selector_matches(selector, s.labels)]

    def close_all(self, reason: str) -> None:
        for session in self.sessions():
            session.close(reason)


def describe_agents(sessions: Iterable[AgentSession]) -> str:
    """Describe agents as ``id {labels}, ...`` for error messages; ``none`` when empty."""
    parts = [f"{s.agent_id} {format_labels(s.labels)}" for s in sessions]
    return ", ".join(parts) if parts else "none"
