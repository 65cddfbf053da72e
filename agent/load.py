"""Load models: when each request of one provider lane is due.

Two families:

- ``ClosedLoop``: a number of workers, each sending its next request when the previous
  one ends. Latency counts from the actual send time.
- ``OpenLoop``: arrivals at a constant or Poisson rate, independent of how fast the
  provider responds. Latency counts from the scheduled time, so an agent that falls
  behind shows it as start lag instead of hiding it (coordinated omission).

Both follow a ``Profile``: one value (workers or arrivals per second) per stage, with an
optional linear ramp from the previous stage's value at the beginning of a stage.
Times are nanoseconds relative to the start of the assignment; the drivers add the
start's perf_counter_ns.

Rules shared by every model:

- A ramp is the first ``ramp_s`` seconds of its stage and counts toward the stage's
  ``duration_s``. The first stage ramps from 0.
- The load ends at ``duration_s`` when set, otherwise at the end of the last stage.
  When ``duration_s`` is longer than the stages, the last stage's value continues until then.
- ``request_count`` limits arrivals (first attempts). Whichever of the two limits comes
  first ends the load. Warm-up requests count toward ``request_count``.
- Requests scheduled within ``warmup_s`` of the start are flagged as warm-up.
- The agents of one target shift their constant-rate arrivals against each other
  (``agent_phase``), so together they send the schedule of one agent at the full rate.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from llmping.errors import LlmpingError
from llmping.v1 import llmping_pb2 as pb

NS_PER_S = 1_000_000_000

# Closed-loop ramps re-read the target worker count this often.
RAMP_STEP_NS = 50_000_000


class LoadSpecError(LlmpingError):
    """The assignment's load cannot be turned into a schedule."""


@dataclass(frozen=True)
class Arrival:
    """One request due at ``scheduled_ns`` (perf_counter_ns)."""

    scheduled_ns: int
    stage_index: int
    warmup: bool


@dataclass(frozen=True)
class Segment:
    """A stretch of time where the profile's value moves linearly from start to end."""

    start_ns: int
    # None: the segment never ends (the last one when the load has no end time).
    end_ns: int | None
    start_value: float
    end_value: float
    stage_index: int

    def value_at(self, t_ns: int) -> float:
        """Return the value at ``t_ns``, which must lie inside the segment."""
        if self.end_ns is None or self.end_ns == self.start_ns:
            return self.end_value
        fraction = (t_ns - self.start_ns) / (self.end_ns - self.start_ns)
        return self.start_value + (self.end_value - self.start_value) * fraction

    def area(self) -> float:
        """Return the integral of the value over the segment, in value x seconds."""
        if self.end_ns is None:
            return math.inf if self.end_value > 0 else 0.0
        width_s = (self.end_ns - self.start_ns) / NS_PER_S
        return (self.start_value + self.end_value) / 2 * width_s


@dataclass(frozen=True)
class LoadLimits:
    """When a load ends and which requests are warm-up."""

    # None: no time limit, so request_count must be set.
    end_ns: int | None
    # 0: no count limit.
    request_count: int
    warmup_ns: int

    def is_warmup(self, t_ns: int) -> bool:
        """Return whether a request scheduled at ``t_ns`` after the start is warm-up.

        A request a moment before the start (an event-loop timer that fired early) is
        warm-up only if the first instant after the start would be.
        """
        return max(t_ns, 0) < self.warmup_ns


class Profile:
    """A piecewise-linear value over time, split into stages."""

    def __init__(self, segments: Sequence[Segment]) -> None:
        if not segments:
            raise ValueError("a profile needs at least one segment")
        self.segments = list(segments)
        self._starts = [segment.start_ns for segment in self.segments]

    @classmethod
    def constant(cls, value: float) -> Profile:
        """Build a profile that keeps ``value`` from the start on, as stage 0."""
        return cls([Segment(0, None, value, value, 0)])

    @classmethod
    def from_stages(cls, values: Sequence[float], stages: Sequence[pb.Stage]) -> Profile:
        """Build a profile from per-stage values and the plan's stage durations and ramps.

        The last stage's value continues after its end, so a longer ``duration_s`` keeps it.
        """
        segments: list[Segment] = []
        previous = 0.0
        t_ns = 0
        for index, (value, stage) in enumerate(zip(values, stages, strict=True)):
            duration_ns = round(stage.duration_s * NS_PER_S)
            ramp_ns = min(round(stage.ramp_s * NS_PER_S), duration_ns)
            if ramp_ns > 0:
                segments.append(Segment(t_ns, t_ns + ramp_ns, previous, value, index))
            if duration_ns > ramp_ns:
                segments.append(Segment(t_ns + ramp_ns, t_ns + duration_ns, value, value, index))
            t_ns += duration_ns
            previous = value
        last_index = len(values) - 1
        segments.append(Segment(t_ns, None, previous, previous, last_index))
        return cls(segments)

    @property
    def stages_end_ns(self) -> int:
        """Return where the last finite segment ends (0 for a constant profile)."""
        return self.segments[-1].start_ns

    def segment_at(self, t_ns: int) -> Segment:
        """Return the segment that contains ``t_ns`` (clamped to the first one)."""
        position = max(0, bisect.bisect_right(self._starts, t_ns) - 1)
        return self.segments[position]

    def value_at(self, t_ns: int) -> float:
        """Return the profile's value at ``t_ns``."""
        return self.segment_at(t_ns).value_at(t_ns)

    def stage_at(self, t_ns: int) -> int:
        """Return the stage index at ``t_ns``."""
        return self.segment_at(t_ns).stage_index


