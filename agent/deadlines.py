"""The four request deadlines and the one timer that enforces them.

All deadlines count from the moment the request is sent (not from its scheduled
start, so a late agent does not make providers time out):

* connect: DNS, TCP and TLS must be done by connect_s.
* ttft: the first text-carrying event must arrive by ttft_s. Keep-alive comments,
  pings and role-only events do not move it.
* idle: after the response headers, some body bytes must arrive every idle_s.
* total: everything must be done by total_s.

A response arrives in many reads, and each read moves the idle deadline. Moving an
asyncio timer cancels one loop timer and adds another, too much work to repeat on
every read, so a read only stores its time. One loop timer is set for the earliest
deadline. When it fires, it works out the earliest deadline again from what has
happened since. If that is later, the timer sets itself again. Otherwise the
deadline has passed, and the guard expires the request's asyncio.Timeout and notes
which limit was hit. An event that brings a deadline earlier (the first read starts
the idle deadline) moves the timer at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import TracebackType

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


class DeadlineScope:
    """Async context manager that wraps one request in the guard's deadlines.

    When a deadline passes, the block is cancelled and raises TimeoutError, and
    expired() returns True, as with asyncio.timeout().
    """

    def __init__(self, guard: DeadlineGuard) -> None:
        self._guard = guard
        # No deadline of its own: the guard expires it when one of its deadlines passes.
        self._timeout = asyncio.timeout(None)

    async def __aenter__(self) -> DeadlineScope:
        await self._timeout.__aenter__()
        self._guard._start(self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._guard._stop()
        await self._timeout.__aexit__(exc_type, exc, traceback)

    def expired(self) -> bool:
        """Return True when a deadline ended the block."""
        return self._timeout.expired()


class DeadlineGuard:
    """Keep one loop timer at the earliest deadline that applies in this phase."""

    def __init__(self, limits: TimeoutLimits, send_ns: int) -> None:
        self.limits = limits
        self._connect_ns = send_ns + int(limits.connect_s * NS_PER_S)
        self._ttft_ns = send_ns + int(limits.ttft_s * NS_PER_S)
        self._total_ns = send_ns + int(limits.total_s * NS_PER_S)
        self._idle_ns_per_read = int(limits.idle_s * NS_PER_S)
        self._last_read_ns: int | None = None
        self._connected = False
        self._text_seen = False
        self._timeout: asyncio.Timeout | None = None
        self._timer: asyncio.TimerHandle | None = None
        # The perf_counter_ns deadline the timer is set for.
        self._timer_ns = 0
        self._current_class = TIMEOUT_TOTAL

    def scope(self) -> DeadlineScope:
        """Return the context manager to wrap the request in."""
        return DeadlineScope(self)

    def connected(self) -> None:
        """Note that the request has a connection: the connect deadline no longer applies."""
        # The earliest deadline can only move later, which the timer finds when it fires.
        self._connected = True

    def bytes_arrived(self, now_ns: int) -> None:
        """Note a read of response bytes (or the headers): restart the idle deadline."""
        first_read = self._last_read_ns is None
        self._last_read_ns = now_ns
        if first_read and now_ns + self._idle_ns_per_read < self._timer_ns:
            # The idle deadline starts with this read and may come before the others.
            self._set_timer()

    def text_arrived(self) -> None:
        """Note the first text-carrying event: the TTFT deadline no longer applies."""
        self._text_seen = True

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

    def _start(self, timeout: asyncio.Timeout) -> None:
        self._timeout = timeout
        self._set_timer()

    def _stop(self) -> None:
        # A timer left behind would keep this guard alive until it fired.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timeout = None

    def _set_timer(self) -> None:
        if self._timeout is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_ns, self._current_class = self._earliest()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(_loop_time_of(self._timer_ns), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline_ns, deadline_class = self._earliest()
        if deadline_ns > self._timer_ns:
            # Reads or a phase change moved the earliest deadline since the timer was set.
            self._set_timer()
            return
        # The loop fired the timer for the deadline it was set for, so that deadline
        # has passed, even if perf_counter_ns() reads a little earlier.
        self._current_class = deadline_class
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())

    def _earliest(self) -> tuple[int, str]:
        # Order matters on ties: the more specific class wins over timeout_total.
        candidates: list[tuple[int, str]] = []
        if not self._connected:
            candidates.append((self._connect_ns, TIMEOUT_CONNECT))
        if not self._text_seen:
            candidates.append((self._ttft_ns, TIMEOUT_TTFT))
        if self._last_read_ns is not None:
            candidates.append((self._last_read_ns + self._idle_ns_per_read, TIMEOUT_IDLE))
        candidates.append((self._total_ns, TIMEOUT_TOTAL))
        return min(candidates, key=lambda candidate: candidate[0])


def _loop_time_of(perf_ns: int) -> float:
    # The event loop has its own monotonic clock; convert through "now" in both.
    return asyncio.get_running_loop().time() + (perf_ns - time.perf_counter_ns()) / NS_PER_S
