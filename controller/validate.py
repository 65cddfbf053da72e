"""Checks the controller makes on a submitted plan before it starts a run.

The CLI validates plans in depth when it loads them. These checks repeat only what the
controller relies on itself, because any gRPC client can submit a plan. Every number
must be finite and within the CLI's limits, so that deadlines and estimates stay
countable, and the plan must be small enough to send to agents.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from llmping.errors import PlanError
from llmping.estimate import request_cap_issue
from llmping.protocol import MAX_ASSIGNMENT_BYTES
from llmping.v1 import llmping_pb2 as pb

from .thresholds import OPERATORS, is_known_metric, metric_names

# The plan loader's limits (llmping.plan_schema, which the controller does not import
# because it needs pydantic); a test keeps the two equal.
MAX_RUN_S = 30 * 86400.0
MAX_TIMEOUT_S = 86400.0
MAX_RATE_PER_S = 1_000_000.0
MIB = 1024 * 1024
# Upper bound of an Assignment's fields besides the plan and the share's stages: ids,
# traceparent, start time, share figures and the message framing.
ASSIGNMENT_FIELDS_BYTES = 1024
# Upper bound of one StageShare in the share (int32 concurrency, double rate, framing).
STAGE_SHARE_BYTES = 24


def validate_plan(plan: pb.Plan) -> None:
    """Raise PlanError naming the first field the controller cannot run with."""
    _check_names(plan)
    _check_finite(plan)
    _check_load(plan.load)
    _check_timeouts(plan)
    _check_size(plan)
    _check_request_cap(plan)
    _check_thresholds(plan)
    if plan.controller_secrets:
        # TODO: controller-held secrets need a key store on the controller, which fills
        # Assignment.provider_secrets, and must go only to agents on TLS streams. Nothing
        # fills that field yet, so such a plan is rejected even when the port serves TLS.
        raise PlanError(
            "controller_secrets",
            "controller-held secrets are not supported yet, because the controller has no "
            "store for provider keys",
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


def _float_fields(message: Message, path: str = "") -> Iterator[tuple[str, float]]:
    """Yield (field path, value) for every float and double in a message, nested ones too."""
    for field, value in message.ListFields():
        name = f"{path}.{field.name}" if path else field.name
        if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            if field.is_repeated:
                yield from ((f"{name}[{i}]", item) for i, item in enumerate(value))
            else:
                yield name, value
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            yield from _nested_float_fields(field, value, name)


def _nested_float_fields(
    field: FieldDescriptor, value: object, name: str
) -> Iterator[tuple[str, float]]:
    if field.message_type.GetOptions().map_entry:
        # Maps of messages, such as the fields of extra_body's google.protobuf.Struct.
        if field.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
            for key, item in value.items():  # type: ignore[attr-defined]
                yield from _float_fields(item, f"{name}.{key}")
    elif field.is_repeated:
        for index, item in enumerate(value):  # type: ignore[arg-type]
            yield from _float_fields(item, f"{name}[{index}]")
    else:
        assert isinstance(value, Message)
        yield from _float_fields(value, name)


def _check_finite(plan: pb.Plan) -> None:
    for path, value in _float_fields(plan):
        if not math.isfinite(value):
            raise PlanError(
                path, f"the value {value} is not a finite number", "use a finite number"
            )


def _check_at_most(path: str, value: float, limit: float, unit: str) -> None:
    if value > limit:
        problem = f"{value:g} {unit} is over the limit of {limit:g} {unit}"
        raise PlanError(path, problem, "check the unit and lower the value")


def _check_load(load: pb.LoadSpec) -> None:
    _check_load_signs(load)
    _check_load_limits(load)

    staged_s = sum(stage.duration_s for stage in load.stages)
    if load.duration_s <= 0 and load.request_count <= 0 and staged_s <= 0:
        raise PlanError(
            "load",
            "the run has no end: duration_s, request_count and stage durations are all 0",
            "set load.duration_s or load.request_count",
        )


def _check_load_signs(load: pb.LoadSpec) -> None:
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
    if load.retry.backoff_s < 0:
        raise PlanError(
            "load.retry.backoff_s", f"negative value {load.retry.backoff_s}", "use 0 or more"
        )


def _check_load_limits(load: pb.LoadSpec) -> None:
    """Apply the plan loader's upper limits, which also keep run deadlines finite."""
    _check_at_most("load.rate_per_s", load.rate_per_s, MAX_RATE_PER_S, "requests/s")
    _check_at_most("load.duration_s", load.duration_s, MAX_RUN_S, "s")
    _check_at_most("load.warmup_s", load.warmup_s, MAX_RUN_S, "s")
    _check_at_most("load.retry.backoff_s", load.retry.backoff_s, MAX_TIMEOUT_S, "s")
    for index, stage in enumerate(load.stages):
        path = f"load.stages[{index}]"
        _check_at_most(f"{path}.rate_per_s", stage.rate_per_s, MAX_RATE_PER_S, "requests/s")
        _check_at_most(f"{path}.duration_s", stage.duration_s, MAX_RUN_S, "s")
        _check_at_most(f"{path}.ramp_s", stage.ramp_s, MAX_RUN_S, "s")


def _check_timeouts(plan: pb.Plan) -> None:
    for name in ("connect_s", "ttft_s", "idle_s", "total_s"):
        value = getattr(plan.timeouts, name)
        if value < 0:
            raise PlanError(f"timeouts.{name}", f"negative value {value}", "use 0 or more")
        _check_at_most(f"timeouts.{name}", value, MAX_TIMEOUT_S, "s")


def assignment_size_bytes(plan: pb.Plan) -> int:
    """Return an upper estimate of the serialized size of an Assignment for this plan."""
    return plan.ByteSize() + ASSIGNMENT_FIELDS_BYTES + STAGE_SHARE_BYTES * len(plan.load.stages)


def _check_size(plan: pb.Plan) -> None:
    size = assignment_size_bytes(plan)
    if size <= MAX_ASSIGNMENT_BYTES:
        return
    parts = {
        "request.messages": plan.request.ByteSize(),
        "source_yaml": len(plan.source_yaml.encode()),
        "providers": sum(provider.ByteSize() for provider in plan.providers),
    }
    largest = max(parts, key=lambda name: parts[name])
    raise PlanError(
        largest,
        f"the assignment for this plan is {size} bytes ({size / MIB:.1f} MiB) serialized, "
        f"over the limit of {MAX_ASSIGNMENT_BYTES} bytes ({MAX_ASSIGNMENT_BYTES / MIB:g} MiB) "
        f"that the controller sends to an agent; {largest} is the largest part, "
        f"{parts[largest]} bytes",
        "shorten the prompt (the plan carries it in request.messages and again in "
        "source_yaml) or the provider headers and extra_body",
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
