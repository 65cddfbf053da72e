"""The controller's run span, and the wiring of tracing, span forwarding and Prometheus.

The run span is the root of the one trace that covers a run in every region.

:meth:`ControllerTracing.start_run` opens the span ``llmping.run`` when a run is created and
returns its W3C traceparent, which goes into every Assignment so the agents' assignment and
request spans join the same trace. The span ends when the run reaches a final state
(``run_ended``, as a ControllerObserver).

With tracing off the controller still hands out a fresh traceparent (sampled flag set), so
agents that export spans on their own still group a run under one trace id.

:class:`ControllerTelemetry` bundles the run spans, the OTLP TraceService that forwards the
agents' spans (controller/otlp_forward.py) and the Prometheus endpoint
(controller/prometheus.py), so the server adds them in a few calls.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from llmping import __version__
from llmping.errors import InputError
from llmping.otel import build_tracer_provider
from llmping.v1 import llmping_pb2 as pb

from .observers import ControllerObserver
from .otlp_forward import TraceForwarder, add_trace_service, forward_target_from_env
from .prometheus import ControllerMetrics, MetricsServer, start_metrics_server

log = logging.getLogger(__name__)

RUN_SPAN_NAME = "llmping.run"
_ERROR_RUN_STATES = frozenset({pb.FAILED, pb.PARTIAL})


class RunTraceIds(NamedTuple):
    """The ids of a run's root span, for RunInfo.trace_id and Assignment.traceparent."""

    # 32 lowercase hex digits.
    trace_id: str
    # W3C traceparent header value: 00-<trace id>-<span id>-<flags>.
    traceparent: str


class ControllerTracing(ControllerObserver):
    """Run spans of one controller process, recorded only when tracing is on."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("llmping.controller", __version__) if provider else None
        self._spans: dict[str, trace.Span] = {}

    @classmethod
    def from_env(cls) -> ControllerTracing:
        """Configure from the OTEL_* variables. Tracing is off when none is set."""
        return cls(build_tracer_provider("llmping-controller"))

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start_run(self, run_id: str, plan: pb.Plan) -> RunTraceIds:
        """Open the run span and return its ids."""
        if self._tracer is None:
            return _unrecorded_run_ids()
        span = self._tracer.start_span(
            RUN_SPAN_NAME,
            context=trace.set_span_in_context(trace.INVALID_SPAN),
            kind=SpanKind.INTERNAL,
            attributes=_run_attributes(run_id, plan),
        )
        self._spans[run_id] = span
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier, trace.set_span_in_context(span))
        trace_id = trace.format_trace_id(span.get_span_context().trace_id)
        return RunTraceIds(trace_id, carrier.get("traceparent", ""))

    def run_started(self, run: pb.RunInfo) -> None:
        span = self._spans.get(run.run_id)
        if span is not None:
            span.set_attribute("llmping.run.assignments", len(run.assignments))
            span.set_attribute("llmping.run.start_at_unix_ns", run.start_at_unix_ns)

    def run_ended(self, run: pb.RunInfo) -> None:
        span = self._spans.pop(run.run_id, None)
        if span is None:
            return
        state_name = pb.RunState.Name(run.state)
        span.set_attribute("llmping.run.state", state_name)
        if run.reason:
            span.set_attribute("llmping.run.reason", run.reason)
        if run.state in _ERROR_RUN_STATES:
            span.set_status(Status(StatusCode.ERROR, f"{state_name}: {run.reason}"))
        span.end()

    def shutdown(self) -> None:
        """End the spans of runs still open, then export what is queued."""
        # NOTE: a run still open at shutdown keeps its trace id, but its run span ends here;
        # a restarted controller cannot reopen it.
        for span in self._spans.values():
            span.set_attribute("llmping.run.state", "OPEN_AT_SHUTDOWN")
            span.end()
        self._spans.clear()
        if self.provider is not None:
            self.provider.shutdown()


def _unrecorded_run_ids() -> RunTraceIds:
    trace_id = secrets.randbits(128) or 1
    span_id = secrets.randbits(64) or 1
    trace_hex = trace.format_trace_id(trace_id)
    return RunTraceIds(trace_hex, f"00-{trace_hex}-{trace.format_span_id(span_id)}-01")


def _run_attributes(run_id: str, plan: pb.Plan) -> dict[str, AttributeValue]:
    load = plan.load
    return {
        "llmping.run.id": run_id,
        "llmping.plan.name": plan.name,
        "llmping.plan.providers": [provider.name for provider in plan.providers],
        "llmping.plan.targets": [target.name for target in plan.targets],
        "llmping.load.mode": pb.LoadSpec.Mode.Name(load.mode),
        "llmping.load.concurrency": load.concurrency,
        "llmping.load.rate_per_s": load.rate_per_s,
        "llmping.load.duration_s": load.duration_s,
        "llmping.load.request_count": load.request_count,
        "llmping.load.stages": len(load.stages),
    }


@dataclass
class ControllerTelemetry:
    """Run spans, forwarding of agents' spans and the Prometheus endpoint of one controller.

    Use: ``from_config`` before the gRPC server starts, ``add_services`` on the server,
    ``start`` once the server is bound, ``stop`` when the controller stops.
    """

    tracing: ControllerTracing
    forwarder: TraceForwarder
    token: str = ""
    metrics: ControllerMetrics | None = None
    # HOST:PORT for /metrics, or empty for no metrics endpoint.
    metrics_listen: str = ""
    metrics_server: MetricsServer | None = field(default=None, init=False)

    @classmethod
    def from_config(cls, token: str = "", metrics_listen: str = "") -> ControllerTelemetry:
        """Configure from the OTEL_* variables and the controller's flags.

        Raises InputError for invalid OTEL_* values.
        """
        return cls(
            tracing=ControllerTracing.from_env(),
            forwarder=TraceForwarder(forward_target_from_env()),
            token=token,
            metrics=ControllerMetrics() if metrics_listen else None,
            metrics_listen=metrics_listen,
        )

    @property
    def observers(self) -> list[ControllerObserver]:
        """The observers to pass to the controller's ObserverGroup."""
        observers: list[ControllerObserver] = [self.tracing]
        if self.metrics is not None:
            observers.append(self.metrics)
        return observers

    def add_services(self, server: grpc.aio.Server) -> None:
        """Serve the OTLP TraceService on the controller's gRPC server."""
        add_trace_service(server, self.forwarder, self.token or None)

    async def start(self) -> None:
        """Start forwarding spans and serving /metrics."""
        await self.forwarder.start()
        if self.metrics is None or not self.metrics_listen:
            return
        host, _, port = self.metrics_listen.rpartition(":")
        try:
            self.metrics_server = await start_metrics_server(
                self.metrics, host.strip("[]"), int(port)
            )
        except (OSError, ValueError) as error:
            raise InputError(
                f"cannot serve metrics on --metrics-listen {self.metrics_listen}: {error}; "
                "choose a free port or another address"
            ) from error

    async def stop(self) -> None:
        """Stop serving /metrics, forward queued spans and export the last run spans."""
        if self.metrics_server is not None:
            await self.metrics_server.close()
        await self.forwarder.close()
        # shutdown() blocks until the exporter thread has sent what is queued.
        await asyncio.to_thread(self.tracing.shutdown)
