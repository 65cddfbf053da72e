"""The run lifecycle: submit, track, end, cancel, and resume after a restart.

States: PENDING (assignments sent, start_at not reached and no agent running yet),
RUNNING, then one of COMPLETED, PARTIAL, FAILED or CANCELLED. run_state.py describes how
the end state is decided. An agent that is disconnected or silent gets ``agent_grace_s`` to
come back before its assignment is given up. A restarted controller reloads runs still
open in the database and gives their agents the same grace to reconnect and resend
their unacknowledged batches. Every run also has a deadline (deadline.py), so none
stays open forever.

This controller never ends a run FAILED: assignment failures reported by agents make a
run PARTIAL, and a run the database rejects is never created.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from llmping.errors import InputError, LlmpingError, StoreError
from llmping.v1 import llmping_pb2 as pb

from .deadline import SLACK_S, run_deadline_s
from .logcount import RepeatCounter
from .observers import ObserverGroup
from .recovery import load_open_runs
from .registry import AgentRegistry, AgentSession
from .run_setup import (
    TraceStarter,
    assignment_message,
    assignment_rows,
    build_run,
    match_targets,
    new_trace_context,
    run_row,
)
from .run_state import ActiveRun, AssignmentTracker, Update, decide_end, run_info_from_rows
from .store import StoreWorker
from .validate import validate_plan

log = logging.getLogger(__name__)

DEFAULT_LIST_LIMIT = 50
# An agent that reconnects this many times after being sent an assignment, without ever
# reporting on it, cannot receive it (a message over its size limit breaks the stream on
# each send). The assignment is then given up instead of being sent forever.
MAX_ASSIGNMENT_SENDS = 3


class NoMatchingAgentError(InputError):
    """A plan target matches no connected agent."""


class RunNotFoundError(LlmpingError):
    """No run with the requested id exists."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id!r} not found; list runs with `llmping runs`")


@dataclass(frozen=True)
class RunPolicy:
    """Timing rules of the run lifecycle."""

    agent_grace_s: float = 10.0
    start_delay_s: float = 2.0
    # How often the supervisor checks for lost agents, deadlines and start times.
    tick_s: float = 0.2
    deadline_slack_s: float = SLACK_S