def _time_for_area(segment: Segment, area: float) -> float:
    """Return seconds into ``segment`` where the integral of its value reaches ``area``.

    Solves start*x + slope/2*x^2 = area for x, in the form that stays accurate when
    the slope is near zero.
    """
    if area <= 0:
        return 0.0
    if segment.end_ns is None or segment.start_value == segment.end_value:
        return area / segment.end_value
    width_s = (segment.end_ns - segment.start_ns) / NS_PER_S
    slope = (segment.end_value - segment.start_value) / width_s
    discriminant = max(0.0, segment.start_value**2 + 2 * slope * area)
    return 2 * area / (segment.start_value + math.sqrt(discriminant))


class ArrivalClock:
    """Turns cumulative arrivals into times by inverting the integral of the rate.

    With a rate profile r(t), arrival k is due where the integral of r from 0 reaches
    u_k. Constant pacing uses u_k = k + phase, Poisson pacing adds exponential gaps of
    mean 1 (the time-change construction of a non-homogeneous Poisson process).
    """

    def __init__(self, profile: Profile) -> None:
        self._segments = profile.segments
        self._position = 0
        self._area_before = 0.0

    def time_ns_for(self, cumulative: float) -> int | None:
        """Return when the integral reaches ``cumulative``, or None if it never does.

        Calls must pass non-decreasing values, because the cursor only moves forward.
        """
        while self._position < len(self._segments):
            segment = self._segments[self._position]
            area = segment.area()
            if cumulative < self._area_before + area:
                offset_s = _time_for_area(segment, cumulative - self._area_before)
                return segment.start_ns + round(offset_s * NS_PER_S)
            self._area_before += area
            self._position += 1
        return None


class OpenLoop:
    """Arrivals at a constant or Poisson rate, following a rate profile."""

    def __init__(
        self,
        profile: Profile,
        limits: LoadLimits,
        poisson: bool,
        seed: int | None = None,
        phase: float = 0.0,
    ) -> None:
        if not 0.0 <= phase < 1.0:
            raise ValueError(f"phase must be in [0, 1), got {phase}")
        self.profile = profile
        self.limits = limits
        self.poisson = poisson
        # Fraction of one interval by which constant pacing is shifted (see agent_phase).
        self.phase = phase
        self._rng = random.Random(seed)

    @property
    def label(self) -> str:
        """Short form for logs and reports, such as ``poisson@500.00/s``."""
        kind = "poisson" if self.poisson else "constant"
        return f"{kind}@{_format_values(self.profile, '{:.2f}')}/s"

    def arrivals(self, start_ns: int) -> Iterator[Arrival]:
        """Yield every arrival in order, as perf_counter_ns given the start's."""
        clock = ArrivalClock(self.profile)
        cumulative = self._rng.expovariate(1.0) if self.poisson else self.phase
        count = 0
        while not self.limits.request_count or count < self.limits.request_count:
            t_ns = clock.time_ns_for(cumulative)
            if t_ns is None:
                return
            if self.limits.end_ns is not None and t_ns >= self.limits.end_ns:
                return
            yield Arrival(
                scheduled_ns=start_ns + t_ns,
                stage_index=self.profile.stage_at(t_ns),
                warmup=self.limits.is_warmup(t_ns),
            )
            count += 1
            cumulative += self._rng.expovariate(1.0) if self.poisson else 1.0


