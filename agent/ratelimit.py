"""Retry-After and rate-limit headers of a provider response."""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from datetime import datetime

# Header families that describe a provider's rate limits: OpenAI, Azure, Groq and most
# relays send x-ratelimit-*, Anthropic sends anthropic-ratelimit-*.
_RATE_LIMIT_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "ratelimit-")
_RATE_LIMIT_NAMES = ("retry-after", "retry-after-ms")

# Go-style durations used by OpenAI's x-ratelimit-reset-*: "120ms", "1s", "6m0s", "2m59.56s".
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def rate_limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return the rate-limit headers of a response, with lower-case names."""
    selected: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in _RATE_LIMIT_NAMES or lower.startswith(_RATE_LIMIT_PREFIXES):
            selected[lower] = value
    return selected


def retry_after_s(headers: Mapping[str, str], now_unix_s: float) -> float | None:
    """Return how many seconds the provider wants the caller to wait, or None.

    Sources, first match wins: retry-after-ms; Retry-After as seconds or as an HTTP
    date; otherwise the reset time of an exhausted limit (x-ratelimit-remaining-X = 0
    with x-ratelimit-reset-X, or the anthropic-ratelimit-* equivalents), taking the
    longest wait when several limits are exhausted.
    """
    lower = {name.lower(): value.strip() for name, value in headers.items()}
    milliseconds = _parse_float(lower.get("retry-after-ms", ""))
    if milliseconds is not None:
        return max(0.0, milliseconds / 1000.0)
    if "retry-after" in lower:
        value = _parse_retry_after(lower["retry-after"], now_unix_s)
        if value is not None:
            return value
    return _exhausted_limit_wait_s(lower, now_unix_s)


def _parse_retry_after(value: str, now_unix_s: float) -> float | None:
    seconds = _parse_float(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_unix_s)


def _exhausted_limit_wait_s(lower: Mapping[str, str], now_unix_s: float) -> float | None:
    waits: list[float] = []
    for name, value in lower.items():
        if value != "0":
            continue
        if name.startswith("x-ratelimit-remaining-"):
            dimension = name.removeprefix("x-ratelimit-remaining-")
            wait = parse_duration_s(lower.get(f"x-ratelimit-reset-{dimension}", ""))
        elif name.startswith("anthropic-ratelimit-") and name.endswith("-remaining"):
            reset = lower.get(name.removesuffix("-remaining") + "-reset", "")
            wait = _seconds_until(reset, now_unix_s)
        else:
            continue
        if wait is not None:
            waits.append(wait)
    return max(waits) if waits else None


def parse_duration_s(text: str) -> float | None:
    """Parse a Go-style duration ("6m0s", "120ms", "7.66s") or bare seconds into seconds."""
    text = text.strip()
    bare = _parse_float(text)
    if bare is not None:
        return bare
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _seconds_until(timestamp: str, now_unix_s: float) -> float | None:
    # Anthropic's *-reset headers are RFC 3339 instants such as 2024-06-01T12:00:30Z.
    try:
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_unix_s)


def _parse_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value
