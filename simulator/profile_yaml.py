"""Load and validate simulator profiles from YAML.

The file contains one key, ``providers``, a list of mappings whose keys are the fields of
:class:`~llmping.simulator.profiles.ProviderProfile` (``quirks`` is a nested mapping)::

    providers:
      - name: fast-relay
        models: [gpt-4o]
        ttft_ms: 150
        tokens_per_s: 80
        quirks: {keepalive_interval_ms: 100}

Every problem raises :class:`ProfileError`, which names the field path
(``providers[1].ttft_ms``), the value and the fix.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, cast

import yaml

from llmping.errors import InputError
from llmping.simulator.profiles import (
    ERROR_BODIES,
    TTFT_DISTRIBUTIONS,
    ErrorBody,
    ProviderProfile,
    QuirkProfile,
    TtftDistribution,
)

# Provider names become a URL path segment.
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_PROFILE_FIELDS = tuple(f.name for f in dataclasses.fields(ProviderProfile))
_QUIRK_FIELDS = tuple(f.name for f in dataclasses.fields(QuirkProfile))


class ProfileError(InputError):
    """A simulator profile field is invalid; ``path`` is the dotted field path."""

    def __init__(self, path: str, value: object, problem: str, hint: str) -> None:
        self.path = path
        self.value = value
        self.problem = problem
        self.hint = hint
        super().__init__(f"invalid simulator profile field {path}, {value!r}: {problem}; {hint}")


def load_profiles_file(path: Path) -> list[ProviderProfile]:
    """Read a YAML profile file; raise InputError when it cannot be read or parsed."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read simulator config {str(path)!r}: {exc}; check the path"
        ) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(
            f"invalid YAML in simulator config {str(path)!r}: {exc}; fix the syntax"
        ) from exc
    return parse_profiles(document)


def parse_profiles(document: object) -> list[ProviderProfile]:
    """Build profiles from a parsed YAML document and validate every field."""
    if not isinstance(document, dict):
        raise ProfileError(
            "(top level)",
            _short(document),
            "expected a mapping",
            "start the file with 'providers:'",
        )
    _reject_unknown_keys(document, ("providers",), "")
    providers = document.get("providers")
    if not isinstance(providers, list) or not providers:
        raise ProfileError(
            "providers",
            _short(providers),
            "expected a non-empty list",
            "list at least one provider",
        )

    profiles = [_parse_provider(raw, f"providers[{index}]") for index, raw in enumerate(providers)]
    validate_profiles(profiles)
    return profiles


def validate_profiles(profiles: list[ProviderProfile]) -> None:
    """Raise ProfileError on the first invalid field or a repeated provider name."""
    seen: set[str] = set()
    for index, profile in enumerate(profiles):
        path = f"providers[{index}]"
        validate_profile(profile, path)
        if profile.name in seen:
            raise ProfileError(
                f"{path}.name",
                profile.name,
                "the name is used twice",
                "give each provider a unique name",
            )
        seen.add(profile.name)


def validate_profile(profile: ProviderProfile, path: str) -> None:
    """Raise ProfileError unless every value of the profile is in range."""
    _validate_identity(profile, path)
    _validate_timing(profile, path)
    _validate_failures(profile, path)
    _validate_quirks(profile.quirks, f"{path}.quirks")


def _validate_identity(profile: ProviderProfile, path: str) -> None:
    if not _NAME_PATTERN.match(profile.name):
        raise ProfileError(
            f"{path}.name",
            profile.name,
            "not usable as a URL path segment",
            "use 1-63 letters, digits, '.', '_' or '-'",
        )
    if not profile.models or not all(isinstance(m, str) and m for m in profile.models):
        raise ProfileError(
            f"{path}.models",
            list(profile.models),
            "expected non-empty model names",
            "list at least one model",
        )
    if profile.api_key is not None and not profile.api_key:
        raise ProfileError(
            f"{path}.api_key", "", "must not be empty", "remove the field or set a key"
        )


def _validate_timing(profile: ProviderProfile, path: str) -> None:
    _check_range(f"{path}.ttft_ms", profile.ttft_ms, 0.0, None, "milliseconds")
    _check_range(f"{path}.ttft_jitter_ms", profile.ttft_jitter_ms, 0.0, None, "milliseconds")
    if profile.tokens_per_s <= 0:
        raise ProfileError(
            f"{path}.tokens_per_s", profile.tokens_per_s, "must be > 0", "set a rate such as 50"
        )
    _check_range(f"{path}.output_tokens", profile.output_tokens, 1, None, "tokens")


def _validate_failures(profile: ProviderProfile, path: str) -> None:
    _check_range(f"{path}.error_rate", profile.error_rate, 0.0, 1.0, "a fraction")
    _check_range(f"{path}.error_status", profile.error_status, 400, 599, "an HTTP error status")
    _check_range(f"{path}.error_delay_ms", profile.error_delay_ms, 0.0, None, "milliseconds")
    if profile.rate_limit_per_s is not None:
        _check_range(
            f"{path}.rate_limit_per_s", profile.rate_limit_per_s, 1, None, "requests per second"
        )


def _validate_quirks(quirks: QuirkProfile, path: str) -> None:
    _check_range(
        f"{path}.keepalive_interval_ms", quirks.keepalive_interval_ms, 0.0, None, "milliseconds"
    )
    _check_range(f"{path}.reasoning_tokens", quirks.reasoning_tokens, 0, None, "tokens")
    _check_range(f"{path}.stream_error_rate", quirks.stream_error_rate, 0.0, 1.0, "a fraction")
    _check_range(f"{path}.truncate_rate", quirks.truncate_rate, 0.0, 1.0, "a fraction")
    _check_range(f"{path}.fault_after_tokens", quirks.fault_after_tokens, 0, None, "tokens")
    if quirks.stream_error_rate + quirks.truncate_rate > 1.0:
        raise ProfileError(
            f"{path}.truncate_rate",
            quirks.truncate_rate,
            "stream_error_rate + truncate_rate exceeds 1",
            "lower one of the two rates",
        )


