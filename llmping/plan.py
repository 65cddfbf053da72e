"""Plan files: YAML text -> validated pydantic models -> ``pb.Plan``.

``load_plan(path)`` is the entry point. Every problem found is collected and raised as
one ``PlanValidationError`` (a ``PlanError``) whose text lists each field path
(``providers[1].base_url``) with its YAML line, the problem and the fix. Pydantic checks
field types, unknown keys and single-field rules. Rules that span fields (load mode
against its figures, Azure settings, threshold references, the cost guard) are checked
afterwards, so that each message can still name the exact field.

Plans never contain API keys: ``api_key_env`` names an environment variable that the
agent reads, and values that look like keys are rejected without being echoed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from google.protobuf import struct_pb2
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from llmping.controller.thresholds import metric_names as threshold_metric_names
from llmping.errors import InputError, PlanError
from llmping.estimate import request_cap_issue
from llmping.presets import PRESETS
from llmping.v1 import llmping_pb2 as pb

# ---------------------------------------------------------------------------
# Defaults that presets (llmping.presets) and provider kinds fill in.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderDefaults:
    """Values a provider kind fills in when the plan leaves them out."""

    kind: str
    base_url: str
    api_key_env: str


# Azure and generic OpenAI-compatible endpoints have no well-known base URL, so their
# base_url stays required.
KIND_DEFAULTS: dict[str, ProviderDefaults] = {
    "openai": ProviderDefaults("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "anthropic": ProviderDefaults("anthropic", "https://api.anthropic.com", "ANTHROPIC_API_KEY"),
    "azure": ProviderDefaults("azure", "", "AZURE_OPENAI_API_KEY"),
    "openai_compatible": ProviderDefaults("openai_compatible", "", ""),
}

# max_requests and seed travel as int64 fields of pb.LoadSpec.
INT64_MAX = 2**63 - 1

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
HTTP_ERROR_CLASS = re.compile(r"^http_[1-5][0-9][0-9]$")

# The controller evaluates thresholds, so its list of metric names is the one to accept.
THRESHOLD_METRICS = frozenset(threshold_metric_names())
THRESHOLD_OPS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
THRESHOLD_SCOPE_KEYS = ("provider", "target")

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
KEY_PREFIXES = ("sk-", "sk_", "sk-ant-", "sess-", "gsk_", "xai-", "key-", "bearer ")
SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization"})
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _preset_names() -> str:
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
            hint = f"did you mean {close[0]}?" if close else f"use one of {_preset_names()}"
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
    max_tokens: int = Field(default=512, gt=0)
    stream: bool = True
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
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

    rate_per_s: float | None = Field(default=None, gt=0)
    concurrency: int | None = Field(default=None, gt=0)
    duration_s: float = Field(gt=0)
    ramp_s: float = Field(default=0.0, ge=0)


class RetrySpec(_Strict):
    """Opt-in retries; every attempt is its own record."""

    max_attempts: int = Field(default=2, ge=1, le=10)
    backoff_s: float = Field(default=1.0, ge=0)
    on_error_classes: list[str] = Field(default_factory=lambda: ["http_429", "http_503"])

    @field_validator("on_error_classes")
    @classmethod
    def _check_classes(cls, value: list[str]) -> list[str]:
        for error_class in value:
            if error_class not in KNOWN_ERROR_CLASSES and not HTTP_ERROR_CLASS.match(error_class):
                raise _plan_error(
                    f"unknown error class {error_class!r}",
                    "use http_<status> or one of " + ", ".join(sorted(KNOWN_ERROR_CLASSES)),
                )
        return value


class LoadSpecModel(_Strict):
    """Load applied to each provider from each target."""

    mode: Literal["closed", "constant", "poisson"] | None = None
    concurrency: int | None = Field(default=None, gt=0)
    rate_per_s: float | None = Field(default=None, gt=0)
    stages: list[StageSpec] = Field(default_factory=list)
    duration_s: float | None = Field(default=None, gt=0)
    request_count: int | None = Field(default=None, gt=0)
    warmup_s: float = Field(default=0.0, ge=0)
    max_in_flight: int | None = Field(default=None, gt=0)
    overflow: Literal["delay", "drop"] = "delay"
    retry: RetrySpec | None = None
    # Cost guard: the plan is rejected when its estimated total request count exceeds it.
    max_requests: int | None = Field(default=None, gt=0, le=INT64_MAX)
    # Poisson arrivals repeat for the same seed.
    seed: int | None = Field(default=None, le=INT64_MAX)

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

    connect_s: float = Field(default=DEFAULT_TIMEOUTS_S["connect_s"], gt=0)
    ttft_s: float = Field(default=DEFAULT_TIMEOUTS_S["ttft_s"], gt=0)
    idle_s: float = Field(default=DEFAULT_TIMEOUTS_S["idle_s"], gt=0)
    total_s: float = Field(default=DEFAULT_TIMEOUTS_S["total_s"], gt=0)


class ThresholdSpec(_Strict):
    """A pass/fail rule; ``{ttft_p95_ms: "< 800"}`` is the compact form."""

    metric: str
    op: Literal["lt", "le", "gt", "ge"]
    value: float
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
# Issues and their translation into one PlanError.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanIssue:
    """One problem in a plan, with the field path and how to fix it."""

    path: str
    problem: str
    hint: str = ""
    line: int | None = None

    def describe(self) -> str:
        where = self.path + (f" (line {self.line})" if self.line else "")
        text = f"{where}: {self.problem}"
        return f"{text}; {self.hint}" if self.hint else text


class PlanValidationError(PlanError):
    """A plan with one or more invalid fields; ``issues`` lists them all."""

    def __init__(self, source: str, issues: Sequence[PlanIssue]) -> None:
        first = issues[0]
        super().__init__(first.path, first.problem, first.hint)
        self.source = source
        self.issues = list(issues)

    def __str__(self) -> str:
        if len(self.issues) == 1:
            return f"invalid plan {self.source}, field {self.issues[0].describe()}"
        lines = [f"invalid plan {self.source}, {len(self.issues)} problems:"]
        lines += [f"  field {issue.describe()}" for issue in self.issues]
        return "\n".join(lines)


def format_path(loc: Sequence[int | str]) -> str:
    """Join a pydantic location into ``providers[1].base_url``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """Follow a location through the model classes; None where it leaves them."""
    model: type[BaseModel] = PlanSpec
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        inner = _first_model(info.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _known_keys(model: type[BaseModel]) -> list[str]:
    keys = list(model.model_fields)
    if model is RequestSpecModel:
        keys.append("prompt")
    return keys


def _issue_from_pydantic(error: Any) -> PlanIssue:
    loc = [p for p in error["loc"] if isinstance(p, (int, str))]
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "plan_value":
        return PlanIssue(format_path(loc), ctx["problem"], ctx.get("hint", ""))
    if kind == "extra_forbidden":
        return _unknown_key_issue(loc)
    if kind == "missing":
        return PlanIssue(format_path(loc), "missing required key", f"add {loc[-1]}: to the plan")
    problem = str(error["msg"]).removeprefix("Value error, ")
    secret = any(p in ("api_key_env", "headers") for p in loc)
    value = error.get("input")
    if not secret and isinstance(value, (str, int, float, bool)):
        problem += f", got {str(value)[:60]!r}"
    return PlanIssue(format_path(loc), problem[:1].lower() + problem[1:])


def _unknown_key_issue(loc: list[int | str]) -> PlanIssue:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    known = _known_keys(model) if model else []
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        hint = f"did you mean {close[0]}?"
    elif known:
        hint = "remove it; known keys here: " + ", ".join(known)
    else:
        hint = "remove it"
    return PlanIssue(format_path(loc), f"unknown key {key!r}", hint)


# ---------------------------------------------------------------------------
# Rules that span several fields.
# ---------------------------------------------------------------------------


def check_rules(spec: PlanSpec) -> list[PlanIssue]:
    """Return the cross-field problems of an otherwise well-typed plan."""
    issues: list[PlanIssue] = []
    issues += _check_providers(spec.providers)
    issues += _check_load(spec.load)
    issues += _check_targets(spec.targets)
    issues += _check_timeouts(spec.timeouts)
    issues += _check_thresholds(spec)
    return issues


def _check_providers(providers: Sequence[ProviderSpec]) -> Iterator[PlanIssue]:
    seen: set[str] = set()
    for i, provider in enumerate(providers):
        path = f"providers[{i}]"
        if provider.name in seen:
            yield PlanIssue(
                f"{path}.name",
                f"duplicate provider name {provider.name!r}",
                "give each a unique name",
            )
        seen.add(provider.name)
        yield from _check_provider(path, provider)


def _check_provider(path: str, provider: ProviderSpec) -> Iterator[PlanIssue]:
    if provider.kind is None and provider.preset is None and provider.base_url is None:
        yield PlanIssue(
            f"{path}.kind",
            "missing kind",
            "set kind (openai, azure, anthropic, openai_compatible), a preset "
            f"({_preset_names()}) or the base_url of an OpenAI-compatible API",
        )
        return
    preset = PRESETS.get(provider.preset or "")
    if preset is not None and provider.kind not in (None, preset.kind):
        yield PlanIssue(
            f"{path}.kind",
            f"preset {provider.preset} is an {preset.kind} endpoint, not {provider.kind}",
            "remove kind or the preset",
        )
    resolved = resolve_provider(provider)
    if not resolved.base_url:
        yield PlanIssue(
            f"{path}.base_url",
            f"missing base_url for kind {resolved.kind}",
            "set the endpoint, e.g. https://relay.example.com/v1",
        )
    if resolved.kind == "azure":
        yield from _check_azure(path, provider)
    elif provider.api_version or provider.deployment:
        yield PlanIssue(
            f"{path}.deployment" if provider.deployment else f"{path}.api_version",
            "deployment and api_version apply to kind azure only",
            "remove them or set kind: azure",
        )
    if provider.model is None and resolved.kind != "azure":
        yield PlanIssue(f"{path}.model", "missing model", "set the model name, e.g. model: gpt-4o")


def _check_azure(path: str, provider: ProviderSpec) -> Iterator[PlanIssue]:
    if not provider.api_version:
        yield PlanIssue(
            f"{path}.api_version",
            "missing api_version for kind azure",
            'set the Azure OpenAI API version, e.g. api_version: "2024-10-21"',
        )
    if not provider.deployment:
        yield PlanIssue(
            f"{path}.deployment",
            "missing deployment for kind azure",
            "set the deployment name from the Azure portal",
        )


def _check_load(load: LoadSpecModel) -> Iterator[PlanIssue]:
    mode = load.resolved_mode()
    if mode == "closed":
        yield from _check_closed_load(load)
    else:
        yield from _check_open_load(load, mode)
    if load.duration_s is None and load.request_count is None and not load.stages:
        yield PlanIssue(
            "load.duration_s",
            "the run has no end",
            "set duration_s, request_count or stages",
        )
    if load.stages and load.duration_s is not None:
        yield PlanIssue(
            "load.duration_s",
            "duration_s and stages are both set",
            "remove duration_s because the stages' durations add up to the run length",
        )
    run_length_s = total_duration_s(load)
    if run_length_s is not None and load.warmup_s >= run_length_s:
        yield PlanIssue(
            "load.warmup_s",
            f"warm-up of {load.warmup_s:g} s covers the whole {run_length_s:g} s run",
            "make warmup_s shorter than the run",
        )
    for i, stage in enumerate(load.stages):
        if stage.ramp_s > stage.duration_s:
            yield PlanIssue(
                f"load.stages[{i}].ramp_s",
                f"ramp of {stage.ramp_s:g} s is longer than the stage ({stage.duration_s:g} s)",
                "the ramp is part of the stage, so keep ramp_s <= duration_s",
            )


def _check_closed_load(load: LoadSpecModel) -> Iterator[PlanIssue]:
    if load.concurrency is None and not load.stages:
        yield PlanIssue(
            "load.concurrency", "mode closed needs concurrency", "set concurrency, e.g. 4"
        )
    if load.rate_per_s is not None:
        yield PlanIssue(
            "load.rate_per_s",
            "rate_per_s does not apply to mode closed",
            "remove it or use mode: constant",
        )
    if load.max_in_flight is not None:
        yield PlanIssue(
            "load.max_in_flight",
            "max_in_flight applies to constant and poisson modes only",
            "remove it because concurrency already caps requests in flight",
        )
    if load.stages and load.concurrency is not None:
        yield PlanIssue(
            "load.concurrency", "concurrency and stages are both set", "set concurrency per stage"
        )
    for i, stage in enumerate(load.stages):
        if stage.concurrency is None:
            yield PlanIssue(
                f"load.stages[{i}].concurrency",
                "a closed-loop stage needs concurrency",
                "set concurrency for every stage",
            )
        if stage.rate_per_s is not None:
            yield PlanIssue(
                f"load.stages[{i}].rate_per_s",
                "rate_per_s does not apply to mode closed",
                "use concurrency, or mode: constant",
            )


def _check_open_load(load: LoadSpecModel, mode: str) -> Iterator[PlanIssue]:
    if load.rate_per_s is None and not load.stages:
        yield PlanIssue(
            "load.rate_per_s", f"mode {mode} needs rate_per_s or stages", "set rate_per_s, e.g. 10"
        )
    if load.concurrency is not None:
        yield PlanIssue(
            "load.concurrency",
            f"concurrency does not apply to mode {mode}",
            "remove it, and use max_in_flight to cap requests in flight",
        )
    if load.stages and load.rate_per_s is not None:
        yield PlanIssue(
            "load.rate_per_s", "rate_per_s and stages are both set", "set rate_per_s per stage"
        )
    for i, stage in enumerate(load.stages):
        if stage.rate_per_s is None:
            yield PlanIssue(
                f"load.stages[{i}].rate_per_s",
                f"a {mode} stage needs rate_per_s",
                "set rate_per_s for every stage",
            )
        if stage.concurrency is not None:
            yield PlanIssue(
                f"load.stages[{i}].concurrency",
                f"concurrency does not apply to mode {mode}",
                "use rate_per_s, or mode: closed",
            )


def _check_targets(targets: Sequence[TargetSpec]) -> Iterator[PlanIssue]:
    seen: set[str] = set()
    for i, target in enumerate(targets):
        if target.name in seen:
            yield PlanIssue(
                f"targets[{i}].name",
                f"duplicate target name {target.name!r}",
                "give each a unique name",
            )
        seen.add(target.name)


def _check_timeouts(timeouts: TimeoutsSpec) -> Iterator[PlanIssue]:
    for name in ("connect_s", "ttft_s", "idle_s"):
        value = getattr(timeouts, name)
        if value > timeouts.total_s:
            yield PlanIssue(
                f"timeouts.{name}",
                f"{name} ({value:g} s) is longer than total_s ({timeouts.total_s:g} s)",
                f"make {name} at most total_s",
            )


def _check_thresholds(spec: PlanSpec) -> Iterator[PlanIssue]:
    providers = {p.name for p in spec.providers}
    targets = {t.name for t in spec.targets}
    for i, threshold in enumerate(spec.thresholds):
        if threshold.provider and threshold.provider not in providers:
            yield PlanIssue(
                f"thresholds[{i}].provider",
                f"no provider named {threshold.provider!r}",
                "use one of " + ", ".join(sorted(providers)),
            )
        if threshold.target and threshold.target not in targets:
            yield PlanIssue(
                f"thresholds[{i}].target",
                f"no target named {threshold.target!r}",
                "use one of " + ", ".join(sorted(targets)),
            )
        if threshold.metric == "error_rate" and not 0.0 <= threshold.value <= 1.0:
            yield PlanIssue(
                f"thresholds[{i}].value",
                f"error_rate is a fraction, got {threshold.value:g}",
                'write 0.01 or "< 1%"',
            )


# ---------------------------------------------------------------------------
# Conversion to the contract.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedProvider:
    """A provider with its preset and kind defaults applied."""

    kind: str
    base_url: str
    api_key_env: str
    model: str


def resolve_provider(provider: ProviderSpec) -> ResolvedProvider:
    """Apply the preset's, then the kind's, defaults to the fields the plan left out."""
    preset = PRESETS.get(provider.preset or "")
    kind = provider.kind or (preset.kind if preset else "openai_compatible")
    defaults = preset or KIND_DEFAULTS[kind]
    base_url = provider.base_url or defaults.base_url
    api_key_env = provider.api_key_env if provider.api_key_env is not None else defaults.api_key_env
    model = provider.model or provider.deployment or ""
    return ResolvedProvider(kind, base_url, api_key_env, model)


def _provider_to_pb(provider: ProviderSpec) -> pb.Provider:
    resolved = resolve_provider(provider)
    extra_body = struct_pb2.Struct()
    # NOTE: Struct stores every number as a double, so an integer field comes back as
    # 1.0; providers accept that for the usual fields (top_p, seed).
    extra_body.update(provider.extra_body)
    return pb.Provider(
        name=provider.name,
        kind=resolved.kind,
        base_url=resolved.base_url,
        model=resolved.model,
        api_key_env=resolved.api_key_env,
        headers=provider.headers,
        extra_body=extra_body,
        proxy_url=provider.proxy or "",
        api_version=provider.api_version or "",
        deployment=provider.deployment or "",
        preset=provider.preset or "",
    )


def _request_to_pb(request: RequestSpecModel) -> pb.RequestSpec:
    message = pb.RequestSpec(
        messages=[pb.ChatMessage(role=m.role, content=m.content) for m in request.messages],
        max_tokens=request.max_tokens,
        stream=request.stream,
        include_usage=request.include_usage,
        new_connection_per_request=request.new_connection_per_request,
    )
    if request.temperature is not None:
        message.temperature = request.temperature
    return message


_MODES = {
    "closed": pb.LoadSpec.CLOSED,
    "constant": pb.LoadSpec.CONSTANT,
    "poisson": pb.LoadSpec.POISSON,
}


def _load_to_pb(load: LoadSpecModel) -> pb.LoadSpec:
    message = pb.LoadSpec(
        mode=_MODES[load.resolved_mode()],
        concurrency=load.concurrency or 0,
        rate_per_s=load.rate_per_s or 0.0,
        stages=[
            pb.Stage(
                concurrency=s.concurrency or 0,
                rate_per_s=s.rate_per_s or 0.0,
                duration_s=s.duration_s,
                ramp_s=s.ramp_s,
            )
            for s in load.stages
        ],
        # With stages the run length is their sum, filled in so the agent need not add it up.
        duration_s=total_duration_s(load) or 0.0,
        request_count=load.request_count or 0,
        warmup_s=load.warmup_s,
        max_in_flight=load.max_in_flight or 0,
        overflow=load.overflow,
        max_requests=load.max_requests or 0,
        seed=load.seed or 0,
    )
    if load.retry is not None:
        message.retry.CopyFrom(
            pb.RetryPolicy(
                max_attempts=load.retry.max_attempts,
                backoff_s=load.retry.backoff_s,
                on_error_classes=load.retry.on_error_classes,
            )
        )
    return message


def to_pb(spec: PlanSpec, source_yaml: str = "") -> pb.Plan:
    """Convert a validated plan into the contract message."""
    return pb.Plan(
        name=spec.name,
        providers=[_provider_to_pb(p) for p in spec.providers],
        request=_request_to_pb(spec.request),
        load=_load_to_pb(spec.load),
        targets=[pb.Target(name=t.name, selector=t.selector) for t in spec.targets],
        timeouts=pb.Timeouts(**spec.timeouts.model_dump()),
        thresholds=[pb.Threshold(**t.model_dump()) for t in spec.thresholds],
        controller_secrets=spec.controller_secrets,
        source_yaml=source_yaml,
    )


# ---------------------------------------------------------------------------
# Run length.
# ---------------------------------------------------------------------------


def total_duration_s(load: LoadSpecModel) -> float | None:
    """Return the run length in seconds, or None when only request_count ends it."""
    if load.stages:
        return sum(s.duration_s for s in load.stages)
    return load.duration_s


# ---------------------------------------------------------------------------
# Loading: file -> YAML -> models -> rules -> pb.Plan.
# ---------------------------------------------------------------------------


class _PlanLoader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys instead of keeping the last one."""


def _construct_mapping(loader: _PlanLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    # Checked before construct_mapping merges "<<: *anchor" keys, which may be overridden.
    seen: set[str] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if key_node.value in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
            )
        seen.add(key_node.value)
    return loader.construct_mapping(node, deep=True)


_PlanLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_error(source: str, error: yaml.YAMLError) -> InputError:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return InputError(f"invalid YAML in plan {source}{where}: {problem}, fix the syntax there")


def parse_yaml(text: str, source: str) -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse plan text into a mapping and its node tree (for line numbers)."""
    try:
        data = yaml.load(text, Loader=_PlanLoader)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise _yaml_error(source, error) from error
    if data is None:
        raise InputError(f"plan {source} is empty, write a plan (see examples/)")
    if not isinstance(data, dict):
        raise InputError(
            f"plan {source} must be a YAML mapping, got {type(data).__name__}, "
            "start it with name: and providers:"
        )
    return data, node


def line_of(node: yaml.Node | None, path: str) -> int | None:
    """Return the 1-based YAML line of a dotted field path, or of its nearest parent."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    line = None
    for part in parts:
        if node is None:
            break
        line = node.start_mark.line + 1
        node = _child_node(node, part)
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _child_node(node: yaml.Node, part: str) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode) and part.startswith("["):
        index = int(part[1:-1])
        return node.value[index] if index < len(node.value) else None
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == part:
                # The line of an unknown key is the key itself, so return that node.
                return value_node if isinstance(value_node, yaml.CollectionNode) else key_node
    return None


def validate_plan(
    data: dict[str, Any], source: str = "plan", node: yaml.Node | None = None
) -> PlanSpec:
    """Validate a parsed plan, raising PlanValidationError listing every problem."""
    try:
        spec = PlanSpec.model_validate(data)
    except ValidationError as error:
        issues = [_issue_from_pydantic(e) for e in error.errors(include_url=False)]
        raise PlanValidationError(source, _with_lines(issues, node)) from error
    rule_issues = check_rules(spec)
    if rule_issues:
        raise PlanValidationError(source, _with_lines(rule_issues, node))
    return spec


def _with_lines(issues: Sequence[PlanIssue], node: yaml.Node | None) -> list[PlanIssue]:
    return [
        PlanIssue(i.path, i.problem, i.hint, line_of(node, i.path) if node else None)
        for i in issues
    ]


def _check_cost(plan: pb.Plan, source: str, node: yaml.Node | None) -> None:
    found = request_cap_issue(plan)
    if found is not None:
        problem, fix = found
        issue = PlanIssue("load.max_requests", problem, fix)
        raise PlanValidationError(source, _with_lines([issue], node))


def plan_from_text(text: str, source: str = "plan") -> pb.Plan:
    """Parse, validate and convert plan YAML text; the text is kept in source_yaml."""
    data, node = parse_yaml(text, source)
    spec = validate_plan(data, source, node)
    plan = to_pb(spec, source_yaml=text)
    _check_cost(plan, source, node)
    return plan


def load_plan(path: str | Path) -> pb.Plan:
    """Read a plan file and return the validated ``pb.Plan``."""
    plan_path = Path(path)
    try:
        text = plan_path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InputError(f"plan file not found, {plan_path}, check the path") from error
    except IsADirectoryError as error:
        raise InputError(f"plan path is a folder, {plan_path}, give a YAML file") from error
    except UnicodeDecodeError as error:
        raise InputError(f"plan file is not UTF-8 text, {plan_path}, save it as UTF-8") from error
    except OSError as error:
        raise InputError(f"cannot read plan file {plan_path}: {error.strerror}") from error
    return plan_from_text(text, str(plan_path))
