"""Reload runs that a previous controller process left open in the database.

A reloaded run waits for its agents as if each had just disconnected: every assignment
that is not done starts its grace period at the restart. The stored plan has its secrets
redacted, so a reloaded run never resends an Assignment (``can_resend`` is False).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llmping.v1 import llmping_pb2 as pb

from .run_state import OPEN_RUN_STATES, ActiveRun, AssignmentTracker, TargetCounter
from .store import AssignmentRow, RunRow, Store


def load_open_runs(
    store: Store, deadline_s: Callable[[pb.Plan], float], agent_grace_s: float
) -> list[ActiveRun]:
    """Load every PENDING or RUNNING run with its assignments, stored batches and counts.

    Blocking: call it on the store's thread. ``deadline_s`` returns a plan's deadline in
    seconds after submission.
    """
    return [
        _load_run(store, row, deadline_s(pb.Plan.FromString(row.plan)), agent_grace_s)
        for row in store.runs_in_states(OPEN_RUN_STATES)
    ]


def _load_run(store: Store, row: RunRow, deadline_s: float, agent_grace_s: float) -> ActiveRun:
    plan = pb.Plan.FromString(row.plan)
    now_unix_ns, now_perf_ns = time.time_ns(), time.perf_counter_ns()
    deadline_unix_ns = row.created_unix_ns + int(deadline_s * 1e9)
    # A deadline that passed while the controller was down still leaves agents the
    # grace period to return and resend their unacknowledged batches.
    remaining_ns = max(deadline_unix_ns - now_unix_ns, int(agent_grace_s * 1e9))
    run = ActiveRun(
        run_id=row.run_id,
        plan=plan,
        state=row.state,
        created_unix_ns=row.created_unix_ns,
        start_at_unix_ns=row.start_at_unix_ns,
        deadline_perf_ns=now_perf_ns + remaining_ns,
        deadline_s=deadline_s,
        trace_id=row.trace_id,
        recovered=True,
        can_resend=False,
    )
    for assignment in store.assignments_for_run(row.run_id):
        tracker = _load_tracker(store, assignment, now_perf_ns)
        run.assignments[tracker.assignment_id] = tracker

    counts = store.count_records(row.run_id)
    for target in plan.targets:
        done, errors = counts.get(target.name, (0, 0))
        run.targets[target.name] = TargetCounter(requests_done=done, errors=errors)
    return run


def _load_tracker(store: Store, row: AssignmentRow, now_perf_ns: int) -> AssignmentTracker:
    tracker = AssignmentTracker(
        assignment_id=row.assignment_id,
        run_id=row.run_id,
        agent_id=row.agent_id,
        target=row.target,
        share=pb.LoadShare.FromString(row.share),
        state=row.state,
        message=row.message,
        final_batch_seq=row.final_batch_seq,
        records_total=row.records_total,
        diagnosis=pb.AgentDiagnosis.FromString(row.diagnosis) if row.diagnosis else None,
        absent_since_perf_ns=now_perf_ns,
    )
    for seq, count in store.stored_seqs(row.assignment_id).items():
        tracker.add_batch(seq, count)
    return tracker
