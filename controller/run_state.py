"""In-memory state of open runs and their assignments, and how a run's end is decided.

An assignment is done when its final update (FINISHED, FAILED or CANCELLED) arrived
and batches 1..final_batch_seq are all stored, or when its agent was given up as lost.
A run ends when every assignment is done:

- COMPLETED when every assignment FINISHED and stored as many records as it reported;
- PARTIAL otherwise, with a reason naming each agent and target that fell short
  (lost, failed, cancelled by the agent, or fewer records stored than reported).

CancelRun ends a run CANCELLED at once, and the deadline ends it PARTIAL.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from llmping.v1 import llmping_pb2 as pb

from .store import AssignmentRow, RunRow

Update = pb.AssignmentUpdate
FINAL_UPDATE_STATES = frozenset({Update.FINISHED, Update.FAILED, Update.CANCELLED})
TERMINAL_RUN_STATES = frozenset({pb.COMPLETED, pb.PARTIAL, pb.FAILED, pb.CANCELLED})
OPEN_RUN_STATES = (pb.PENDING, pb.RUNNING)
# WatchRun's current rate is the records stored over this trailing window.
RATE_WINDOW_S = 3.0


@dataclass
class TargetCounter:
    """Records stored so far for one target, warm-up included, and recent arrivals."""

    requests_done: int = 0
    errors: int = 0
    # (perf_counter_ns when stored, records in the batch)
    recent: deque[tuple[int, int]] = field(default_factory=deque)

    def add(self, records: int, errors: int, now_perf_ns: int | None = None) -> None:
        now = time.perf_counter_ns() if now_perf_ns is None else now_perf_ns
        self.requests_done += records
        self.errors += errors
        self.recent.append((now, records))
        self._trim(now)

    def rate_per_s(self, now_perf_ns: int | None = None) -> float:
        now = time.perf_counter_ns() if now_perf_ns is None else now_perf_ns
        self._trim(now)
        return sum(count for _, count in self.recent) / RATE_WINDOW_S

    def _trim(self, now_perf_ns: int) -> None:
        oldest = now_perf_ns - int(RATE_WINDOW_S * 1e9)
        while self.recent and self.recent[0][0] < oldest:
            self.recent.popleft()


@dataclass
class AssignmentTracker:
    """The controller's state of one assignment of an open run."""

    assignment_id: str
    run_id: str
    agent_id: str
    target: str
    share: pb.LoadShare
    state: int = Update.STATE_UNSPECIFIED
    message: str = ""
    final_batch_seq: int = 0
    records_total: int = 0
    diagnosis: pb.AgentDiagnosis | None = None
    # seq -> records in that batch, for every batch stored.
    stored: dict[int, int] = field(default_factory=dict)
    records_stored: int = 0
    # perf_counter_ns since the agent has been disconnected or silent; None while live.
    absent_since_perf_ns: int | None = None
    # Set when the agent was given up; the assignment then counts as done.
    lost_reason: str = ""
    # After a controller restart: whether the agent has reconnected since.
    seen_after_restart: bool = False
    # How often the Assignment was queued to the agent's stream.
    sends: int = 0
    _complete: bool = field(default=False, repr=False)

    @property
    def final(self) -> bool:
        return self.state in FINAL_UPDATE_STATES

    @property
    def label(self) -> str:
        return f"agent {self.agent_id} (target {self.target})"

    def add_batch(self, seq: int, records: int) -> None:
        if seq not in self.stored:
            self.stored[seq] = records
            self.records_stored += records

    def batches_complete(self) -> bool:
        if self._complete:
            return True
        if not self.final or len(self.stored) < self.final_batch_seq:
            return False
        # Cached because a run checks every assignment after each batch, and the scan
        # over all seqs would otherwise repeat for assignments that finished early.
        self._complete = all(seq in self.stored for seq in range(1, self.final_batch_seq + 1))
        return self._complete

    def done(self) -> bool:
        return bool(self.lost_reason) or self.batches_complete()

    def shortfall(self) -> str:
        """Return why this assignment falls short of a complete result, or ''."""
        if self.lost_reason:
            return self.lost_reason
        if self.state == Update.FAILED:
            return f"{self.label} failed: {self.message or 'no message'}"
        if self.state == Update.CANCELLED:
            return f"{self.label} cancelled its assignment: {self.message or 'no message'}"
        if self.records_stored != self.records_total:
            return (
                f"{self.label} reported {self.records_total} records "
                f"but {self.records_stored} were stored"
            )
        return ""

    def info(self) -> pb.AssignmentInfo:
        return pb.AssignmentInfo(
            assignment_id=self.assignment_id,
            agent_id=self.agent_id,
            target=self.target,
            state=pb.AssignmentUpdate.State.ValueType(self.state),
            records_stored=self.records_stored,
            message=self.lost_reason or self.message,
        )


@dataclass
class ActiveRun:
    """An open run: its plan, assignments, deadline and progress counters."""

    run_id: str
    plan: pb.Plan
    state: int
    created_unix_ns: int
    start_at_unix_ns: int
    deadline_perf_ns: int
    deadline_s: float
    trace_id: str
    traceparent: str = ""
    reason: str = ""
    ended_unix_ns: int = 0
    # True for a run reloaded from the database after a controller restart.
    recovered: bool = False
    # False after a restart: the stored plan is redacted, so assignments cannot be resent.
    can_resend: bool = True
    assignments: dict[str, AssignmentTracker] = field(default_factory=dict)
    targets: dict[str, TargetCounter] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL_RUN_STATES

    def open_assignments(self) -> list[AssignmentTracker]:
        return [a for a in self.assignments.values() if not a.done()]

    def all_done(self) -> bool:
        return all(a.done() for a in self.assignments.values())

    def counter(self, target: str) -> TargetCounter:
        return self.targets.setdefault(target, TargetCounter())

    def info(self) -> pb.RunInfo:
        info = pb.RunInfo(
            run_id=self.run_id,
            plan_name=self.plan.name,
            state=pb.RunState.ValueType(self.state),
            reason=self.reason,
            created_unix_ns=self.created_unix_ns,
            start_at_unix_ns=self.start_at_unix_ns,
            ended_unix_ns=self.ended_unix_ns,
            trace_id=self.trace_id,
        )
        for tracker in sorted(self.assignments.values(), key=lambda a: (a.target, a.agent_id)):
            info.assignments.append(tracker.info())
        return info


def run_info_from_rows(run: RunRow, assignments: Sequence[AssignmentRow]) -> pb.RunInfo:
    """Build a RunInfo from stored rows, for runs that are no longer in memory."""
    info = pb.RunInfo(
        run_id=run.run_id,
        plan_name=run.plan_name,
        state=pb.RunState.ValueType(run.state),
        reason=run.reason,
        created_unix_ns=run.created_unix_ns,
        start_at_unix_ns=run.start_at_unix_ns,
        ended_unix_ns=run.ended_unix_ns,
        trace_id=run.trace_id,
    )
    for row in assignments:
        info.assignments.append(
            pb.AssignmentInfo(
                assignment_id=row.assignment_id,
                agent_id=row.agent_id,
                target=row.target,
                state=pb.AssignmentUpdate.State.ValueType(row.state),
                records_stored=row.records_stored,
                message=row.message,
            )
        )
    return info


def decide_end(run: ActiveRun) -> tuple[int, str]:
    """Return (state, reason) for a run whose assignments are all done."""
    shortfalls = [a.shortfall() for a in run.assignments.values()]
    reasons = sorted(s for s in shortfalls if s)
    if not reasons:
        return pb.COMPLETED, ""
    return pb.PARTIAL, "; ".join(reasons)
