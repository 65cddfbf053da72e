"""Load model schedules: counts, times, stages, ramps, warm-up and limits."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from llmping.agent.load import (
    NS_PER_S,
    ClosedLoop,
    LoadLimits,
    LoadSpecError,
    OpenLoop,
    arrival_seed,
    build_model,
)
from llmping.v1 import llmping_pb2 as pb

START_NS = 1_000_000_000_000


def open_model(load: pb.LoadSpec, share: pb.LoadShare, seed: int | None = None) -> OpenLoop:
    model = build_model(load, share, seed=seed)
    assert isinstance(model, OpenLoop)
    return model


def closed_model(load: pb.LoadSpec, share: pb.LoadShare) -> ClosedLoop:
    model = build_model(load, share)
    assert isinstance(model, ClosedLoop)
    return model


def test_constant_exact_count_and_times() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, rate_per_s=5.0, duration_s=2.0)
    model = open_model(load, pb.LoadShare(rate_per_s=5.0))

    arrivals = list(model.arrivals(START_NS))

    assert len(arrivals) == 10
    assert [a.scheduled_ns - START_NS for a in arrivals] == [i * 200_000_000 for i in range(10)]
    assert all(a.stage_index == 0 for a in arrivals)
    assert model.label == "constant@5.00/s"


def test_constant_fractional_rate_count() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=3.0)
    model = open_model(load, pb.LoadShare(rate_per_s=2.5))

    # Arrivals at 0, 0.4, ..., 2.8 s: ceil(2.5 * 3) = 8.
    assert len(list(model.arrivals(0))) == 8


def test_request_count_ends_before_duration() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=10.0)
    model = open_model(load, pb.LoadShare(rate_per_s=100.0, request_count=7))

    assert len(list(model.arrivals(0))) == 7


def test_duration_ends_before_request_count() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=1.0)
    model = open_model(load, pb.LoadShare(rate_per_s=10.0, request_count=1000))

    assert len(list(model.arrivals(0))) == 10


def test_request_count_alone_is_enough() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.POISSON)
    model = open_model(load, pb.LoadShare(rate_per_s=50.0, request_count=25), seed=1)

    assert len(list(model.arrivals(0))) == 25


def test_poisson_mean_rate_within_bounds() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.POISSON, duration_s=20.0)
    model = open_model(load, pb.LoadShare(rate_per_s=500.0), seed=42)

    arrivals = list(model.arrivals(0))

    # Expected 10,000 arrivals with standard deviation 100; allow five of them.
    assert abs(len(arrivals) - 10_000) < 500
    gaps_s = [(b.scheduled_ns - a.scheduled_ns) / NS_PER_S for a, b in itertools.pairwise(arrivals)]
    mean_gap_s = statistics.fmean(gaps_s)
    assert mean_gap_s == pytest.approx(1 / 500, rel=0.05)
    # Exponential gaps have a coefficient of variation of 1; constant pacing has 0.
    assert statistics.stdev(gaps_s) / mean_gap_s == pytest.approx(1.0, abs=0.05)
    assert model.label == "poisson@500.00/s"


def test_poisson_seed_repeats_schedule() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.POISSON, duration_s=1.0)
    share = pb.LoadShare(rate_per_s=100.0)

    first = list(open_model(load, share, seed=7).arrivals(0))
    second = list(open_model(load, share, seed=7).arrivals(0))
    other = list(open_model(load, share, seed=8).arrivals(0))

    assert first == second
    assert first != other


def test_plan_seed_repeats_per_agent_index() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.POISSON, duration_s=1.0, seed=7)
    agent_0 = pb.LoadShare(rate_per_s=100.0, agent_index=0, agent_count=2)
    agent_1 = pb.LoadShare(rate_per_s=100.0, agent_index=1, agent_count=2)

    first = list(open_model(load, agent_0, seed=arrival_seed(load, agent_0)).arrivals(0))
    again = list(open_model(load, agent_0, seed=arrival_seed(load, agent_0)).arrivals(0))
    other = list(open_model(load, agent_1, seed=arrival_seed(load, agent_1)).arrivals(0))

    assert first == again
    assert first != other


def test_plan_seed_zero_means_random() -> None:
    share = pb.LoadShare(agent_index=3, agent_count=4)

    assert arrival_seed(pb.LoadSpec(mode=pb.LoadSpec.POISSON), share) is None
    assert arrival_seed(pb.LoadSpec(mode=pb.LoadSpec.POISSON, seed=7), share) == 10


def test_stages_count_and_stage_index() -> None:
    load = pb.LoadSpec(
        mode=pb.LoadSpec.CONSTANT,
        stages=[pb.Stage(rate_per_s=10, duration_s=1.0), pb.Stage(rate_per_s=20, duration_s=1.0)],
    )
    share = pb.LoadShare(stages=[pb.StageShare(rate_per_s=10), pb.StageShare(rate_per_s=20)])
    model = open_model(load, share)

    arrivals = list(model.arrivals(0))

    assert len(arrivals) == 30
    assert [a.stage_index for a in arrivals] == [0] * 10 + [1] * 20
    assert arrivals[10].scheduled_ns == NS_PER_S
    assert model.label == "constant@[10.00,20.00]/s"


def test_linear_ramp_from_zero() -> None:
    load = pb.LoadSpec(
        mode=pb.LoadSpec.CONSTANT,
        stages=[pb.Stage(rate_per_s=100, duration_s=1.0, ramp_s=1.0)],
    )
    share = pb.LoadShare(stages=[pb.StageShare(rate_per_s=100)])

    arrivals = list(open_model(load, share).arrivals(0))

    # The rate climbs 0 -> 100/s over 1 s: 50 arrivals, arrival k due at sqrt(2k/100) s.
    assert len(arrivals) == 50
    for k in (1, 10, 49):
        assert arrivals[k].scheduled_ns / NS_PER_S == pytest.approx(
            math.sqrt(2 * k / 100), abs=1e-6
        )


def test_ramp_between_stages_then_hold() -> None:
    load = pb.LoadSpec(
        mode=pb.LoadSpec.CONSTANT,
        stages=[
            pb.Stage(rate_per_s=10, duration_s=1.0),
            pb.Stage(rate_per_s=30, duration_s=2.0, ramp_s=1.0),
        ],
    )
    share = pb.LoadShare(stages=[pb.StageShare(rate_per_s=10), pb.StageShare(rate_per_s=30)])

    arrivals = list(open_model(load, share).arrivals(0))

    # 10 in stage 0, 20 during the 10 -> 30/s ramp, 30 in the last second.
    assert len(arrivals) == 60
    ramp = [a for a in arrivals if NS_PER_S <= a.scheduled_ns < 2 * NS_PER_S]
    assert len(ramp) == 20
    assert all(a.stage_index == 1 for a in ramp)


def test_duration_longer_than_stages_holds_last_rate() -> None:
    load = pb.LoadSpec(
        mode=pb.LoadSpec.CONSTANT, duration_s=2.0, stages=[pb.Stage(rate_per_s=5, duration_s=1.0)]
    )
    share = pb.LoadShare(stages=[pb.StageShare(rate_per_s=5)])

    assert len(list(open_model(load, share).arrivals(0))) == 10


def test_zero_rate_stage_sends_nothing() -> None:
    load = pb.LoadSpec(
        mode=pb.LoadSpec.CONSTANT,
        stages=[pb.Stage(rate_per_s=0, duration_s=1.0), pb.Stage(rate_per_s=4, duration_s=1.0)],
    )
    share = pb.LoadShare(stages=[pb.StageShare(rate_per_s=0), pb.StageShare(rate_per_s=4)])

    arrivals = list(open_model(load, share).arrivals(0))

    assert len(arrivals) == 4
    assert all(a.scheduled_ns >= NS_PER_S for a in arrivals)


def test_warmup_flags() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, duration_s=2.0, warmup_s=0.5)
    arrivals = list(open_model(load, pb.LoadShare(rate_per_s=10)).arrivals(START_NS))

    assert [a.warmup for a in arrivals] == [True] * 5 + [False] * 15


def test_closed_loop_workers_and_label() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=8, duration_s=5)
    model = closed_model(load, pb.LoadShare(concurrency=8))

    assert model.label == "closed@8"
    assert model.workers_at(0) == 8
    assert model.workers_at(4 * NS_PER_S) == 8
    assert model.next_change_ns(0) is None


def test_closed_loop_stage_ramp() -> None:
    load = pb.LoadSpec(
        mode=pb.LoadSpec.CLOSED,
        stages=[
            pb.Stage(concurrency=2, duration_s=1.0),
            pb.Stage(concurrency=10, duration_s=2.0, ramp_s=1.0),
        ],
    )
    share = pb.LoadShare(stages=[pb.StageShare(concurrency=2), pb.StageShare(concurrency=10)])
    model = closed_model(load, share)

    assert model.label == "closed@[2,10]"
    assert model.workers_at(NS_PER_S // 2) == 2
    assert model.workers_at(NS_PER_S + NS_PER_S // 2) == 6
    assert model.workers_at(2 * NS_PER_S + 1) == 10
    assert model.next_change_ns(0) == NS_PER_S
    # During a ramp the count is re-read in small steps.
    assert model.next_change_ns(NS_PER_S) == NS_PER_S + 50_000_000
    assert model.limits.end_ns == 3 * NS_PER_S
    assert model.profile.stage_at(NS_PER_S) == 1


def test_load_without_end_is_rejected() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.CLOSED, concurrency=2)

    with pytest.raises(LoadSpecError, match="no end"):
        build_model(load, pb.LoadShare(concurrency=2))


def test_stage_share_mismatch_is_rejected() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.CONSTANT, stages=[pb.Stage(rate_per_s=1, duration_s=1)])

    with pytest.raises(LoadSpecError, match="1 stages"):
        build_model(load, pb.LoadShare(rate_per_s=1))


def test_unknown_mode_is_rejected() -> None:
    with pytest.raises(LoadSpecError, match="mode"):
        build_model(pb.LoadSpec(duration_s=1), pb.LoadShare())


def test_warmup_just_before_start() -> None:
    # An event-loop timer may start a closed loop a moment before its start instant.
    no_warmup = LoadLimits(end_ns=None, request_count=10, warmup_ns=0)
    assert not no_warmup.is_warmup(-1_000_000)
    assert not no_warmup.is_warmup(0)
    with_warmup = LoadLimits(end_ns=None, request_count=10, warmup_ns=5_000_000)
    assert with_warmup.is_warmup(-1_000_000)
    assert with_warmup.is_warmup(4_999_999)
    assert not with_warmup.is_warmup(5_000_000)