class RunManager:
    """Owns every open run and the record ingest of their assignments."""

    def __init__(
        self,
        worker: StoreWorker,
        registry: AgentRegistry,
        policy: RunPolicy,
        observers: ObserverGroup | None = None,
        start_trace: TraceStarter | None = None,
    ) -> None:
        self._worker = worker
        # Opens the run span and returns (trace_id, traceparent); see controller/tracing.py.
        self._start_trace = start_trace
        self._store = worker.store
        self._registry = registry
        self._policy = policy
        self._observers = observers or ObserverGroup()
        self._runs: dict[str, ActiveRun] = {}
        self._assignments: dict[str, AssignmentTracker] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._rejected_messages = RepeatCounter(log, "message from an agent rejected")
        self._store_failures = RepeatCounter(log, "storing a result batch failed", logging.ERROR)

    # -- start and stop ------------------------------------------------------------

    async def start(self) -> None:
        """Reload runs left open by a previous controller and start supervising."""
        await self._recover()
        self._supervisor = asyncio.create_task(self._supervise(), name="llmping-run-supervisor")

    async def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None

    def open_run_ids(self) -> list[str]:
        return sorted(self._runs)

    def open_assignments_by_agent(self) -> dict[str, list[str]]:
        """Return {agent_id: ids of its assignments in open runs that are not done}."""
        by_agent: dict[str, list[str]] = {}
        for tracker in self._assignments.values():
            if not tracker.done():
                by_agent.setdefault(tracker.agent_id, []).append(tracker.assignment_id)
        return by_agent

    # -- submit --------------------------------------------------------------------

    async def submit(self, plan: pb.Plan) -> pb.RunInfo:
        """Start a run of the plan on the matching agents and return its RunInfo.

        Raises PlanError or NoMatchingAgentError (both InputError) for a plan the
        controller cannot run, and StoreError when the run cannot be stored.
        """
        validate_plan(plan)
        matches, problem = match_targets(plan, self._registry)
        if problem:
            raise NoMatchingAgentError(problem)
        start_trace = self._start_trace or new_trace_context
        run = build_run(
            plan, matches, self._policy.start_delay_s, self._deadline_s(plan), start_trace
        )
        # Shielded: once the run is in the database it must also be tracked and sent,
        # even when the client gives up on the call halfway.
        return await asyncio.shield(self._start_run(run))

    async def _start_run(self, run: ActiveRun) -> pb.RunInfo:
        await self._worker.call(self._store.insert_run, run_row(run), assignment_rows(run))
        self._runs[run.run_id] = run
        for tracker in run.assignments.values():
            self._assignments[tracker.assignment_id] = tracker

        for tracker in run.assignments.values():
            self._send_assignment(run, tracker)
        info = run.info()
        log.info(
            "run %s (%s) submitted: %d assignments on %s, starting in %.1f s",
            run.run_id,
            run.plan.name or "unnamed plan",
            len(run.assignments),
            ", ".join(sorted({t.agent_id for t in run.assignments.values()})),
            self._policy.start_delay_s,
        )
        self._observers.notify(lambda o: o.run_started(info))
        return info

    def _deadline_s(self, plan: pb.Plan) -> float:
        """Return the run's deadline in seconds after submission."""
        return run_deadline_s(plan, self._policy.deadline_slack_s) + self._policy.start_delay_s

    def _send_assignment(self, run: ActiveRun, tracker: AssignmentTracker) -> None:
        session = self._registry.get(tracker.agent_id)
        if session is None or not session.send(assignment_message(run, tracker)):
            # The supervisor treats the agent as absent. The agent gets the assignment
            # again if it reconnects within the grace period.
            log.info(
                "agent %s is gone; assignment %s not sent yet",
                tracker.agent_id,
                tracker.assignment_id,
            )
            return
        tracker.sends += 1

    def _give_up_unaccepted(self, run: ActiveRun, tracker: AssignmentTracker) -> None:
        tracker.lost_reason = (
            f"{tracker.label} did not accept assignment {tracker.assignment_id}: it was sent "
            f"{tracker.sends} times and the agent reconnected without it each time, so it was "
            "given up; check the agent's log (an older agent cannot receive a plan over "
            "4 MiB: upgrade it or shorten the prompt)"
        )
        log.warning("run %s: %s", run.run_id, tracker.lost_reason)
        self._send_cancel(tracker, tracker.lost_reason)

    # -- agent connections ---------------------------------------------------------

    def unwanted_assignments(self, agent_id: str, assignment_ids: Sequence[str]) -> list[str]:
        """Return the ids from an agent's Hello that it should stop working on."""
        unwanted = []
        for assignment_id in assignment_ids:
            tracker = self._assignments.get(assignment_id)
            if tracker is None or tracker.agent_id != agent_id or tracker.lost_reason:
                unwanted.append(assignment_id)
        return unwanted

    def agent_connected(self, session: AgentSession, hello: pb.Hello) -> None:
        """Clear the agent's absence and resend assignments it never received."""
        held = set(hello.active_assignment_ids)
        for tracker in list(self._assignments.values()):
            if tracker.agent_id != session.agent_id or tracker.done():
                continue
            run = self._runs[tracker.run_id]
            if tracker.absent_since_perf_ns is not None:
                log.info(
                    "agent %s is back for assignment %s of run %s",
                    session.agent_id,
                    tracker.assignment_id,
                    run.run_id,
                )
            tracker.absent_since_perf_ns = None
            tracker.seen_after_restart = True
            never_received = tracker.state == Update.STATE_UNSPECIFIED
            if never_received and tracker.assignment_id not in held and run.can_resend:
                if tracker.sends >= MAX_ASSIGNMENT_SENDS:
                    # The supervisor ends the run once every assignment is done.
                    self._give_up_unaccepted(run, tracker)
                    continue
                log.info(
                    "resending assignment %s to agent %s", tracker.assignment_id, session.agent_id
                )
                self._send_assignment(run, tracker)

    # -- assignment updates --------------------------------------------------------

    async def handle_update(self, session: AgentSession, update: pb.AssignmentUpdate) -> None:
        """Apply an AssignmentUpdate from an agent and end the run if it was the last."""
        tracker = self._assignments.get(update.assignment_id)
        if tracker is None:
            await self._store_late_update(session, update)
            return
        if tracker.agent_id != session.agent_id:
            self._rejected_messages.record(
                f"update for assignment {update.assignment_id} came from agent "
                f"{session.agent_id}, but it belongs to agent {tracker.agent_id}"
            )
            return
        if tracker.final:
            log.debug(
                "ignoring update %s after the final one for %s", update.state, tracker.assignment_id
            )
            return

        self._apply_update(tracker, update)
        await self._worker.call(
            self._store.update_assignment,
            tracker.assignment_id,
            tracker.state,
            tracker.message,
            tracker.final_batch_seq,
            tracker.records_total,
            tracker.diagnosis.SerializeToString() if tracker.diagnosis else None,
        )

        run = self._runs.get(tracker.run_id)
        if run is None:
            return  # the run ended while the update was being stored
        if update.state == Update.RUNNING and run.state == pb.PENDING:
            await self._set_running(run)
        await self._finish_if_done(run)

    @staticmethod
    def _apply_update(tracker: AssignmentTracker, update: pb.AssignmentUpdate) -> None:
        tracker.state = update.state
        tracker.message = update.message
        if tracker.final:
            tracker.final_batch_seq = update.final_batch_seq
            tracker.records_total = update.records_total
        if update.HasField("diagnosis"):
            tracker.diagnosis = pb.AgentDiagnosis()
            tracker.diagnosis.CopyFrom(update.diagnosis)
        level = logging.WARNING if update.state == Update.FAILED else logging.INFO
        log.log(
            level,
            "assignment %s of run %s on agent %s: %s%s",
            tracker.assignment_id,
            tracker.run_id,
            tracker.agent_id,
            Update.State.Name(update.state),
            f" ({update.message})" if update.message else "",
        )

    async def _store_late_update(self, session: AgentSession, update: pb.AssignmentUpdate) -> None:
        """Store an update for an assignment whose run already ended, such as CANCELLED."""
        row = await self._worker.call(self._store.get_assignment, update.assignment_id)
        if row is None or row.agent_id != session.agent_id:
            self._rejected_messages.record(
                f"update for unknown assignment {update.assignment_id} "
                f"from agent {session.agent_id}"
            )
            return
        if row.state in (Update.FINISHED, Update.FAILED, Update.CANCELLED):
            return
        diagnosis = update.diagnosis.SerializeToString() if update.HasField("diagnosis") else None
        await self._worker.call(
            self._store.update_assignment,
            row.assignment_id,
            update.state,
            update.message or row.message,
            update.final_batch_seq,
            update.records_total,
            diagnosis,
        )

    # -- result batches ------------------------------------------------------------

    async def handle_batch(self, session: AgentSession, batch: pb.ResultBatch) -> bool:
        """Store a batch exactly once; returns True when the agent may be sent a BatchAck.

        A batch that is already stored also returns True. A batch from the wrong agent,
        for an unknown assignment or with seq < 1 returns False. When the database
        fails, the agent's stream is closed so that it reconnects and resends.
        """
        if batch.seq < 1:
            self._rejected_messages.record(
                f"batch seq {batch.seq} < 1 from agent {session.agent_id}"
            )
            return False
        tracker = self._assignments.get(batch.assignment_id)
        if tracker is not None:
            owner, identity = (
                tracker.agent_id,
                (tracker.run_id, tracker.assignment_id, tracker.agent_id, tracker.target),
            )
        else:
            row = await self._worker.call(self._store.get_assignment, batch.assignment_id)
            if row is None:
                self._rejected_messages.record(
                    f"batch {batch.seq} for unknown assignment {batch.assignment_id} "
                    f"from agent {session.agent_id}"
                )
                return False
            owner, identity = (
                row.agent_id,
                (row.run_id, row.assignment_id, row.agent_id, row.target),
            )
        if owner != session.agent_id:
            self._rejected_messages.record(
                f"batch for assignment {batch.assignment_id} came from agent {session.agent_id}, "
                f"but it belongs to agent {owner}"
            )
            return False

        started_ns = time.perf_counter_ns()
        try:
            stored = await self._worker.call(
                self._store.insert_batch, batch.assignment_id, batch.seq, batch.records, identity
            )
        except StoreError as exc:
            self._store_failures.record(f"batch {batch.seq} of {batch.assignment_id}: {exc}")
            session.close("the controller could not store a result batch; reconnect and resend")
            return False
        store_s = (time.perf_counter_ns() - started_ns) / 1e9

        self._log_batch(batch, stored, store_s, identity[0], identity[3])
        if tracker is not None and batch.seq not in tracker.stored:
            # Usually a new batch. Otherwise a handler for an earlier connection stored it
            # and was cancelled before it could count it, so the count comes from the store.
            count = len(batch.records)
            if not stored:
                count = await self._worker.call(
                    self._store.batch_record_count, batch.assignment_id, batch.seq
                )
            self._count_batch(batch, tracker, count)
        run = self._runs.get(identity[0])
        if run is not None:
            await self._finish_if_done(run)
        return True

    def _log_batch(
        self, batch: pb.ResultBatch, stored: bool, store_s: float, run_id: str, target: str
    ) -> None:
        if not stored:
            log.debug(
                "batch %d of %s already stored; acknowledging again", batch.seq, batch.assignment_id
            )
            self._observers.notify(lambda o: o.batch_duplicate(batch.assignment_id, batch.seq))
            return
        log.debug(
            "stored batch %d of %s: %d records in %.1f ms",
            batch.seq,
            batch.assignment_id,
            len(batch.records),
            store_s * 1e3,
        )
        self._observers.notify(lambda o: o.batch_stored(run_id, target, batch.records, store_s))

    def _count_batch(self, batch: pb.ResultBatch, tracker: AssignmentTracker, count: int) -> None:
        tracker.add_batch(batch.seq, count)
        run = self._runs.get(tracker.run_id)
        if run is not None:
            errors = sum(1 for record in batch.records if record.error_class)
            run.counter(tracker.target).add(count, errors)

    # -- cancel and queries ----------------------------------------------------------

    async def cancel(self, run_id: str, reason: str) -> pb.RunInfo:
        """Send CancelAssignment to every agent of the run and end it CANCELLED.

        Cancelling a run that already ended changes nothing and returns its info.
        """
        run = self._runs.get(run_id)
        if run is None:
            return await self.run_info(run_id)
        reason = reason or "cancelled on request"
        for tracker in run.assignments.values():
            if not tracker.final:
                self._send_cancel(tracker, reason)
        await self._end_run(run, pb.CANCELLED, reason)
        return run.info()

    def _send_cancel(self, tracker: AssignmentTracker, reason: str) -> None:
        session = self._registry.get(tracker.agent_id)
        if session is not None:
            cancel = pb.CancelAssignment(assignment_id=tracker.assignment_id, reason=reason)
            session.send(pb.ControllerMessage(cancel=cancel))

    async def run_info(self, run_id: str) -> pb.RunInfo:
        """Return the run's RunInfo; raises RunNotFoundError for an unknown id."""
        run = self._runs.get(run_id)
        if run is not None:
            return run.info()
        row = await self._worker.call(self._store.get_run, run_id)
        if row is None:
            raise RunNotFoundError(run_id)
        assignments = await self._worker.call(self._store.assignments_for_run, run_id)
        return run_info_from_rows(row, assignments)

    async def stored_plan(self, run_id: str) -> pb.Plan:
        """Return the plan as stored, with secrets redacted."""
        row = await self._worker.call(self._store.get_run, run_id)
        if row is None:
            raise RunNotFoundError(run_id)
        return pb.Plan.FromString(row.plan)

    async def list_runs(self, limit: int) -> list[pb.RunInfo]:
        rows = await self._worker.call(
            self._store.list_runs, limit if limit > 0 else DEFAULT_LIST_LIMIT
        )
        infos = []
        for row in rows:
            run = self._runs.get(row.run_id)
            if run is not None:
                infos.append(run.info())
                continue
            assignments = await self._worker.call(self._store.assignments_for_run, row.run_id)
            infos.append(run_info_from_rows(row, assignments))
        return infos

    async def progress(self, run_id: str) -> pb.RunProgress:
        """Return per-target counts for WatchRun; rates are 0 once the run has ended."""
        run = self._runs.get(run_id)
        if run is not None:
            return self._live_progress(run)
        info = await self.run_info(run_id)
        plan = await self.stored_plan(run_id)
        counts = await self._worker.call(self._store.count_records, run_id)
        progress = pb.RunProgress(run=info, elapsed_s=_elapsed_s(info))
        for target in plan.targets:
            done, errors = counts.get(target.name, (0, 0))
            progress.targets.append(
                pb.TargetProgress(target=target.name, requests_done=done, errors=errors)
            )
        return progress

    @staticmethod
    def _live_progress(run: ActiveRun) -> pb.RunProgress:
        info = run.info()
        progress = pb.RunProgress(run=info, elapsed_s=_elapsed_s(info))
        for target in run.plan.targets:
            counter = run.counter(target.name)
            progress.targets.append(
                pb.TargetProgress(
                    target=target.name,
                    requests_done=counter.requests_done,
                    errors=counter.errors,
                    rate_per_s=counter.rate_per_s(),
                )
            )
        return progress

    # -- supervision -----------------------------------------------------------------

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self._policy.tick_s)
            for run in list(self._runs.values()):
                try:
                    await self._check_run(run)
                except StoreError as exc:
                    log.error("supervising run %s failed: %s", run.run_id, exc)
                except Exception:
                    # A bug here must not stop the supervision of every other run.
                    log.exception("supervising run %s failed", run.run_id)

    async def _check_run(self, run: ActiveRun) -> None:
        if run.ended:
            return
        now = time.perf_counter_ns()
        if run.state == pb.PENDING and time.time_ns() >= run.start_at_unix_ns:
            await self._set_running(run)
        if now >= run.deadline_perf_ns:
            await self._expire(run)
            return
        self._track_absence(run, now)
        await self._finish_if_done(run)

    def _track_absence(self, run: ActiveRun, now_perf_ns: int) -> None:
        grace_ns = int(self._policy.agent_grace_s * 1e9)
        for tracker in run.open_assignments():
            if self._registry.live_agent(tracker.agent_id) is not None:
                tracker.absent_since_perf_ns = None
                continue
            if tracker.absent_since_perf_ns is None:
                tracker.absent_since_perf_ns = now_perf_ns
                log.info(
                    "agent %s of run %s is disconnected or silent; waiting %.0f s for it to return",
                    tracker.agent_id,
                    run.run_id,
                    self._policy.agent_grace_s,
                )
            elif now_perf_ns - tracker.absent_since_perf_ns >= grace_ns:
                tracker.lost_reason = self._lost_reason(run, tracker)
                log.warning("run %s: %s", run.run_id, tracker.lost_reason)
                self._send_cancel(tracker, tracker.lost_reason)

    def _lost_reason(self, run: ActiveRun, tracker: AssignmentTracker) -> str:
        grace = f"{self._policy.agent_grace_s:g} s"
        if run.recovered and not tracker.seen_after_restart:
            return f"controller restarted; {tracker.label} did not return within {grace}"
        return f"{tracker.label} was lost: disconnected or silent for more than {grace}"

    async def _expire(self, run: ActiveRun) -> None:
        still_open = run.open_assignments()
        labels = ", ".join(t.label for t in still_open) or "none"
        reason = (
            f"run passed its deadline of {run.deadline_s:.0f} s after submission; "
            f"still open: {labels}"
        )
        for tracker in still_open:
            tracker.lost_reason = f"{tracker.label} had not finished at the run deadline"
            self._send_cancel(tracker, reason)
        await self._end_run(run, pb.PARTIAL, reason)

    async def _set_running(self, run: ActiveRun) -> None:
        run.state = pb.RUNNING
        log.info("run %s is running", run.run_id)
        await self._worker.call(self._store.update_run_state, run.run_id, pb.RUNNING, "", 0)

    async def _finish_if_done(self, run: ActiveRun) -> None:
        if not run.ended and run.all_done():
            state, reason = decide_end(run)
            await self._end_run(run, state, reason)

    async def _end_run(self, run: ActiveRun, state: int, reason: str) -> None:
        if run.ended:
            return
        run.state = state
        run.reason = reason
        run.ended_unix_ns = time.time_ns()
        self._forget(run)
        # Shielded so that a cancelled caller cannot leave the run open in the database.
        await asyncio.shield(self._persist_end(run))

        info = run.info()
        level = logging.INFO if state == pb.COMPLETED else logging.WARNING
        log.log(
            level,
            "run %s ended %s%s",
            run.run_id,
            pb.RunState.Name(state),
            f": {reason}" if reason else "",
        )
        self._observers.notify(lambda o: o.run_ended(info))

    async def _persist_end(self, run: ActiveRun) -> None:
        for tracker in run.assignments.values():
            if tracker.lost_reason:
                await self._worker.call(
                    self._store.set_assignment_message, tracker.assignment_id, tracker.lost_reason
                )
        await self._worker.call(
            self._store.update_run_state, run.run_id, run.state, run.reason, run.ended_unix_ns
        )

    def _forget(self, run: ActiveRun) -> None:
        # Batches and updates that arrive later are matched through the database.
        self._runs.pop(run.run_id, None)
        for assignment_id in run.assignments:
            self._assignments.pop(assignment_id, None)

    # -- restart recovery ------------------------------------------------------------

    async def _recover(self) -> None:
        runs = await self._worker.call(
            load_open_runs, self._store, self._deadline_s, self._policy.agent_grace_s
        )
        for run in runs:
            self._runs[run.run_id] = run
            for tracker in run.assignments.values():
                self._assignments[tracker.assignment_id] = tracker
            waiting = sorted({t.agent_id for t in run.open_assignments()})
            log.info(
                "resuming run %s after a controller restart; waiting up to %.0f s for agents: %s",
                run.run_id,
                self._policy.agent_grace_s,
                ", ".join(waiting) or "none",
            )


def _elapsed_s(info: pb.RunInfo) -> float:
    end_ns = info.ended_unix_ns or time.time_ns()
    return max(0.0, (end_ns - info.start_at_unix_ns) / 1e9)
