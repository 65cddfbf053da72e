"""Run one Assignment: resolve keys, wait for the common start, drive every provider.

Every provider of the plan gets its own lane (an executor and a load driver), and all
lanes run at the same time, each at this agent's full share: the plan's load applies
per provider. The runner fills each record's identity fields, streams the records in
batches and ends with exactly one final AssignmentUpdate (FINISHED, FAILED or
CANCELLED) once every batch has been handed to the connection.

A request that failed inside the agent (its error_class is one of
errors.LOCAL_FAILURES) never reached the provider, so it is not a record: the runner
counts it in AgentDiagnosis.requests_failed_locally instead.

Each lane has a LaneBreaker (see retry.py). After a few records in a row whose error
class shows that the provider does not offer the model or rejects the key, the lane
sends nothing more. The records already made are kept, so the report can show the
model as not available, and the diagnosis verdict names the stopped provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from llmping.agent.batches import FLUSH_INTERVAL_S, BatchAssembler
from llmping.agent.caps import CapChoice, choose_cap
from llmping.agent.clock import ClockEstimator, ClockMapping
from llmping.agent.diagnosis import (
    AssignmentDiagnosis,
    HealthMonitor,
    LoadShortfall,
    LocalFailures,
    ProviderStop,
)
from llmping.agent.driver import (
    ClosedLoopDriver,
    LoadDriver,
    OpenLoopDriver,
    sleep_until,
    spin_window_ns,
)
from llmping.agent.errors import CANCELLED, LOCAL_FAILURES
from llmping.agent.keys import resolve_api_keys
from llmping.agent.load import Arrival, LoadSpecError, OpenLoop, arrival_seed, build_model
from llmping.agent.request import RequestExecutor
from llmping.agent.retry import LaneBreaker, RetryRule
from llmping.agent.tracing import AgentTracing, AssignmentTrace
from llmping.errors import LlmpingError
from llmping.v1 import llmping_pb2 as pb

log = logging.getLogger(__name__)

State = pb.AssignmentUpdate.State

# A start more than this late (clock offset, slow delivery) is logged.
LATE_START_WARNING_MS = 50.0
# The controller starts runs a few seconds ahead; a much later start hints at a clock
# problem, which is logged.
FAR_START_WARNING_S = 30.0
# How long a runner waits for the first heartbeat reply before reading start_at.
CLOCK_ESTIMATE_WAIT_S = 2.0


class Executor(Protocol):
    """The request executor interface (llmping.agent.request.RequestExecutor)."""

    async def start(self) -> None: ...

    async def execute(
        self, record: pb.Record, scheduled_perf_ns: int, measure_from_scheduled: bool
    ) -> None: ...

    async def close(self) -> None: ...


# (provider, request, timeouts, api_key, proxy_url) -> executor
ExecutorFactory = Callable[
    [pb.Provider, pb.RequestSpec, pb.Timeouts, str | None, str | None], Executor
]


def default_executor_factory(
    provider: pb.Provider,
    request: pb.RequestSpec,
    timeouts: pb.Timeouts,
    api_key: str | None,
    proxy_url: str | None,
) -> Executor:
    """Build the real RequestExecutor; raises PlanError for an invalid provider or proxy."""
    return RequestExecutor(provider, request, timeouts, api_key, proxy_url=proxy_url)


class AgentLink(Protocol):
    """Channel from a runner to the controller: assignment updates and result batches."""

    def send_update(self, update: pb.AssignmentUpdate) -> None: ...

    def send_batch(self, message: pb.AgentMessage) -> None: ...


@dataclass(frozen=True)
class RunnerContext:
    """Agent-wide things every runner uses."""

    agent_id: str
    link: AgentLink
    clock: ClockEstimator
    health: HealthMonitor
    env: Mapping[str, str]
    proxy_url: str | None = None
    executor_factory: ExecutorFactory = default_executor_factory
    tracing: AgentTracing | None = None


@dataclass
class Lane:
    """One provider of the assignment: its executor and its load driver."""

    provider: pb.Provider
    executor: Executor
    driver: LoadDriver
    breaker: LaneBreaker


@dataclass(frozen=True)
class Outcome:
    """The final state of an assignment and the message that goes with it."""

    state: pb.AssignmentUpdate.State
    message: str


def trace_id_from_traceparent(traceparent: str) -> str:
    """Return the trace id of a W3C traceparent (``00-<trace>-<span>-<flags>``), or ""."""
    parts = traceparent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32:
        return parts[1]
    return ""


class AssignmentRunner:
    """Runs one assignment from ACCEPTED to its final update."""

    def __init__(self, assignment: pb.Assignment, context: RunnerContext) -> None:
        self.assignment = assignment
        self.assignment_id = assignment.assignment_id
        self._ctx = context
        self._lanes: list[Lane] = []
        self._assembler = BatchAssembler(self.assignment_id, context.link.send_batch)
        self._diagnosis: AssignmentDiagnosis | None = None
        self._mapping: ClockMapping | None = None
        self._cancel_requested = asyncio.Event()
        self._cancel_reason = ""
        self._next_index = 0
        self._trace: AssignmentTrace | None = None
        # Used when tracing is off, so records still name the run's trace.
        self._run_trace_id = trace_id_from_traceparent(assignment.traceparent)
        self._agent_failures = 0
        self._local_failures = LocalFailures(self.assignment_id)
        # The in-flight cap the agent chose itself because the plan set none; 0 otherwise.
        self._default_cap = 0
        self.done = False

    @property
    def in_flight(self) -> int:
        """Requests of this assignment in flight now."""
        return sum(lane.driver.counters.in_flight for lane in self._lanes)

    def cancel(self, reason: str) -> None:
        """Stop starting requests, cancel those in flight and end as CANCELLED."""
        if not self._cancel_requested.is_set():
            self._cancel_reason = reason or "cancelled by the controller"
            self._cancel_requested.set()

    async def run(self) -> None:
        """Run the assignment and send its final update. Raises only CancelledError."""
        try:
            outcome = await self._run_steps()
        except asyncio.CancelledError:
            self._finish(Outcome(State.CANCELLED, "agent stopped"))
            raise
        except Exception as exc:
            # A bug in the agent must end this assignment visibly, not the agent.
            log.exception("assignment %s failed inside the agent", self.assignment_id)
            outcome = Outcome(State.FAILED, f"internal error in agent {self._ctx.agent_id}: {exc}")
        self._finish(outcome)

    async def _run_steps(self) -> Outcome:
        try:
            self._lanes = self._build_lanes()
        except LlmpingError as exc:
            # A missing API key, an unusable load or an invalid provider or proxy.
            return Outcome(State.FAILED, str(exc))
        if self._ctx.tracing is not None:
            self._trace = self._ctx.tracing.start_assignment(
                self.assignment, self._ctx.clock.offset_ns
            )
        self._send_update(State.ACCEPTED, self._describe_lanes())
        log.info(
            "assignment %s of run %s accepted: target %s, %s",
            self.assignment_id,
            self.assignment.run_id,
            self.assignment.target,
            self._describe_lanes(),
        )

        try:
            for lane in self._lanes:
                try:
                    await lane.executor.start()
                except LlmpingError as exc:
                    return Outcome(State.FAILED, f"provider {lane.provider.name}: {exc}")
            start_ns = await self._wait_for_start()
            if start_ns is None:
                return Outcome(State.CANCELLED, self._cancel_reason)
            self._send_update(State.RUNNING, "")
            log.info("assignment %s running", self.assignment_id)
            if await self._drive(start_ns):
                return Outcome(State.CANCELLED, self._cancel_reason)
            return Outcome(State.FINISHED, self._finished_message())
        finally:
            await self._close_executors()

    def _build_lanes(self) -> list[Lane]:
        """Create one executor and one driver per provider, before anything is sent."""
        plan = self.assignment.plan
        keys = resolve_api_keys(self.assignment, self._ctx.agent_id, self._ctx.env)
        retry = RetryRule.from_pb(plan.load.retry)
        overflow = plan.load.overflow or "delay"
        if overflow not in ("delay", "drop"):
            raise LoadSpecError(f"load overflow {overflow!r} is not 'delay' or 'drop'")

        cap = choose_cap(plan.load, self.assignment.share, len(plan.providers), overflow)
        lanes = []
        for provider in plan.providers:
            executor = self._ctx.executor_factory(
                provider, plan.request, plan.timeouts, keys[provider.name], self._ctx.proxy_url
            )
            breaker = LaneBreaker()
            send = functools.partial(self._attempt, provider, executor, breaker)
            seed = arrival_seed(plan.load, self.assignment.share)
            model = build_model(plan.load, self.assignment.share, seed=seed)
            driver: LoadDriver
            if isinstance(model, OpenLoop):
                self._note_default_cap(cap)
                driver = OpenLoopDriver(
                    model, send, retry, cap.max_in_flight, cap.overflow, breaker=breaker
                )
            else:
                driver = ClosedLoopDriver(model, send, retry, breaker=breaker)
            lanes.append(Lane(provider, executor, driver, breaker))
        return lanes

    def _note_default_cap(self, cap: CapChoice) -> None:
        if not cap.is_default or self._default_cap:
            return
        self._default_cap = cap.max_in_flight
        log.info(
            "assignment %s: the plan sets no load.max_in_flight, so each provider is capped "
            "at %d requests in flight (from the open-file limit); arrivals over it are dropped",
            self.assignment_id,
            cap.max_in_flight,
        )

    def _describe_lanes(self) -> str:
        return ", ".join(f"{lane.provider.name} {lane.driver.model.label}" for lane in self._lanes)

    async def _wait_for_start(self) -> int | None:
        """Wait for start_at on the local clock; return the start, or None if cancelled."""
        if self.assignment.start_at_unix_ns:
            await self._wait_for_clock_estimate()
        self._mapping = self._ctx.clock.mapping()
        self._diagnosis = AssignmentDiagnosis(self._ctx.health)
        now_ns = self._mapping.perf_ns
        if not self.assignment.start_at_unix_ns:
            return now_ns

        start_ns = self._mapping.controller_unix_to_perf_ns(self.assignment.start_at_unix_ns)
        wait_s = (start_ns - now_ns) / 1e9
        offset_ms = self._mapping.offset_ns / 1e6
        if wait_s < 0:
            if -wait_s * 1e3 > LATE_START_WARNING_MS:
                log.warning(
                    "assignment %s: start_at passed %.0f ms ago (clock offset %.1f ms); "
                    "starting now",
                    self.assignment_id,
                    -wait_s * 1e3,
                    offset_ms,
                )
            return now_ns
        if wait_s > FAR_START_WARNING_S:
            log.warning(
                "assignment %s starts in %.0f s by this agent's clock (clock offset %.1f ms); "
                "if that is unexpected, check the clocks of the agent and the controller",
                self.assignment_id,
                wait_s,
                offset_ms,
            )
        try:
            await asyncio.wait_for(self._cancel_requested.wait(), wait_s)
        except TimeoutError:
            # uvloop's millisecond timers can fire a little early, and the load must not
            # begin before its start.
            await sleep_until(start_ns, spin_window_ns())
            return start_ns
        return None

    async def _wait_for_clock_estimate(self) -> None:
        """Give the first heartbeat reply a moment, so start_at is not read with offset 0."""
        if not await self._ctx.clock.wait_for_estimate(CLOCK_ESTIMATE_WAIT_S):
            log.warning(
                "assignment %s: no clock offset estimate after %.0f s; reading start_at "
                "as if the clocks agreed",
                self.assignment_id,
                CLOCK_ESTIMATE_WAIT_S,
            )

    async def _drive(self, start_ns: int) -> bool:
        """Run every lane until done or cancelled; return True if cancelled."""
        flusher = asyncio.create_task(self._flush_periodically())
        lanes = asyncio.gather(*(lane.driver.run(start_ns) for lane in self._lanes))
        cancel_wait = asyncio.create_task(self._cancel_requested.wait())
        waiters: set[asyncio.Future[Any]] = {lanes, cancel_wait}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if lanes.done():
                lanes.result()
                return False
            return True
        finally:
            cancel_wait.cancel()
            if not lanes.done():
                lanes.cancel()
                # Drivers record their in-flight requests as cancelled before they return.
                with contextlib.suppress(asyncio.CancelledError):
                    await lanes
            flusher.cancel()
            self._assembler.flush()

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            self._assembler.flush()

    async def _close_executors(self) -> None:
        for lane in self._lanes:
            try:
                await lane.executor.close()
            except Exception:
                log.exception(
                    "assignment %s: closing the executor of provider %s failed",
                    self.assignment_id,
                    lane.provider.name,
                )

    async def _attempt(
        self,
        provider: pb.Provider,
        executor: Executor,
        breaker: LaneBreaker,
        arrival: Arrival,
        attempt: int,
        measure_from_scheduled: bool,
    ) -> str:
        """Send one attempt, store its record and return its error class.

        An attempt that failed inside the agent is counted, not stored, and its internal
        marker is returned so that it is not retried.
        """
        record = self._new_record(provider, arrival, attempt)
        try:
            await executor.execute(record, arrival.scheduled_ns, measure_from_scheduled)
        except asyncio.CancelledError:
            record.error_class = CANCELLED
            self._store(record)
            raise
        except Exception:
            # The executor promises never to raise, so this is a bug in it. Keep the
            # record only if the executor had already classified the failure: an
            # unclassified record would pass for a success.
            self._count_agent_failure(provider)
            if not record.error_class:
                return ""
        if record.error_class in LOCAL_FAILURES:
            self._local_failures.add(record)
            return record.error_class
        self._store(record)
        if breaker.add(record.error_class, record.error_detail):
            self._log_lane_stop(provider, breaker)
        return record.error_class

    def _log_lane_stop(self, provider: pb.Provider, breaker: LaneBreaker) -> None:
        stop = breaker.stop
        assert stop is not None
        log.warning(
            "assignment %s: stopped sending to provider %s (model %s) after %d consecutive "
            "%s responses, which retrying will not change; the provider returned: %s",
            self.assignment_id,
            provider.name,
            provider.model,
            stop.failures,
            " or ".join(stop.error_classes),
            stop.detail or "no message",
        )

    def _new_record(self, provider: pb.Provider, arrival: Arrival, attempt: int) -> pb.Record:
        assert self._mapping is not None
        record = pb.Record(
            run_id=self.assignment.run_id,
            assignment_id=self.assignment_id,
            agent_id=self._ctx.agent_id,
            target=self.assignment.target,
            provider=provider.name,
            model=provider.model,
            stage_index=arrival.stage_index,
            warmup=arrival.warmup,
            scheduled_unix_ns=self._mapping.perf_to_controller_unix_ns(arrival.scheduled_ns),
            attempt=attempt,
            trace_id=self._run_trace_id,
            clock_offset_ns=self._mapping.offset_ns,
        )
        return record

    def _store(self, record: pb.Record) -> None:
        # Numbered when stored, not when sent, so that the attempts that failed inside
        # the agent leave no gaps in 0, 1, 2, ...
        record.index = self._next_index
        self._next_index += 1
        record.start_unix_ns = record.scheduled_unix_ns + round(record.start_lag_ms * 1e6)
        if self._trace is not None:
            # The span is built from the finished record, off the timed path.
            span_ids = self._trace.record_request(record)
            if span_ids is not None:
                record.trace_id = span_ids.trace_id or record.trace_id
                record.span_id = span_ids.span_id
        if self._diagnosis is not None:
            self._diagnosis.add_start_lag(record.start_lag_ms)
        self._assembler.add(record)

    def _count_agent_failure(self, provider: pb.Provider) -> None:
        self._agent_failures += 1
        if self._agent_failures == 1:
            log.exception(
                "assignment %s: request to provider %s raised inside the agent",
                self.assignment_id,
                provider.name,
            )
        else:
            log.debug(
                "assignment %s: %d requests raised inside the agent so far",
                self.assignment_id,
                self._agent_failures,
            )

    def _finished_message(self) -> str:
        message = f"{self._assembler.records_total} records"
        if self._agent_failures:
            message += (
                f"; {self._agent_failures} requests failed inside agent "
                f"{self._ctx.agent_id}, see its log"
            )
        return message

    def _shortfall(self) -> LoadShortfall:
        counters = [lane.driver.counters for lane in self._lanes]
        return LoadShortfall(
            delayed_by_cap=sum(c.delayed_by_cap for c in counters),
            dropped_by_cap=sum(c.dropped_by_cap for c in counters),
            dropped_at_window_end=sum(c.dropped_at_window_end for c in counters),
            default_cap=self._default_cap,
            failed_locally=self._local_failures.counts,
            stops=[
                ProviderStop(
                    provider=lane.provider.name,
                    failures=lane.breaker.stop.failures,
                    error_classes=lane.breaker.stop.error_classes,
                    not_sent=lane.driver.counters.not_sent_after_stop,
                )
                for lane in self._lanes
                if lane.breaker.stop is not None
            ],
        )

    def _send_update(self, state: pb.AssignmentUpdate.State, message: str) -> None:
        self._ctx.link.send_update(
            pb.AssignmentUpdate(assignment_id=self.assignment_id, state=state, message=message)
        )

    def _finish(self, outcome: Outcome) -> None:
        """Send the final update; every batch has been submitted by now."""
        if self.done:
            return
        self.done = True
        self._assembler.flush()
        diagnosis = (
            self._diagnosis.finish(self._shortfall())
            if self._diagnosis is not None
            else pb.AgentDiagnosis()
        )
        update = pb.AssignmentUpdate(
            assignment_id=self.assignment_id,
            state=outcome.state,
            message=outcome.message,
            final_batch_seq=self._assembler.last_seq,
            records_total=self._assembler.records_total,
            diagnosis=diagnosis,
        )
        self._ctx.link.send_update(update)
        if self._trace is not None:
            self._trace.end(outcome.state, outcome.message, self._assembler.records_total)
        log.log(
            logging.INFO if outcome.state == State.FINISHED else logging.WARNING,
            "assignment %s of run %s %s: %s (%d records in %d batches)%s",
            self.assignment_id,
            self.assignment.run_id,
            State.Name(outcome.state),
            outcome.message,
            self._assembler.records_total,
            self._assembler.last_seq,
            f"; {diagnosis.verdict}" if diagnosis.verdict else "",
        )
