"""Per-request decisions of a simulated provider: TTFT, tokens, faults and their timing.

All random draws for one request happen here, before anything is sent, so the wire
writers only follow the plan. Token k (0-based, reasoning tokens first) is due at
``arrival + ttft + k * gap`` on the monotonic clock, computed from the arrival time
rather than from the previous send, so lateness of one write never shifts later ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from llmping.simulator import text
from llmping.simulator.profiles import ProviderProfile

Fault = Literal["none", "error_event", "truncate"]


@dataclass(frozen=True)
class ResponsePlan:
    """Tokens of one simulated completion, their due times and a possible fault."""

    model: str
    arrival_ns: int
    ttft_ms: float
    token_gap_ms: float
    reasoning: tuple[str, ...]
    content: tuple[str, ...]
    # "stop" when every token was generated, "length" when max_tokens cut the completion.
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    fault: Fault
    # Content tokens sent before the fault fires, at most len(content).
    fault_after_tokens: int

    @property
    def output_tokens(self) -> int:
        return len(self.reasoning) + len(self.content)

    def token_due_ns(self, index: int) -> int:
        """Return the monotonic time (perf_counter_ns) at which token index is due."""
        offset_ms = self.ttft_ms + index * self.token_gap_ms
        return self.arrival_ns + round(offset_ms * 1_000_000)

    def last_token_due_ns(self) -> int:
        """Return when the last token is due, the time a non-streaming response is sent."""
        return self.token_due_ns(max(self.output_tokens - 1, 0))


def plan_response(
    profile: ProviderProfile,
    rng: random.Random,
    arrival_ns: int,
    model: str,
    messages: object,
    max_tokens: int | None,
) -> ResponsePlan:
    """Draw the TTFT, the tokens and a possible fault for one admitted request."""
    chinese = text.contains_cjk(text.last_user_text(messages))
    limit = (
        max_tokens
        if max_tokens is not None
        else profile.quirks.reasoning_tokens + profile.output_tokens
    )

    # Reasoning tokens count against max_tokens first, as with OpenAI's o-series models.
    reasoning_count = min(profile.quirks.reasoning_tokens, limit)
    content_count = min(profile.output_tokens, limit - reasoning_count)
    cut = reasoning_count + content_count < profile.quirks.reasoning_tokens + profile.output_tokens
    fault = draw_fault(profile, rng)

    return ResponsePlan(
        model=model,
        arrival_ns=arrival_ns,
        ttft_ms=draw_ttft_ms(profile, rng),
        token_gap_ms=profile.token_gap_ms,
        reasoning=tuple(text.reasoning_tokens(chinese, reasoning_count)),
        content=tuple(text.content_tokens(chinese, content_count, rng)),
        finish_reason="length" if cut else "stop",
        prompt_tokens=text.estimate_tokens(text.all_message_text(messages)),
        fault=fault,
        fault_after_tokens=min(profile.quirks.fault_after_tokens, content_count),
    )


def draw_ttft_ms(profile: ProviderProfile, rng: random.Random) -> float:
    """Draw one TTFT from the profile's distribution, clamped at 0."""
    jitter_ms = profile.ttft_jitter_ms
    if jitter_ms <= 0:
        return profile.ttft_ms
    if profile.ttft_distribution == "normal":
        value = rng.gauss(profile.ttft_ms, jitter_ms)
    elif profile.ttft_distribution == "exponential":
        value = profile.ttft_ms + rng.expovariate(1.0 / jitter_ms)
    else:
        value = rng.uniform(profile.ttft_ms - jitter_ms, profile.ttft_ms + jitter_ms)
    return max(0.0, value)


def draw_fault(profile: ProviderProfile, rng: random.Random) -> Fault:
    """Decide whether this completion breaks mid-stream, and how."""
    quirks = profile.quirks
    if not quirks.stream_error_rate and not quirks.truncate_rate:
        return "none"
    draw = rng.random()
    if draw < quirks.stream_error_rate:
        return "error_event"
    if draw < quirks.stream_error_rate + quirks.truncate_rate:
        return "truncate"
    return "none"
