"""Cost estimate of a plan: requests and tokens it will spend, before it runs.

The CLI prints the estimate and checks load.max_requests before it submits a plan. The
controller checks the same cap on SubmitRun, because any gRPC client can submit a plan,
so both call ``request_cap_issue`` on the ``pb.Plan``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from llmping.v1 import llmping_pb2 as pb

# A closed-loop run limited only by duration sends a new request as soon as the provider
# responds, so the cost estimate has to assume a response time.
ASSUMED_E2E_S = 1.0
# Request counts travel as int64, so an estimate above this has no useful bound. Plans
# that no CLI validated can also carry infinite or NaN figures, which end up here too.
MAX_COUNTED_REQUESTS = 2**63 - 1


@dataclass(frozen=True)
class CostEstimate:
    """Estimated requests and tokens of a run, before it starts."""

    requests_per_cell: int
    cells: int
    requests_total: int
    input_tokens_total: int
    output_tokens_max: int
    notes: list[str] = field(default_factory=list)
    # False when the load has no end, or figures too large or not finite to count; the
    # counts are then MAX_COUNTED_REQUESTS.
    bounded: bool = True

    def describe(self) -> str:
        if not self.bounded:
            return (
                "estimate: no upper bound on the number of requests "
                f"({self.cells} provider and target pairs): the load has no end, or its "
                "figures are infinite, not numbers or too large"
            )
        text = (
            f"estimate: {self.requests_total} requests "
            f"({self.requests_per_cell} per provider per target x {self.cells} pairs), "
            f"about {self.input_tokens_total} input tokens, "
            f"at most {self.output_tokens_max} output tokens"
        )
        return text + "".join(f"\n  note: {note}" for note in self.notes)


def _stage_requests(stages: Sequence[pb.Stage]) -> float:
    """Arrivals over open-loop stages; a ramp rises linearly from the previous rate."""
    total = 0.0
    previous_rate_per_s = 0.0
    for stage in stages:
        ramp_s = min(stage.ramp_s, stage.duration_s)
        total += (previous_rate_per_s + stage.rate_per_s) / 2.0 * ramp_s
        total += stage.rate_per_s * (stage.duration_s - ramp_s)
        previous_rate_per_s = stage.rate_per_s
    return total


def _closed_requests(load: pb.LoadSpec) -> float:
    if load.stages:
        return sum(s.concurrency * s.duration_s / ASSUMED_E2E_S for s in load.stages)
    return load.concurrency * load.duration_s / ASSUMED_E2E_S


def _requests_per_cell(load: pb.LoadSpec) -> tuple[float, list[str]]:
    notes: list[str] = []
    if load.mode == pb.LoadSpec.CLOSED:
        # The CLI fills in duration_s for staged loads, but other gRPC clients may not.
        timed = load.duration_s > 0 or bool(load.stages)
        by_time = _closed_requests(load) if timed else math.inf
        if by_time != math.inf and not load.request_count:
            notes.append(
                f"closed loop: assumes {ASSUMED_E2E_S:g} s per request; "
                "faster answers mean more requests, so set request_count for a hard limit"
            )
    elif load.stages:
        by_time = _stage_requests(load.stages)
    else:
        by_time = load.rate_per_s * load.duration_s if load.duration_s else math.inf
    if math.isnan(by_time):
        by_time = math.inf  # NaN figures give no bound, but request_count still can
    if load.request_count:
        by_time = min(by_time, float(load.request_count))
    if load.retry.max_attempts > 1:
        notes.append(f"retries can add up to {load.retry.max_attempts - 1} attempts per request")
    return by_time, notes


def estimate_prompt_tokens(messages: Sequence[pb.ChatMessage]) -> int:
    """Estimate input tokens: one per CJK character, one per 4 other characters.

    NOTE: a rough rule, not a tokenizer; real counts differ by model by tens of percent.
    """
    total = 0.0
    for message in messages:
        total += 4  # per-message overhead of chat formats
        for char in message.content:
            total += 1.0 if ord(char) >= 0x2E80 else 0.25
    return math.ceil(total)


def estimate_requests(plan: pb.Plan) -> CostEstimate:
    """Estimate the requests and tokens a plan will spend over all providers and targets.

    Load applies per provider per target, so the total is the per-pair figure times the
    number of (provider, target) pairs. Warm-up requests count because they cost too.
    """
    per_cell_float, notes = _requests_per_cell(plan.load)
    cells = len(plan.providers) * len(plan.targets)
    if not per_cell_float * max(cells, 1) < MAX_COUNTED_REQUESTS:
        return CostEstimate(
            requests_per_cell=MAX_COUNTED_REQUESTS,
            cells=cells,
            requests_total=MAX_COUNTED_REQUESTS,
            input_tokens_total=MAX_COUNTED_REQUESTS,
            output_tokens_max=MAX_COUNTED_REQUESTS,
            notes=notes,
            bounded=False,
        )
    per_cell = max(0, math.ceil(per_cell_float))
    total = per_cell * cells
    return CostEstimate(
        requests_per_cell=per_cell,
        cells=cells,
        requests_total=total,
        input_tokens_total=total * estimate_prompt_tokens(plan.request.messages),
        output_tokens_max=total * plan.request.max_tokens,
        notes=notes,
    )


def request_cap_issue(plan: pb.Plan) -> tuple[str, str] | None:
    """Return (problem, fix) when the estimated requests exceed load.max_requests.

    A cap of 0 means no cap. The estimate is the one ``estimate_requests`` prints, so a
    closed loop limited only by time is counted at ``ASSUMED_E2E_S`` per request.
    """
    cap = plan.load.max_requests
    if cap <= 0:
        return None
    estimate = estimate_requests(plan)
    if not estimate.bounded:
        problem = (
            "the plan has no upper bound on the number of requests "
            "(the load has no end, or its figures are infinite, not numbers or too large), "
            f"so it may exceed the cap of {cap}"
        )
        return problem, "set load.duration_s or load.request_count to finite values"
    if estimate.requests_total <= cap:
        return None
    problem = (
        f"the plan would send about {estimate.requests_total} requests "
        f"({estimate.requests_per_cell} per provider per target x {estimate.cells} pairs), "
        f"over the cap of {cap}"
    )
    fix = (
        "shorten load.duration_s or lower load.rate_per_s, concurrency or request_count, "
        "or raise load.max_requests"
    )
    return problem, fix