class ClosedLoop:
    """A number of workers that each send the next request when the previous one ends."""

    def __init__(self, profile: Profile, limits: LoadLimits) -> None:
        self.profile = profile
        self.limits = limits

    @property
    def label(self) -> str:
        """Short form for logs and reports, such as ``closed@8``."""
        return f"closed@{_format_values(self.profile, '{:.0f}')}"

    def workers_at(self, t_ns: int) -> int:
        """Return how many workers should be sending at ``t_ns`` after the start."""
        return max(0, round(self.profile.value_at(t_ns)))

    def next_change_ns(self, t_ns: int) -> int | None:
        """Return when the worker count may next change, or None if it never does."""
        segment = self.profile.segment_at(t_ns)
        if segment.end_ns is None:
            return None
        if segment.start_value != segment.end_value:
            return min(t_ns + RAMP_STEP_NS, segment.end_ns)
        return segment.end_ns


LoadModel = OpenLoop | ClosedLoop


def _format_values(profile: Profile, value_format: str) -> str:
    """Render the stage values: one value alone, several as ``[a,b,c]``."""
    stage_values: dict[int, float] = {}
    for segment in profile.segments:
        stage_values[segment.stage_index] = segment.end_value
    rendered = [value_format.format(value) for value in stage_values.values()]
    if len(rendered) == 1:
        return rendered[0]
    return "[" + ",".join(rendered) + "]"


def build_limits(load: pb.LoadSpec, share: pb.LoadShare, profile: Profile) -> LoadLimits:
    """Derive the end time, count limit and warm-up window of one lane."""
    if load.duration_s > 0:
        end_ns: int | None = round(load.duration_s * NS_PER_S)
    elif load.stages:
        end_ns = profile.stages_end_ns
    else:
        end_ns = None
    if end_ns is None and share.request_count <= 0:
        raise LoadSpecError(
            "load has no end: set duration_s, stages or request_count in the plan's load"
        )
    return LoadLimits(
        end_ns=end_ns,
        request_count=max(0, share.request_count),
        warmup_ns=round(max(0.0, load.warmup_s) * NS_PER_S),
    )


def arrival_seed(load: pb.LoadSpec, share: pb.LoadShare) -> int | None:
    """Return the Poisson seed of this agent, or None for a random one (load.seed 0).

    The agent index is added so that two agents of a target do not send identical
    arrival sequences. Every provider lane of one agent uses the same seed, so the
    providers see the same arrival pattern. Agents with the same index in different
    targets also share a sequence.
    """
    if load.seed == 0:
        return None
    return load.seed + share.agent_index


def agent_phase(share: pb.LoadShare) -> float:
    """Return how far into its first interval this agent's constant pacing starts.

    Agent i of N runs at 1/N of the target's rate and starts i/N of its own interval
    late, so its arrival k falls where one agent at the full rate would send arrival
    N*k + i. The agents' arrivals interleave into that single sequence. Over a window
    they send exactly its count: ceil(rate x duration), the arrivals at 0, 1/rate,
    2/rate, ... strictly before the end. A request_count split by the controller
    (remainder to the lowest indexes) gives the first request_count arrivals of that
    sequence as well.
    """
    if share.agent_count <= 1 or not 0 <= share.agent_index < share.agent_count:
        return 0.0
    return share.agent_index / share.agent_count


def build_model(load: pb.LoadSpec, share: pb.LoadShare, seed: int | None = None) -> LoadModel:
    """Build one provider lane's load model from the plan's load and this agent's share.

    Raises LoadSpecError when the mode is unknown or the stages of the plan and the
    share do not match.
    """
    closed = load.mode == pb.LoadSpec.CLOSED
    if load.mode not in (pb.LoadSpec.CLOSED, pb.LoadSpec.CONSTANT, pb.LoadSpec.POISSON):
        raise LoadSpecError(f"load mode {load.mode} is not one of CLOSED, CONSTANT, POISSON")
    if len(share.stages) != len(load.stages):
        raise LoadSpecError(
            f"the plan has {len(load.stages)} stages but this agent's share has "
            f"{len(share.stages)}; the controller must send one share per stage"
        )

    if load.stages:
        values = [float(s.concurrency if closed else s.rate_per_s) for s in share.stages]
        profile = Profile.from_stages(values, load.stages)
    else:
        profile = Profile.constant(float(share.concurrency if closed else share.rate_per_s))
    limits = build_limits(load, share, profile)

    if closed:
        return ClosedLoop(profile, limits)
    if load.mode == pb.LoadSpec.POISSON:
        # Each agent draws its own Poisson process at 1/N of the rate. Their sum is a
        # Poisson process at the full rate, so the split is exact in expectation, but
        # the count in one window varies from run to run.
        return OpenLoop(profile, limits, poisson=True, seed=seed)
    return OpenLoop(profile, limits, poisson=False, phase=agent_phase(share))
