"""Conversion of a validated plan into ``pb.Plan``, with preset and provider kind defaults."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import struct_pb2

from llmping.plan_schema import (
    LoadSpecModel,
    PlanSpec,
    ProviderSpec,
    RequestSpecModel,
    total_duration_s,
)
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
