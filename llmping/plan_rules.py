"""Plan rules that span several fields, checked after pydantic has validated the types."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from llmping.plan_convert import resolve_provider
from llmping.plan_issues import PlanIssue
from llmping.plan_schema import (
    MAX_RUN_S,
    LoadSpecModel,
    PlanSpec,
    ProviderSpec,
    TargetSpec,
    TimeoutsSpec,
    preset_names,
    total_duration_s,
)
from llmping.presets import PRESETS

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
            f"({preset_names()}) or the base_url of an OpenAI-compatible API",
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
    if load.stages and run_length_s is not None and run_length_s > MAX_RUN_S:
        yield PlanIssue(
            "load.stages",
            f"the stages add up to {run_length_s:.0f} s, "
            f"over the maximum run length of {MAX_RUN_S:.0f} s ({MAX_RUN_S / 86400:.0f} days)",
            "shorten the stages or split the load over several runs",
        )
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
