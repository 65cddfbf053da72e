"""Exact split of one target's load over the agents of that target.

The plan's load applies per provider per target, so the agents of a target share it.
Integer figures (concurrency, request_count, max_in_flight, per-stage concurrency) are
split by the largest remainder method, so the shares add up to the plan's figure
exactly. Rates are divided as floats. duration_s and warmup_s are not split: every
agent runs the whole time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from llmping.v1 import llmping_pb2 as pb


def split_integer(total: int, weights: Sequence[float]) -> list[int]:
    """Split a non-negative integer in proportion to the weights, summing to total.

    Every part gets the floor of its exact quota. The units left over go to the parts
    with the largest fractional remainders, ties broken by position, so equal weights
    give the first parts one more than the last. Raises ValueError on a negative
    total, no weights, a negative weight or weights that sum to zero.
    """
    if total < 0:
        raise ValueError(f"cannot split a negative total {total}")
    if not weights:
        raise ValueError("cannot split over zero parts")
    if any(weight < 0 or not math.isfinite(weight) for weight in weights):
        raise ValueError(f"weights must be finite and non-negative, got {list(weights)}")
    weight_sum = math.fsum(weights)
    if weight_sum <= 0:
        raise ValueError("weights must not all be zero")

    quotas = [total * weight / weight_sum for weight in weights]
    parts = [min(math.floor(quota), total) for quota in quotas]
    leftover = total - sum(parts)
    by_remainder = sorted(range(len(parts)), key=lambda i: (-(quotas[i] - parts[i]), i))
    # Float rounding can leave leftover outside 0..len(parts). The loops below move one
    # unit at a time, cycling over the parts, so the sum is exact whatever the rounding.
    position = 0
    while leftover > 0:
        parts[by_remainder[position % len(parts)]] += 1
        leftover -= 1
        position += 1
    while leftover < 0:
        index = by_remainder[-1 - position % len(parts)]
        if parts[index] > 0:
            parts[index] -= 1
            leftover += 1
        position += 1
    return parts


def agents_needed(load: pb.LoadSpec, available: int) -> int:
    """Return how many of the available agents a target should use.

    A share of 0 for request_count or max_in_flight means "no limit" to an agent, and
    a closed-loop agent with concurrency 0 would send nothing. So a target never uses
    more agents than its request_count, its open-loop max_in_flight or its closed-loop
    concurrency (when those are set).
    """
    needed = available
    if load.request_count > 0:
        needed = min(needed, load.request_count)
    if load.mode == pb.LoadSpec.CLOSED and not load.stages and load.concurrency > 0:
        needed = min(needed, load.concurrency)
    if load.mode != pb.LoadSpec.CLOSED and load.max_in_flight > 0:
        needed = min(needed, load.max_in_flight)
    return max(needed, 1) if available > 0 else 0


def split_load(load: pb.LoadSpec, agent_count: int) -> list[pb.LoadShare]:
    """Return one LoadShare per agent, the shares adding up to the plan's load exactly."""
    if agent_count < 1:
        raise ValueError(f"cannot split load over {agent_count} agents")
    weights = [1.0] * agent_count

    concurrency = split_integer(load.concurrency, weights)
    request_count = split_integer(load.request_count, weights)
    max_in_flight = split_integer(load.max_in_flight, weights)
    stage_concurrency = [split_integer(stage.concurrency, weights) for stage in load.stages]

    shares = []
    for index in range(agent_count):
        share = pb.LoadShare(
            agent_index=index,
            agent_count=agent_count,
            concurrency=concurrency[index],
            rate_per_s=load.rate_per_s / agent_count,
            request_count=request_count[index],
            max_in_flight=max_in_flight[index],
        )
        for stage_number, stage in enumerate(load.stages):
            share.stages.append(
                pb.StageShare(
                    concurrency=stage_concurrency[stage_number][index],
                    rate_per_s=stage.rate_per_s / agent_count,
                )
            )
        shares.append(share)
    return shares