def _check_range(path: str, value: float, minimum: float, maximum: float | None, unit: str) -> None:
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum:g}" if maximum is None else f"within {minimum:g}..{maximum:g}"
        raise ProfileError(path, value, f"must be {bound}", f"set a value {bound} ({unit})")


def _parse_provider(raw: object, path: str) -> ProviderProfile:
    if not isinstance(raw, dict):
        raise ProfileError(
            path, _short(raw), "expected a mapping", "write the provider as 'name: ...' keys"
        )
    _reject_unknown_keys(raw, _PROFILE_FIELDS, path)
    for required in ("name", "models", "ttft_ms", "tokens_per_s"):
        if required not in raw:
            raise ProfileError(
                f"{path}.{required}", None, "missing", f"add '{required}:' to the provider"
            )

    defaults = ProviderProfile(name="x", models=("x",), ttft_ms=0.0, tokens_per_s=1.0)
    return ProviderProfile(
        name=_string(raw["name"], f"{path}.name"),
        models=_models(raw["models"], f"{path}.models"),
        ttft_ms=_number(raw["ttft_ms"], f"{path}.ttft_ms"),
        tokens_per_s=_number(raw["tokens_per_s"], f"{path}.tokens_per_s"),
        output_tokens=_integer(
            raw.get("output_tokens", defaults.output_tokens), f"{path}.output_tokens"
        ),
        ttft_jitter_ms=_number(raw.get("ttft_jitter_ms", 0.0), f"{path}.ttft_jitter_ms"),
        ttft_distribution=cast(
            TtftDistribution,
            _choice(
                raw.get("ttft_distribution", "uniform"),
                TTFT_DISTRIBUTIONS,
                f"{path}.ttft_distribution",
            ),
        ),
        error_rate=_number(raw.get("error_rate", 0.0), f"{path}.error_rate"),
        error_status=_integer(
            raw.get("error_status", defaults.error_status), f"{path}.error_status"
        ),
        error_body=cast(
            ErrorBody, _choice(raw.get("error_body", "json"), ERROR_BODIES, f"{path}.error_body")
        ),
        error_delay_ms=_number(raw.get("error_delay_ms", 0.0), f"{path}.error_delay_ms"),
        rate_limit_per_s=_optional_integer(raw.get("rate_limit_per_s"), f"{path}.rate_limit_per_s"),
        api_key=_optional_secret(raw.get("api_key"), f"{path}.api_key"),
        seed=_optional_integer(raw.get("seed"), f"{path}.seed"),
        quirks=_parse_quirks(raw.get("quirks", {}), f"{path}.quirks"),
    )


def _parse_quirks(raw: object, path: str) -> QuirkProfile:
    if raw is None:
        return QuirkProfile()
    if not isinstance(raw, dict):
        raise ProfileError(
            path, _short(raw), "expected a mapping", "write quirks as 'key: value' pairs"
        )
    _reject_unknown_keys(raw, _QUIRK_FIELDS, path)
    defaults = QuirkProfile()
    return QuirkProfile(
        keepalive_interval_ms=_number(
            raw.get("keepalive_interval_ms", defaults.keepalive_interval_ms),
            f"{path}.keepalive_interval_ms",
        ),
        azure_empty_first_chunk=_boolean(
            raw.get("azure_empty_first_chunk", False), f"{path}.azure_empty_first_chunk"
        ),
        reasoning_tokens=_integer(raw.get("reasoning_tokens", 0), f"{path}.reasoning_tokens"),
        stream_error_rate=_number(raw.get("stream_error_rate", 0.0), f"{path}.stream_error_rate"),
        truncate_rate=_number(raw.get("truncate_rate", 0.0), f"{path}.truncate_rate"),
        fault_after_tokens=_integer(
            raw.get("fault_after_tokens", defaults.fault_after_tokens), f"{path}.fault_after_tokens"
        ),
    )


def _reject_unknown_keys(raw: dict[Any, Any], known: tuple[str, ...], path: str) -> None:
    for key in raw:
        if key not in known:
            where = f"{path}.{key}" if path else str(key)
            raise ProfileError(where, key, "unknown field", f"use one of: {', '.join(known)}")


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ProfileError(path, _short(value), "expected a string", "quote the value")
    return value


def _models(value: object, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ProfileError(
            path, _short(value), "expected a non-empty list", "write a list such as [gpt-4o]"
        )
    return tuple(_string(item, f"{path}[{index}]") for index, item in enumerate(value))


def _number(value: object, path: str) -> float:
    # bool is a subclass of int, but "ttft_ms: true" is a mistake, not 1 ms.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProfileError(
            path, _short(value), "expected a number", "write a plain number such as 150"
        )
    return float(value)


def _integer(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileError(
            path, _short(value), "expected an integer", "write a whole number such as 8"
        )
    return value


def _optional_integer(value: object, path: str) -> int | None:
    return None if value is None else _integer(value, path)


def _optional_secret(value: object, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        # The value is a key, so the message leaves it out.
        raise ProfileError(path, "<hidden>", "expected a string", "quote the key")
    return value


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise ProfileError(path, _short(value), "expected true or false", "write true or false")
    return value


def _choice(value: object, choices: tuple[str, ...], path: str) -> str:
    if value not in choices:
        raise ProfileError(
            path, _short(value), "unknown value", f"use one of: {', '.join(choices)}"
        )
    return cast(str, value)


def _short(value: object) -> object:
    """Keep error messages readable when the offending value is a large structure."""
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."
