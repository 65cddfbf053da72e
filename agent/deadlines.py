"""The four request deadlines and the one asyncio timeout that enforces them.

All deadlines count from the moment the request is sent (not from its scheduled
start, so a late agent does not make providers time out):

* connect: DNS, TCP and TLS must be done by connect_s.
* ttft: the first text-carrying event must arrive by ttft_s. Keep-alive comments,
  pings and role-only events do not move it.
* idle: after the response headers, some body bytes must arrive every idle_s.
* total: everything must be done by total_s.

One asyncio.Timeout is rescheduled to whichever deadline comes first, so when it
fires, the guard can tell which limit was hit and return that error class.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from llmping.agent.errors import (
    TIMEOUT_CONNECT,
    TIMEOUT_IDLE,
    TIMEOUT_TOTAL,
    TIMEOUT_TTFT,
    ClassifiedError,
)
from llmping.v1 import llmping_pb2 as pb

# Defaults for a Timeouts field left at 0. Generous enough for a reasoning model that
# thinks for a minute before its first token, short enough that a dead endpoint does
# not hold a load slot for long.
DEFAULT_CONNECT_S = 10.0
DEFAULT_TTFT_S = 60.0
DEFAULT_IDLE_S = 30.0
DEFAULT_TOTAL_S = 300.0

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class TimeoutLimits:
    """Per-request time limits in seconds."""

    connect_s: float = DEFAULT_CONNECT_S
    ttft_s: float = DEFAULT_TTFT_S
    idle_s: float = DEFAULT_IDLE_S
    total_s: float = DEFAULT_TOTAL_S

    @classmethod
    def from_proto(cls, timeouts: pb.Timeouts) -> TimeoutLimits:
        """Read a plan's Timeouts; 0 or a negative value means the default."""
        return cls(
            connect_s=_or_default(timeouts.connect_s, DEFAULT_CONNECT_S),
            ttft_s=_or_default(timeouts.ttft_s, DEFAULT_TTFT_S),
            idle_s=_or_default(timeouts.idle_s, DEFAULT_IDLE_S),
            total_s=_or_default(timeouts.total_s, DEFAULT_TOTAL_S),
        )


def _or_default(value: float, default: float) -> float:
    return value if value > 0 else default


class DeadlineGuard:
    """Keep one asyncio.Timeout at the earliest deadline that applies in this phase."""

    def __init__(self, limits: TimeoutLimits, send_ns: int) -> None:
        self.limits = limits
        self._connect_ns = send_ns + int(limits.connect_s * NS_PER_S)
        self._ttft_ns = send_ns + int(limits.ttft_s * NS_PER_S)
        self._total_ns = send_ns + int(limits.total_s * NS_PER_S)
        self._idle_ns: int | None = None
        self._connected = False
        self._text_seen = False
        self._scope: asyncio.Timeout | None = None
        self._current_class = TIMEOUT_TOTAL

    def scope(self) -> asyncio.Timeout:
        """Return the timeout context manager to wrap the request in."""
        deadline_ns, self._current_class = self._earliest()
        self._scope = asyncio.timeout_at(_loop_time_of(deadline_ns))
        return self._scope

    def connected(self) -> None:
        """Note that the request has a connection: the connect deadline no longer applies."""
        self._connected = True
        self._reschedule()

    def bytes_arrived(self, now_ns: int) -> None:
        """Note a read of response bytes (or the headers): restart the idle deadline."""
        self._idle_ns = now_ns + int(self.limits.idle_s * NS_PER_S)
        self._reschedule()

    def text_arrived(self) -> None:
        """Note the first text-carrying event: the TTFT deadline no longer applies."""
        if not self._text_seen:
            self._text_seen = True
            self._reschedule()

    def timeout_error(self, phase: str, partial_output: bool, keepalives: int) -> ClassifiedError:
        """Return the error for the deadline that fired."""
        limits = self.limits
        if self._current_class == TIMEOUT_CONNECT:
            detail = f"no connection within {limits.connect_s:g} s"
        elif self._current_class == TIMEOUT_TTFT:
            detail = f"no generated text within {limits.ttft_s:g} s"
            if keepalives:
                detail += f" ({keepalives} keep-alive events received)"
        elif self._current_class == TIMEOUT_IDLE:
            when = "after partial output" if partial_output else "before any output"
            detail = f"read idle timeout {when} (no bytes for {limits.idle_s:g} s)"
        else:
            detail = f"request took longer than {limits.total_s:g} s"
        return ClassifiedError(self._current_class, detail, phase)

    def _reschedule(self) -> None:
        deadline_ns, self._current_class = self._earliest()
        if self._scope is not None:
            self._scope.reschedule(_loop_time_of(deadline_ns))

    def _earliest(self) -> tuple[int, str]:
        # Order matters on ties: the more specific class wins over timeout_total.
        candidates: list[tuple[int, str]] = []
        if not self._connected:
            candidates.append((self._connect_ns, TIMEOUT_CONNECT))
        if not self._text_seen:
            candidates.append((self._ttft_ns, TIMEOUT_TTFT))
        if self._idle_ns is not None:
            candidates.append((self._idle_ns, TIMEOUT_IDLE))
        candidates.append((self._total_ns, TIMEOUT_TOTAL))
        return min(candidates, key=lambda candidate: candidate[0])


def _loop_time_of(perf_ns: int) -> float:
    # The event loop has its own monotonic clock; convert through "now" in both.
    return asyncio.get_running_loop().time() + (perf_ns - time.perf_counter_ns()) / NS_PER_S
