"""Runtime state of one simulated provider: its random generator, rate limiter and counters."""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from dataclasses import dataclass, field

from llmping.simulator.profiles import ProviderProfile

_WINDOW_NS = 1_000_000_000


@dataclass(frozen=True)
class RateDecision:
    """Outcome of one admission check against a sliding-window rate limit."""

    admitted: bool
    limit: int
    remaining: int
    # Time until the oldest admitted request leaves the window and frees a slot.
    reset_ms: float

    def headers(self) -> dict[str, str]:
        """Return OpenAI-style x-ratelimit headers, plus Retry-After on a rejection."""
        headers = {
            "x-ratelimit-limit-requests": str(self.limit),
            "x-ratelimit-remaining-requests": str(self.remaining),
            "x-ratelimit-reset-requests": f"{math.ceil(self.reset_ms)}ms",
        }
        if not self.admitted:
            # Retry-After counts whole seconds (RFC 9110), so it is rounded up; the
            # millisecond form some providers add is exact.
            headers["Retry-After"] = str(max(1, math.ceil(self.reset_ms / 1000.0)))
            headers["retry-after-ms"] = str(math.ceil(self.reset_ms))
        return headers


class SlidingWindowLimiter:
    """Admit at most limit_per_s requests in any 1 s window.

    Only admitted requests enter the window, so under a steady overload the provider
    keeps serving limit_per_s requests per second and rejects the rest, as token-bucket
    limiters of real providers do, instead of rejecting everything.
    """

    def __init__(self, limit_per_s: int) -> None:
        self._limit = limit_per_s
        self._admitted_ns: deque[int] = deque()

    def try_admit(self, now_ns: int) -> RateDecision:
        while self._admitted_ns and self._admitted_ns[0] <= now_ns - _WINDOW_NS:
            self._admitted_ns.popleft()
        admitted = len(self._admitted_ns) < self._limit
        if admitted:
            self._admitted_ns.append(now_ns)
        reset_ns = self._admitted_ns[0] + _WINDOW_NS - now_ns if self._admitted_ns else 0
        return RateDecision(
            admitted=admitted,
            limit=self._limit,
            remaining=self._limit - len(self._admitted_ns),
            reset_ms=reset_ns / 1_000_000,
        )


@dataclass
class ProviderStats:
    """Counters of one simulated provider since the server started."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    # Responses broken on purpose by the profile's quirks: error events and truncations.
    stream_faults: int = 0


class ProviderState:
    """Mutable per-provider state shared by all requests to that provider."""

    def __init__(self, profile: ProviderProfile) -> None:
        self.profile = profile
        self.rng = random.Random(profile.seed)
        self.limiter = (
            SlidingWindowLimiter(profile.rate_limit_per_s)
            if profile.rate_limit_per_s is not None
            else None
        )
        self.stats = ProviderStats()
