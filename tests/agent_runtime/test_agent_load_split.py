"""Load split over a target's agents: together they send one full-rate agent's schedule.

The shares come from the controller's own split (llmping.controller.split), so these
tests check the agent against what a real controller sends it.
"""

from __future__ import annotations

import itertools

import pytest

from llmping.agent.load import Arrival, OpenLoop, agent_phase, build_model
from llmping.controller.split import split_load
from llmping.v1 import llmping_pb2 as pb


def schedule(load: pb.LoadSpec, share: pb.LoadShare) -> list[Arrival]:
    model = build_model(load, share)
    assert isinstance(model, OpenLoop)
    return list(model.arrivals(0))


def agent_schedules(load: pb.LoadSpec, agent_count: int) -> list[list[Arrival]]:
    return [schedule(load, share) for share in split_load(load, agent_count)]


def constant(rate_per_s: float, duration_s: float, request_count: int = 0) -> pb.LoadSpec:
    return pb.LoadSpec(
        mode=pb.LoadSpec.CONSTANT,
        rate_per_s=rate_per_s,
        duration_s=duration_s,
        request_count=request_count,
    )


def staged(*stages: tuple[float, float, float]) -> pb.LoadSpec:
    """Build a constant-mode load from (rate_per_s, duration_s, ramp_s) stages."""
    return pb.LoadSpec(
        mode=pb.LoadSpec.CONSTANT,
        stages=[pb.Stage(rate_per_s=r, duration_s=d, ramp_s=ramp) for r, d, ramp in stages],
    )


CONSTANT_CASES = [
    (10.0, 5.0, 3),
    (7.0, 3.0, 2),
    (1.0, 10.0, 4),
    (100.0, 1.0, 7),
    (3.0, 10.0, 6),
    (2.5, 3.0, 2),
    (0.7, 9.0, 3),
    (500.0, 2.0, 9),
    (13.0, 1.3, 5),
]


@pytest.mark.parametrize(("rate_per_s", "duration_s", "agent_count"), CONSTANT_CASES)
def test_constant_split_sums_to_one_agent(
    rate_per_s: float, duration_s: float, agent_count: int
) -> None:
    load = constant(rate_per_s, duration_s)
    single = schedule(load, split_load(load, 1)[0])

    per_agent = agent_schedules(load, agent_count)

    assert sum(len(arrivals) for arrivals in per_agent) == len(single)


@pytest.mark.parametrize(("rate_per_s", "duration_s", "agent_count"), CONSTANT_CASES)
def test_constant_split_interleaves_evenly(
    rate_per_s: float, duration_s: float, agent_count: int
) -> None:
    load = constant(rate_per_s, duration_s)
    single = [a.scheduled_ns for a in schedule(load, split_load(load, 1)[0])]

    per_agent = agent_schedules(load, agent_count)
    merged = sorted(a.scheduled_ns for arrivals in per_agent for a in arrivals)

    assert len(set(merged)) == len(merged), "two agents scheduled an arrival at the same time"
    # The merged schedule is the single agent's, up to float rounding of the times.
    assert len(merged) == len(single)
    assert max(abs(m - s) for m, s in zip(merged, single, strict=True)) <= 2


@pytest.mark.parametrize("agent_count", [2, 3, 5])
def test_stages_and_ramps_split_exactly(agent_count: int) -> None:
    load = staged((10, 1.0, 0.0), (30, 2.0, 1.0), (7, 1.5, 0.5), (0, 0.5, 0.0), (4, 1.0, 0.0))
    single = schedule(load, split_load(load, 1)[0])

    per_agent = agent_schedules(load, agent_count)
    merged = sorted(
        ((a.scheduled_ns, a.stage_index) for arrivals in per_agent for a in arrivals),
    )

    assert len(merged) == len(single)
    assert len({t for t, _ in merged}) == len(merged)
    for (merged_ns, merged_stage), arrival in zip(merged, single, strict=True):
        assert abs(merged_ns - arrival.scheduled_ns) <= 2
        assert merged_stage == arrival.stage_index


@pytest.mark.parametrize(("request_count", "agent_count"), [(10, 3), (7, 2), (5, 5), (11, 4)])
def test_request_count_split_takes_first_arrivals(request_count: int, agent_count: int) -> None:
    load = constant(rate_per_s=20.0, duration_s=60.0, request_count=request_count)
    single = [a.scheduled_ns for a in schedule(load, split_load(load, 1)[0])]

    per_agent = agent_schedules(load, agent_count)
    merged = sorted(a.scheduled_ns for arrivals in per_agent for a in arrivals)

    assert len(merged) == request_count
    assert max(abs(m - s) for m, s in zip(merged, single, strict=True)) <= 2


def test_agents_start_at_their_phase() -> None:
    load = constant(rate_per_s=10.0, duration_s=1.0)

    per_agent = agent_schedules(load, 4)

    # Each agent runs at 2.5/s (400 ms apart) and starts i/4 of that interval in.
    assert [arrivals[0].scheduled_ns for arrivals in per_agent] == [
        0,
        100_000_000,
        200_000_000,
        300_000_000,
    ]
    for arrivals in per_agent:
        gaps = {b.scheduled_ns - a.scheduled_ns for a, b in itertools.pairwise(arrivals)}
        assert gaps == {400_000_000}


def test_single_agent_and_old_shares_have_no_phase() -> None:
    assert agent_phase(pb.LoadShare()) == 0.0
    assert agent_phase(pb.LoadShare(agent_index=0, agent_count=1)) == 0.0
    # An index outside the count cannot be placed, so it keeps the unshifted schedule.
    assert agent_phase(pb.LoadShare(agent_index=3, agent_count=3)) == 0.0
    assert agent_phase(pb.LoadShare(agent_index=2, agent_count=3)) == pytest.approx(2 / 3)


def test_poisson_agents_keep_their_random_schedules() -> None:
    load = pb.LoadSpec(mode=pb.LoadSpec.POISSON, rate_per_s=50.0, duration_s=2.0)

    for share in split_load(load, 2):
        model = build_model(load, share, seed=11)
        assert isinstance(model, OpenLoop)
        assert model.phase == 0.0
