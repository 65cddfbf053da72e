"""Clock offset between this agent and the controller, estimated from heartbeats.

Each HeartbeatReply gives one sample with NTP's formula for a symmetric path:
offset = controller_unix_ns - (sent_unix_ns + received_unix_ns) / 2. The error of a
sample is at most half its round trip, so the estimator keeps the sample with the
smallest round trip out of the last few and reports rtt / 2 as the uncertainty.

The offset is (controller clock - agent clock): controller_time = agent_time + offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass

DEFAULT_WINDOW = 16


@dataclass(frozen=True)
class ClockSample:
    """One offset measurement from a heartbeat round trip."""

    offset_ns: int
    rtt_ns: int


@dataclass(frozen=True)
class ClockMapping:
    """A fixed link between perf_counter_ns, the local wall clock and the controller clock.

    An assignment takes one mapping at its start and converts every timestamp with it,
    so its records stay consistent with each other even if the wall clock is stepped
    or the offset estimate moves during the run.
    """

    perf_ns: int
    unix_ns: int
    offset_ns: int

    def controller_unix_to_perf_ns(self, controller_unix_ns: int) -> int:
        """Convert an instant on the controller clock to local perf_counter_ns."""
        local_unix_ns = controller_unix_ns - self.offset_ns
        return self.perf_ns + (local_unix_ns - self.unix_ns)

    def perf_to_controller_unix_ns(self, perf_ns: int) -> int:
        """Convert a local perf_counter_ns instant to the controller clock."""
        return self.unix_ns + self.offset_ns + (perf_ns - self.perf_ns)


class ClockEstimator:
    """Minimum-round-trip offset estimate over the last ``window`` heartbeat replies."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"clock sample window must be at least 1, got {window}")
        self._samples: deque[ClockSample] = deque(maxlen=window)
        self._best: ClockSample | None = None
        self._estimated = asyncio.Event()

    def add_reply(self, sent_unix_ns: int, controller_unix_ns: int, rtt_ns: int) -> ClockSample:
        """Add the sample from one heartbeat reply and return it.

        ``rtt_ns`` is measured with perf_counter_ns, so a wall-clock step during the
        round trip cannot distort it. The receive time is then sent + rtt.
        """
        rtt_ns = max(0, rtt_ns)
        midpoint_unix_ns = sent_unix_ns + rtt_ns // 2
        sample = ClockSample(offset_ns=controller_unix_ns - midpoint_unix_ns, rtt_ns=rtt_ns)
        self._samples.append(sample)
        self._best = min(self._samples, key=lambda s: s.rtt_ns)
        self._estimated.set()
        return sample

    async def wait_for_estimate(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the first reply; return whether there is an estimate."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._estimated.wait(), timeout_s)
        return self.has_estimate

    @property
    def has_estimate(self) -> bool:
        """True once at least one heartbeat reply has arrived."""
        return self._best is not None

    @property
    def offset_ns(self) -> int:
        """Estimated controller clock minus agent clock; 0 until the first reply."""
        return self._best.offset_ns if self._best else 0

    @property
    def uncertainty_ns(self) -> int:
        """Half the round trip of the chosen sample; 0 until the first reply."""
        return self._best.rtt_ns // 2 if self._best else 0

    @property
    def uncertainty_ms(self) -> float:
        """The uncertainty in milliseconds, as the Heartbeat message carries it."""
        return self.uncertainty_ns / 1e6

    def mapping(self) -> ClockMapping:
        """Take a mapping from the current clocks and the current offset estimate."""
        return ClockMapping(
            perf_ns=time.perf_counter_ns(), unix_ns=time.time_ns(), offset_ns=self.offset_ns
        )
