"""Turn a plan and the agents matched to its targets into a new run with assignments."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence

from llmping.v1 import llmping_pb2 as pb

from .redact import redact_plan
from .registry import AgentRegistry, AgentSession, describe_agents, format_labels
from .run_state import ActiveRun, AssignmentTracker
from .split import agents_needed, split_load
from .store import AssignmentRow, RunRow

# Opens a run's trace and returns (trace_id, traceparent).
TraceStarter = Callable[[str, pb.Plan], tuple[str, str]]


def new_run_id() -> str:
    """Return a run id that sorts by creation time, such as ``20250101-120000-3fa2c1``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def new_trace_context(run_id: str, plan: pb.Plan) -> tuple[str, str]:
    """Return random (trace_id, traceparent) ids for a run, when no tracing hook is given.

    No span is recorded under these ids, which only let the agents' spans share one trace.
    """
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def _start_flags(selector: Mapping[str, str]) -> str:
    flags = [
        f"--region {value}" if key == "region" else f"--label {key}={value}"
        for key, value in sorted(selector.items())
    ]
    return " ".join(flags)


def match_targets(
    plan: pb.Plan, registry: AgentRegistry
) -> tuple[dict[str, list[AgentSession]], str]:
    """Match each target to live agents.

    Returns ({target name: agents to use}, problem). The problem is empty when every
    target has an agent, and otherwise names each unmatched target, its selector, the
    flags that would start a matching agent and the agents that are connected.
    """
    matches: dict[str, list[AgentSession]] = {}
    problems: list[str] = []
    for target in plan.targets:
        sessions = registry.match(target.selector)
        if not sessions:
            problems.append(
                f"target {target.name} with selector {format_labels(target.selector)} "
                f"matches no connected agent; start an agent with "
                f"{_start_flags(target.selector) or 'any labels'} or fix the selector"
            )
        matches[target.name] = sessions[: agents_needed(plan.load, len(sessions))]
    if not problems:
        return matches, ""
    connected = describe_agents(registry.live_sessions())
    return matches, "; ".join(problems) + f". Connected agents: {connected}"


def build_run(
    plan: pb.Plan,
    matches: Mapping[str, Sequence[AgentSession]],
    start_delay_s: float,
    deadline_s: float,
    start_trace: TraceStarter,
) -> ActiveRun:
    """Create a PENDING run with one assignment per matched agent and its exact share."""
    run_id = new_run_id()
    trace_id, traceparent = start_trace(run_id, plan)
    now_unix_ns = time.time_ns()
    run = ActiveRun(
        run_id=run_id,
        plan=plan,
        state=pb.PENDING,
        created_unix_ns=now_unix_ns,
        start_at_unix_ns=now_unix_ns + int(start_delay_s * 1e9),
        deadline_perf_ns=time.perf_counter_ns() + int(deadline_s * 1e9),
        deadline_s=deadline_s,
        trace_id=trace_id,
        traceparent=traceparent,
    )
    number = 0
    for target in plan.targets:
        sessions = matches[target.name]
        for session, share in zip(sessions, split_load(plan.load, len(sessions)), strict=True):
            number += 1
            tracker = AssignmentTracker(
                assignment_id=f"{run_id}-a{number}",
                run_id=run_id,
                agent_id=session.agent_id,
                target=target.name,
                share=share,
            )
            run.assignments[tracker.assignment_id] = tracker
        run.counter(target.name)
    return run


def run_row(run: ActiveRun) -> RunRow:
    """Return the run's database row; the stored plan has its secrets redacted."""
    return RunRow(
        run_id=run.run_id,
        plan_name=run.plan.name,
        plan=redact_plan(run.plan).SerializeToString(),
        state=run.state,
        reason=run.reason,
        created_unix_ns=run.created_unix_ns,
        start_at_unix_ns=run.start_at_unix_ns,
        ended_unix_ns=0,
        trace_id=run.trace_id,
    )


def assignment_rows(run: ActiveRun) -> list[AssignmentRow]:
    return [
        AssignmentRow(
            assignment_id=t.assignment_id,
            run_id=t.run_id,
            agent_id=t.agent_id,
            target=t.target,
            share=t.share.SerializeToString(),
            state=t.state,
            message="",
            final_batch_seq=0,
            records_total=0,
            diagnosis=None,
            records_stored=0,
        )
        for t in run.assignments.values()
    ]


def assignment_message(run: ActiveRun, tracker: AssignmentTracker) -> pb.ControllerMessage:
    assignment = pb.Assignment(
        run_id=run.run_id,
        assignment_id=tracker.assignment_id,
        target=tracker.target,
        plan=run.plan,
        share=tracker.share,
        start_at_unix_ns=run.start_at_unix_ns,
        traceparent=run.traceparent,
    )
    return pb.ControllerMessage(assignment=assignment)
