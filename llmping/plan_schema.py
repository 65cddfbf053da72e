"""Pydantic models of a plan file, their single-field validators and the constants they use.

Cross-field rules are in llmping.plan_rules, and llmping.plan is the entry point.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from llmping.controller.thresholds import metric_names as threshold_metric_names
from llmping.presets import PRESETS

# Limits of the pb.Plan fields that each number travels in.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# Limits that keep a typo (an extra zero, a value in ms) from becoming a run of years or
# a figure no estimate can count. They are far above any real run.
MAX_RUN_S = 30 * 86400.0
MAX_TIMEOUT_S = 86400.0
MAX_RATE_PER_S = 1_000_000.0

# Strict types: YAML true and quoted numbers such as "2" are rejected instead of being
# read as 1 and 2. StrictFloat still accepts an integer.
Int32 = Annotated[StrictInt, Field(le=INT32_MAX)]
Int64 = Annotated[StrictInt, Field(le=INT64_MAX)]
FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]
RunSeconds = Annotated[StrictFloat, Field(allow_inf_nan=False, le=MAX_RUN_S)]
TimeoutSeconds = Annotated[StrictFloat, Field(allow_inf_nan=False, le=MAX_TIMEOUT_S)]
RatePerS = Annotated[StrictFloat, Field(allow_inf_nan=False, le=MAX_RATE_PER_S)]

DEFAULT_TIMEOUTS_S = {"connect_s": 10.0, "ttft_s": 60.0, "idle_s": 30.0, "total_s": 300.0}

KNOWN_ERROR_CLASSES = frozenset(
    {
        "timeout_connect",
        "timeout_ttft",
        "timeout_idle",
        "timeout_total",
        "connection_refused",
        "connection_reset",
        "dns",
        "tls",
        "provider_error",
        "stream_truncated",
        "empty_response",
        "malformed_response",
        "model_not_found",
        "content_filter",
        "cancelled",
    }
)
# http_429 names one status; http_4xx and http_5xx name a whole group, as the agent's
# retry rule matches them.
HTTP_ERROR_CLASS = re.compile(r"^http_([1-5][0-9][0-9]|[45]xx)$")

# The controller evaluates thresholds, so its list of metric names is the one to accept.
THRESHOLD_METRICS = frozenset(threshold_metric_names())
THRESHOLD_OPS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
THRESHOLD_SCOPE_KEYS = ("provider", "target")

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEY_PREFIXES = ("sk-", "sk_", "sk-ant-", "sess-", "gsk_", "xai-", "key-", "bearer ")
SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization"})
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def preset_names() -> str:
    return ", ".join(PRESETS)


def _plan_error(problem: str, hint: str) -> PydanticCustomError:
    """Build a pydantic error that keeps our hint for the translated message."""
    return PydanticCustomError("plan_value", "{problem}", {"problem": problem, "hint": hint})


# ---------------------------------------------------------------------------
# Models. Every model forbids unknown keys so a typo is an error, not a silent default.
# ---------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def looks_like_api_key(value: str) -> bool:
    """Return True when a value looks like a secret rather than a variable name."""
    lowered = value.strip().lower()
    if lowered.startswith(KEY_PREFIXES) or " " in value.strip():
        return True
    # Long random-looking names with digits and no separators are keys, not names.
    return len(value) >= 32 and "_" not in value and any(c.isdigit() for c in value)


def _validate_http_url(value: str, field_name: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _plan_error(
            f"invalid {field_name} {value!r}", "use an absolute http:// or https:// URL with a host"
        )
    if parts.username or parts.password:
        raise _plan_error(
            f"{field_name} contains credentials",
            "remove user:password@ and use api_key_env for the key",
        )
    return value.rstrip("/")


def _validate_name(value: str, field_name: str) -> str:
    if not value.strip():
        raise _plan_error(f"{field_name} is empty", f"give the {field_name} a short name")
    if CONTROL_CHARS.search(value) or len(value) > 64:
        raise _plan_error(
            f"invalid {field_name} {value[:64]!r}",
            "use at most 64 characters without control characters",
        )
    return value


class ProviderSpec(_Strict):
    """One API endpoint with a model, as written in the plan."""

    name: str
    kind: Literal["openai", "azure", "anthropic", "openai_compatible"] | None = None
    preset: str | None = None
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    extra_body: dict[str, Any] = Field(default_factory=dict)
    proxy: str | None = None
    api_version: str | None = None
    deployment: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _validate_name(value, "provider name")

    @field_validator("preset")
    @classmethod
    def _check_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            close = difflib.get_close_matches(value, sorted(PRESETS), n=1)
            hint = f"did you mean {close[0]}?" if close else f"use one of {preset_names()}"
            raise _plan_error(f"unknown preset {value[:64]!r}", hint)
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        return None if value is None else _validate_http_url(value, "base_url")

    @field_validator("model")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise _plan_error("model is empty", "set the model name the provider expects")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _check_api_key_env(cls, value: str | None) -> str | None:
        # The value itself stays out of both messages: it may be a real key.
        if value is None:
            return None
        if looks_like_api_key(value):
            raise _plan_error(
                "api_key_env looks like an API key, not an environment variable name",
                "put the key in an environment variable on the agent "
                "(export OPENAI_API_KEY=...) and write the variable's name here",
            )
        if not ENV_NAME.match(value):
            raise _plan_error(
                "api_key_env is not a valid environment variable name",
                "use letters, digits and _, e.g. OPENAI_API_KEY",
            )
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in SECRET_HEADERS:
                raise _plan_error(
                    f"header {name!r} would put a credential into the plan",
                    "remove it and name the key's environment variable in api_key_env",
                )
            if CONTROL_CHARS.search(name) or CONTROL_CHARS.search(value[name]):
                raise _plan_error(
                    f"header {name!r} contains a control character", "remove line breaks"
                )
        return value

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "socks5") or not parts.hostname:
            raise _plan_error(
                f"invalid proxy {value!r}",
                "use an http://, https:// or socks5:// URL such as http://127.0.0.1:7890",
            )
        return value


class MessageSpec(_Strict):
    """One chat message of the request."""

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


class RequestSpecModel(_Strict):
    """The request every provider receives; ``prompt`` is one user message."""

    messages: list[MessageSpec] = Field(min_length=1)
    max_tokens: Int32 = Field(default=512, gt=0)
    stream: bool = True
    temperature: FiniteFloat | None = Field(default=None, ge=0.0, le=2.0)
    include_usage: bool = True
    new_connection_per_request: bool = False

    @model_validator(mode="before")
    @classmethod
    def _expand_prompt(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "prompt" not in data:
            return data
        if "messages" in data:
            raise _plan_error(
                "both prompt and messages are set", "keep prompt (one user message) or messages"
            )
        expanded = {k: v for k, v in data.items() if k != "prompt"}
        expanded["messages"] = [{"role": "user", "content": data["prompt"]}]
        return expanded


class StageSpec(_Strict):
    """One step of a stepped load: a rate (open loop) or a concurrency (closed loop)."""

    rate_per_s: RatePerS | None = Field(default=None, gt=0)
    concurrency: Int32 | None = Field(default=None, gt=0)
    duration_s: RunSeconds = Field(gt=0)
    ramp_s: RunSeconds = Field(default=0.0, ge=0)


class RetrySpec(_Strict):
    """Opt-in retries; every attempt is its own record."""

    max_attempts: StrictInt = Field(default=2, ge=1, le=10)
    backoff_s: TimeoutSeconds = Field(default=1.0, ge=0)
    on_error_classes: list[str] = Field(default_factory=lambda: ["http_429", "http_503"])

    @field_validator("on_error_classes")
    @classmethod
    def _check_classes(cls, value: list[str]) -> list[str]:
        for error_class in value:
            if error_class not in KNOWN_ERROR_CLASSES and not HTTP_ERROR_CLASS.match(error_class):
                raise _plan_error(
                    f"unknown error class {error_class!r}",
                    "use http_<status>, http_4xx, http_5xx or one of "
                    + ", ".join(sorted(KNOWN_ERROR_CLASSES)),
                )
        return value


class LoadSpecModel(_Strict):
    """Load applied to each provider from each target."""

    mode: Literal["closed", "constant", "poisson"] | None = None
    concurrency: Int32 | None = Field(default=None, gt=0)
    rate_per_s: RatePerS | None = Field(default=None, gt=0)
    stages: list[StageSpec] = Field(default_factory=list)
    duration_s: RunSeconds | None = Field(default=None, gt=0)
    request_count: Int64 | None = Field(default=None, gt=0)
    warmup_s: RunSeconds = Field(default=0.0, ge=0)
    max_in_flight: Int32 | None = Field(default=None, gt=0)
    overflow: Literal["delay", "drop"] = "delay"
    retry: RetrySpec | None = None
    # Cost guard: the plan is rejected when its estimated total request count exceeds it.
    max_requests: Int64 | None = Field(default=None, gt=0)
    # Poisson arrivals repeat for the same seed.
    seed: Int64 | None = None

    @field_validator("seed")
    @classmethod
    def _check_seed(cls, value: int | None) -> int | None:
        # The contract reads seed 0 as "pick a random seed", so a plan cannot request 0.
        if value is not None and value <= 0:
            raise _plan_error(
                f"invalid seed {value}", "use a positive integer, or remove seed for a random one"
            )
        return value

    def resolved_mode(self) -> str:
        """Return the mode, inferring closed or constant when the plan leaves it out."""
        if self.mode is not None:
            return self.mode
        has_rate = self.rate_per_s is not None or any(s.rate_per_s for s in self.stages)
        return "constant" if has_rate else "closed"


class TargetSpec(_Strict):
    """A group of agents chosen by labels; ``- shanghai`` means ``{region: shanghai}``."""

    name: str
    selector: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"name": data, "selector": {"region": data}}
        if isinstance(data, dict) and "name" in data and "selector" not in data:
            return {**data, "selector": {"region": data["name"]}}
        return data

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _validate_name(value, "target name")

    @field_validator("selector")
    @classmethod
    def _check_selector(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise _plan_error("selector is empty", "add at least one label, e.g. region: tokyo")
        return value


class TimeoutsSpec(_Strict):
    """Per-request timeouts in seconds."""

    connect_s: TimeoutSeconds = Field(default=DEFAULT_TIMEOUTS_S["connect_s"], gt=0)
    ttft_s: TimeoutSeconds = Field(default=DEFAULT_TIMEOUTS_S["ttft_s"], gt=0)
    idle_s: TimeoutSeconds = Field(default=DEFAULT_TIMEOUTS_S["idle_s"], gt=0)
    total_s: TimeoutSeconds = Field(default=DEFAULT_TIMEOUTS_S["total_s"], gt=0)


class ThresholdSpec(_Strict):
    """A pass/fail rule; ``{ttft_p95_ms: "< 800"}`` is the compact form."""

    metric: str
    op: Literal["lt", "le", "gt", "ge"]
    value: FiniteFloat
    provider: str = ""
    target: str = ""

    @model_validator(mode="before")
    @classmethod
    def _expand_compact(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "metric" in data:
            return _normalize_op(data)
        rule_keys = [k for k in data if k not in THRESHOLD_SCOPE_KEYS]
        if len(rule_keys) != 1:
            raise _plan_error(
                "a compact threshold needs exactly one metric key",
                'write e.g. ttft_p95_ms: "< 800" (provider and target are optional)',
            )
        metric = rule_keys[0]
        op, value = _parse_comparison(data[metric])
        scope = {k: data[k] for k in THRESHOLD_SCOPE_KEYS if k in data}
        return {"metric": metric, "op": op, "value": value, **scope}

    @field_validator("metric")
    @classmethod
    def _check_metric(cls, value: str) -> str:
        if value not in THRESHOLD_METRICS:
            close = difflib.get_close_matches(value, sorted(THRESHOLD_METRICS), n=1)
            hint = f"did you mean {close[0]}?" if close else "use e.g. ttft_p95_ms or error_rate"
            raise _plan_error(f"unknown threshold metric {value!r}", hint)
        return value


def _normalize_op(data: Any) -> Any:
    if isinstance(data, dict) and data.get("op") in THRESHOLD_OPS:
        return {**data, "op": THRESHOLD_OPS[data["op"]]}
    return data


def _parse_comparison(text: Any) -> tuple[str, float]:
    """Parse ``"< 800"``, ``"<= 1%"`` into (op, value); a percentage becomes a fraction."""
    match = re.fullmatch(r"\s*(<=|>=|<|>)\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", str(text))
    if match is None:
        raise _plan_error(
            f"invalid comparison {text!r}", 'write an operator and a number, e.g. "< 800" or "< 1%"'
        )
    value = float(match.group(2))
    if match.group(3):
        value /= 100.0
    return THRESHOLD_OPS[match.group(1)], value


class PlanSpec(_Strict):
    """A whole plan file."""

    name: str
    providers: list[ProviderSpec] = Field(min_length=1)
    request: RequestSpecModel
    load: LoadSpecModel
    targets: list[TargetSpec] = Field(min_length=1)
    timeouts: TimeoutsSpec = Field(default_factory=TimeoutsSpec)
    thresholds: list[ThresholdSpec] = Field(default_factory=list)
    controller_secrets: bool = False

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _validate_name(value, "plan name")


# ---------------------------------------------------------------------------
# Run length.
# ---------------------------------------------------------------------------


def total_duration_s(load: LoadSpecModel) -> float | None:
    """Return the run length in seconds, or None when only request_count ends it."""
    if load.stages:
        return sum(s.duration_s for s in load.stages)
    return load.duration_s
