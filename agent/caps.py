"""In-flight caps of open-loop lanes: the plan's cap split per agent, or the agent's default.

Without a cap, an open-loop lane keeps starting requests however slow the provider is,
until the agent runs out of file descriptors (EMFILE) and every later request fails
inside the agent. So when the plan sets no max_in_flight, the agent applies a default
cap derived from its open-file limit (see open_files.default_in_flight_cap) with
overflow "drop": an overload then shows up as requests_dropped_by_cap in the
self-diagnosis. The plan's overflow setting applies only to a cap the plan set.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmping.agent.driver import OVERFLOW_DROP
from llmping.agent.open_files import default_in_flight_cap, open_file_limit
from llmping.v1 import llmping_pb2 as pb


@dataclass(frozen=True)
class CapChoice:
    """The in-flight cap of each open-loop lane of one assignment."""

    # 0: no cap.
    max_in_flight: int
    overflow: str
    # True when the plan set no cap and the agent derived this one from its open-file limit.
    is_default: bool = False


def lane_cap(load: pb.LoadSpec, share: pb.LoadShare) -> int:
    """Return this agent's part of the plan's max_in_flight (0: no cap).

    The controller splits the cap into share.max_in_flight. A controller older than
    that field sends 0 there, so then each agent takes its part of the target's cap
    the way the controller splits integers: evenly, remainder to the lowest indexes.
    In that fallback every agent keeps at least one slot.
    """
    if share.max_in_flight > 0:
        return share.max_in_flight
    if load.max_in_flight <= 0:
        return 0
    agent_count = max(1, share.agent_count)
    base, remainder = divmod(load.max_in_flight, agent_count)
    return max(1, base + (1 if share.agent_index < remainder else 0))


def choose_cap(load: pb.LoadSpec, share: pb.LoadShare, lane_count: int, overflow: str) -> CapChoice:
    """Return the plan's cap for this agent, or else the default from the open-file limit.

    ``overflow`` is the plan's setting, already checked. With no open-file limit
    (Windows, or an unlimited one) and no cap in the plan, lanes stay uncapped.
    """
    plan_cap = lane_cap(load, share)
    if plan_cap > 0:
        return CapChoice(plan_cap, overflow)
    limit = open_file_limit()
    if limit is None:
        return CapChoice(0, overflow)
    # NOTE: the default assumes one assignment at a time. Assignments that run at the
    # same time on one agent share its open-file limit, and each takes the full default.
    return CapChoice(default_in_flight_cap(limit, lane_count), OVERFLOW_DROP, is_default=True)
