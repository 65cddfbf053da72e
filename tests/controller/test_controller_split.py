"""Exact split of a target's load over its agents."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmping.controller.split import agents_needed, split_integer, split_load
from llmping.v1 import llmping_pb2 as pb


@given(
    total=st.integers(min_value=0, max_value=10**9),
    weights=st.lists(
        st.floats(min_value=0.0, max_value=1e6, allow_nan=False), min_size=1, max_size=50
    ).filter(lambda ws: math.fsum(ws) > 0),
)
def test_controller_split_integer_sums_exactly(total, weights):
    parts = split_integer(total, weights)

    assert sum(parts) == total
    assert len(parts) == len(weights)
    assert all(part >= 0 for part in parts)


@given(total=st.integers(min_value=0, max_value=10**6), count=st.integers(1, 64))
def test_controller_split_integer_equal_weights_balanced(total, count):
    parts = split_integer(total, [1.0] * count)

    assert sum(parts) == total
    assert max(parts) - min(parts) <= 1
    assert parts == sorted(parts, reverse=True)


@given(
    concurrency=st.integers(0, 10_000),
    request_count=st.integers(0, 10**7),
    rate_per_s=st.floats(0, 1e5, allow_nan=False),
    stage_concurrency=st.lists(st.integers(0, 5000), max_size=5),
    agents=st.integers(1, 40),
    max_in_flight=st.integers(0, 2**31 - 1),
)
def test_controller_split_load_shares_sum(
    concurrency, request_count, rate_per_s, stage_concurrency, agents, max_in_flight
):
    load = pb.LoadSpec(
        concurrency=concurrency,
        request_count=request_count,
        rate_per_s=rate_per_s,
        max_in_flight=max_in_flight,
    )
    for value in stage_concurrency:
        load.stages.append(pb.Stage(concurrency=value, rate_per_s=rate_per_s, duration_s=1))

    shares = split_load(load, agents)

    assert sum(s.concurrency for s in shares) == concurrency
    assert sum(s.request_count for s in shares) == request_count
    assert sum(s.max_in_flight for s in shares) == max_in_flight
    for stage_index, value in enumerate(stage_concurrency):
        assert sum(s.stages[stage_index].concurrency for s in shares) == value
        stage_rate = math.fsum(s.stages[stage_index].rate_per_s for s in shares)
        assert stage_rate == pytest.approx(rate_per_s, rel=1e-9, abs=1e-9)
    assert math.fsum(s.rate_per_s for s in shares) == pytest.approx(rate_per_s, rel=1e-9, abs=1e-9)
    assert [s.agent_index for s in shares] == list(range(agents))
    assert {s.agent_count for s in shares} == {agents}


def test_controller_split_example():
    load = pb.LoadSpec(concurrency=10, request_count=7, rate_per_s=5.0, max_in_flight=8)

    shares = split_load(load, 3)

    assert [s.concurrency for s in shares] == [4, 3, 3]
    assert [s.request_count for s in shares] == [3, 2, 2]
    assert [s.max_in_flight for s in shares] == [3, 3, 2]
    assert [s.rate_per_s for s in shares] == pytest.approx([5 / 3] * 3)


def test_controller_split_rejects_bad_input():
    with pytest.raises(ValueError, match="negative"):
        split_integer(-1, [1.0])
    with pytest.raises(ValueError, match="zero parts"):
        split_integer(1, [])
    with pytest.raises(ValueError, match="all be zero"):
        split_integer(1, [0.0, 0.0])


@pytest.mark.parametrize(
    ("load", "available", "expected"),
    [
        (pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=2, duration_s=5), 5, 2),
        (pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, rate_per_s=10, request_count=3), 5, 3),
        (pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, rate_per_s=10, duration_s=5), 5, 5),
        (pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=8, duration_s=5), 3, 3),
        (pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=8, duration_s=5), 0, 0),
        # Every agent needs one slot of max_in_flight, because 0 means no cap to an agent.
        (pb.LoadSpec(mode=pb.LoadSpec.POISSON, rate_per_s=10, duration_s=5, max_in_flight=2), 5, 2),
        (
            pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, rate_per_s=10, duration_s=5, max_in_flight=9),
            5,
            5,
        ),
    ],
)
def test_controller_agents_needed(load, available, expected):
    assert agents_needed(load, available) == expected
