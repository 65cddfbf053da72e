"""Behaviour profiles of simulated providers, and the built-in set used by ``llmping demo``.

A profile fixes everything a simulated provider does: which models it offers, how long
it waits before the first token, how fast it streams, how often it fails and how, and
which wire-format quirks it shows. Profiles are plain frozen dataclasses; the YAML
loader in ``llmping.simulator.profile_yaml`` builds them from a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TtftDistribution = Literal["uniform", "normal", "exponential"]
ErrorBody = Literal["json", "html"]

TTFT_DISTRIBUTIONS: tuple[str, ...] = ("uniform", "normal", "exponential")
ERROR_BODIES: tuple[str, ...] = ("json", "html")


@dataclass(frozen=True)
class QuirkProfile:
    """Wire-format habits of real providers and relays, all off by default."""

    # Interval of ": keep-alive" SSE comment lines sent while the request is "queued",
    # before the first token, as some relays do; 0 turns them off.
    keepalive_interval_ms: float = 0.0
    # Azure OpenAI sends a first event with empty choices and prompt_filter_results.
    azure_empty_first_chunk: bool = False
    # Reasoning tokens streamed as reasoning_content (Anthropic: a thinking block)
    # before the content, as DeepSeek-R1-style models do.
    reasoning_tokens: int = 0
    # Fraction of streaming requests that send an error event after
    # fault_after_tokens tokens and end the stream (non-streaming: a 200 error body).
    stream_error_rate: float = 0.0
    # Fraction of requests whose connection is closed after fault_after_tokens tokens,
    # without a finish reason or [DONE].
    truncate_rate: float = 0.0
    fault_after_tokens: int = 5


@dataclass(frozen=True)
class ProviderProfile:
    """One simulated provider, served under ``/<name>/v1``."""

    name: str
    models: tuple[str, ...]
    ttft_ms: float
    tokens_per_s: float
    # Tokens in a full completion; a smaller max_tokens in the request wins.
    output_tokens: int = 48
    # Spread of the TTFT: uniform draws from ttft_ms +- jitter, normal uses jitter as the
    # standard deviation, exponential adds an exponential tail with mean jitter. A TTFT
    # drawn below 0 is clamped to 0.
    ttft_jitter_ms: float = 0.0
    ttft_distribution: TtftDistribution = "uniform"
    # Fraction of admitted requests that fail with error_status after error_delay_ms.
    error_rate: float = 0.0
    error_status: int = 502
    error_body: ErrorBody = "json"
    error_delay_ms: float = 0.0
    # Requests admitted per sliding 1 s window; the rest get 429. None means unlimited.
    rate_limit_per_s: int | None = None
    # When set, requests must carry it as a Bearer token (or x-api-key / api-key header).
    api_key: str | None = field(default=None, repr=False)
    # Seed of the provider's random generator, for repeatable error and jitter draws.
    seed: int | None = None
    quirks: QuirkProfile = field(default_factory=QuirkProfile)

    @property
    def token_gap_ms(self) -> float:
        """Time between two successive tokens of one completion."""
        return 1000.0 / self.tokens_per_s


# The model the demo requests; every built-in provider but "reasoner" offers it, so
# demo reports show N/A in that row.
DEMO_MODEL = "gpt-4o"


def default_profiles() -> list[ProviderProfile]:
    """Return the built-in providers, each with clearly different behaviour.

    Outputs are short (40 to 56 tokens) so that a demo run finishes in seconds.
    """
    return [
        ProviderProfile(
            name="fast-relay",
            models=(DEMO_MODEL, "gpt-4o-mini"),
            ttft_ms=150.0,
            ttft_jitter_ms=20.0,
            tokens_per_s=80.0,
            output_tokens=40,
            quirks=QuirkProfile(keepalive_interval_ms=100.0),
        ),
        ProviderProfile(
            name="official",
            models=(DEMO_MODEL, "gpt-4o-mini", "o3-mini"),
            ttft_ms=400.0,
            ttft_jitter_ms=40.0,
            ttft_distribution="normal",
            tokens_per_s=50.0,
            output_tokens=48,
        ),
        ProviderProfile(
            name="budget-relay",
            models=(DEMO_MODEL, "gpt-4o-mini"),
            ttft_ms=250.0,
            ttft_jitter_ms=80.0,
            ttft_distribution="exponential",
            tokens_per_s=40.0,
            output_tokens=48,
            error_rate=0.08,
            error_status=502,
            error_body="html",
            error_delay_ms=30.0,
        ),
        ProviderProfile(
            name="limited",
            models=(DEMO_MODEL,),
            ttft_ms=200.0,
            ttft_jitter_ms=20.0,
            tokens_per_s=60.0,
            output_tokens=48,
            rate_limit_per_s=8,
        ),
        ProviderProfile(
            name="azure-style",
            models=(DEMO_MODEL, "gpt-4o-mini"),
            ttft_ms=300.0,
            ttft_jitter_ms=30.0,
            tokens_per_s=60.0,
            output_tokens=56,
            quirks=QuirkProfile(azure_empty_first_chunk=True),
        ),
        ProviderProfile(
            name="reasoner",
            models=("deepseek-reasoner", "deepseek-chat"),
            ttft_ms=350.0,
            ttft_jitter_ms=50.0,
            tokens_per_s=70.0,
            output_tokens=40,
            quirks=QuirkProfile(reasoning_tokens=16),
        ),
    ]


def describe_profile(profile: ProviderProfile) -> str:
    """Render one line with a profile's settings, never its API key."""
    parts = [
        f"models={','.join(profile.models)}",
        f"ttft_ms={profile.ttft_ms:g}",
    ]
    if profile.ttft_jitter_ms:
        parts.append(f"jitter_ms={profile.ttft_jitter_ms:g}({profile.ttft_distribution})")
    parts.append(f"tokens_per_s={profile.tokens_per_s:g}")
    parts.append(f"output_tokens={profile.output_tokens}")
    if profile.error_rate:
        parts.append(f"errors={profile.error_rate:g}x{profile.error_status}({profile.error_body})")
    if profile.rate_limit_per_s is not None:
        parts.append(f"rate_limit_per_s={profile.rate_limit_per_s}")
    if profile.api_key is not None:
        parts.append("api_key=required")
    parts.extend(_describe_quirks(profile.quirks))
    return f"{profile.name}: " + " ".join(parts)


def _describe_quirks(quirks: QuirkProfile) -> list[str]:
    parts: list[str] = []
    if quirks.keepalive_interval_ms:
        parts.append(f"keepalive_interval_ms={quirks.keepalive_interval_ms:g}")
    if quirks.azure_empty_first_chunk:
        parts.append("azure_empty_first_chunk")
    if quirks.reasoning_tokens:
        parts.append(f"reasoning_tokens={quirks.reasoning_tokens}")
    if quirks.stream_error_rate:
        parts.append(f"stream_error_rate={quirks.stream_error_rate:g}")
    if quirks.truncate_rate:
        parts.append(f"truncate_rate={quirks.truncate_rate:g}")
    return parts
