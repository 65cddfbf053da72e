"""The latest time a run may take, so that no run stays open forever.

deadline_s = planned load time + warm-up + one request's total timeout + slack.

The planned load time is duration_s, else the sum of stage durations and ramps. For a
run limited only by request_count it is an upper estimate: request_count / rate_per_s
in open loop, and in closed loop ceil(request_count / concurrency) requests back to
back, each taking the whole total timeout. The estimate is generous on purpose, because
a run that reaches its deadline ends PARTIAL, which is worse than waiting a little
longer.
"""

from __future__ import annotations

import math

from llmping.v1 import llmping_pb2 as pb

SLACK_S = 30.0
# Used when the plan sets no total timeout. NOTE: a guess at a long LLM answer; a
# plan whose requests may take longer should set timeouts.total_s.
DEFAULT_REQUEST_TIMEOUT_S = 300.0


def request_timeout_s(plan: pb.Plan) -> float:
    return plan.timeouts.total_s if plan.timeouts.total_s > 0 else DEFAULT_REQUEST_TIMEOUT_S


def planned_load_s(plan: pb.Plan) -> float:
    """Return the estimated time the agents spend starting requests."""
    load = plan.load
    if load.duration_s > 0:
        return load.duration_s
    staged_s = sum(stage.duration_s + stage.ramp_s for stage in load.stages)
    if staged_s > 0:
        return staged_s
    if load.request_count <= 0:
        return 0.0
    if load.mode != pb.LoadSpec.CLOSED and load.rate_per_s > 0:
        return load.request_count / load.rate_per_s
    rounds = math.ceil(load.request_count / max(load.concurrency, 1))
    return rounds * request_timeout_s(plan)


def run_deadline_s(plan: pb.Plan, slack_s: float = SLACK_S) -> float:
    """Return the seconds after start_at at which an unfinished run ends PARTIAL."""
    return planned_load_s(plan) + plan.load.warmup_s + request_timeout_s(plan) + slack_s
