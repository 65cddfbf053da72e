"""Checks the controller makes on a submitted plan before it starts a run.

The CLI validates plans in depth when it loads them. These checks repeat only what the
controller relies on itself, because any gRPC client can submit a plan.
"""

from __future__ import annotations

from collections import Counter

from llmping.errors import PlanError
from llmping.estimate import request_cap_issue
from llmping.v1 import llmping_pb2 as pb

from .thresholds import OPERATORS, is_known_metric, metric_names


def validate_plan(plan: pb.Plan) -> None:
    """Raise PlanError naming the first field the controller cannot run with."""
    _check_names(plan)
    _check_load(plan.load)
    _check_request_cap(plan)
    _check_thresholds(plan)
    if plan.controller_secrets:
        # NOTE: the controller has no TLS yet, and keys must never travel in clear text.
        raise PlanError(
            "controller_secrets",
            "controller-held secrets need a TLS connection, "
            "which this controller does not offer yet",
            "set controller_secrets to false and give each agent its keys in environment variables",
        )


def _check_names(plan: pb.Plan) -> None:
    if not plan.providers:
        raise PlanError("providers", "the plan names no provider", "add at least one provider")
    if not plan.targets:
        raise PlanError("targets", "the plan names no target", "add a target such as region=tokyo")
    for kind, names in (
        ("providers", [p.name for p in plan.providers]),
        ("targets", [t.name for t in plan.targets]),
    ):
        for index, name in enumerate(names):
            if not name:
                raise PlanError(
                    f"{kind}[{index}].name", "the name is empty", "give it a unique name"
                )
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            raise PlanError(
                f"{kind}",
                f"duplicate names {', '.join(duplicates)}",
                "give each entry a unique name",
            )


def _check_load(load: pb.LoadSpec) -> None:
    # The split over agents raises ValueError on a negative integer, so every figure it
    # splits, max_in_flight included, is checked here.
    figures = (
        "concurrency",
        "rate_per_s",
        "duration_s",
        "request_count",
        "warmup_s",
        "max_in_flight",
        "max_requests",
    )
    for name in figures:
        if getattr(load, name) < 0:
            raise PlanError(
                f"load.{name}", f"negative value {getattr(load, name)}", "use 0 or more"
            )
    for index, stage in enumerate(load.stages):
        for name in ("concurrency", "rate_per_s", "duration_s", "ramp_s"):
            if getattr(stage, name) < 0:
                raise PlanError(
                    f"load.stages[{index}].{name}",
                    f"negative value {getattr(stage, name)}",
                    "use 0 or more",
                )
    staged_s = sum(stage.duration_s for stage in load.stages)
    if load.duration_s <= 0 and load.request_count <= 0 and staged_s <= 0:
        raise PlanError(
            "load",
            "the run has no end: duration_s, request_count and stage durations are all 0",
            "set load.duration_s or load.request_count",
        )


def _check_request_cap(plan: pb.Plan) -> None:
    found = request_cap_issue(plan)
    if found is not None:
        problem, fix = found
        raise PlanError("load.max_requests", problem, fix)


def _check_thresholds(plan: pb.Plan) -> None:
    providers = {p.name for p in plan.providers}
    targets = {t.name for t in plan.targets}
    for index, threshold in enumerate(plan.thresholds):
        path = f"thresholds[{index}]"
        if not is_known_metric(threshold.metric):
            raise PlanError(
                f"{path}.metric",
                f"unknown metric {threshold.metric!r}",
                "use one of " + ", ".join(metric_names()),
            )
        if threshold.op not in OPERATORS:
            raise PlanError(
                f"{path}.op", f"unknown operator {threshold.op!r}", "use lt, le, gt or ge"
            )
        if threshold.provider and threshold.provider not in providers:
            raise PlanError(
                f"{path}.provider",
                f"no provider named {threshold.provider!r}",
                "use one of " + ", ".join(sorted(providers)),
            )
        if threshold.target and threshold.target not in targets:
            raise PlanError(
                f"{path}.target",
                f"no target named {threshold.target!r}",
                "use one of " + ", ".join(sorted(targets)),
            )
