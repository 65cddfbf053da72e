"""Agent spans: one assignment span under the controller's run span, one span per request.

Request spans are built AFTER a request finished, from its pb.Record, with explicit start and
end times, so tracing adds nothing to the timed path. Span times are on the controller clock
(the records' wall-clock fields are already corrected by the agent's clock offset, and the
assignment span is shifted by the same offset), so a run reads as one consistent trace.

Attribute names follow the OpenTelemetry GenAI semantic conventions for inference client spans,
checked against semantic-conventions v1.41.0 (docs/gen-ai/gen-ai-spans.md, status Development)
and the attribute registry in opentelemetry-semantic-conventions 0.66b2 (schema 1.44.0), which
marks these names as moved, unchanged, to the separate semantic-conventions-genai repository.
``gen_ai.request.stream`` and ``gen_ai.usage.reasoning.output_tokens`` come from that newer
registry.

Reports are always computed from records, never from spans: sampling only thins the trace.

The same hook also feeds the GenAI client metrics (agent/metrics.py) when a metrics
exporter is configured, so the runner has one call per finished request.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from llmping import __version__
from llmping.errors import InputError
from llmping.otel import OtlpTarget, build_tracer_provider
from llmping.tls import ClientTls
from llmping.v1 import llmping_pb2 as pb

if TYPE_CHECKING:
    from llmping.agent.metrics import GenAiClientMetrics

log = logging.getLogger(__name__)

TRACE_SAMPLE_RATIO_ENV = "LLMPING_TRACE_SAMPLE_RATIO"
TRACES_VIA_CONTROLLER_ENV = "LLMPING_TRACES_VIA_CONTROLLER"
ASSIGNMENT_SPAN_NAME = "llmping.assignment"

# gen_ai.provider.name for each Provider.kind. A preset names the service more precisely.
_GENAI_PROVIDER_BY_KIND = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
}
_DEFAULT_PORT_BY_SCHEME = {"http": 80, "https": 443}
_OPEN_LOOP_MODES = (pb.LoadSpec.CONSTANT, pb.LoadSpec.POISSON)
# Fibonacci hashing spreads consecutive request indexes evenly over [0, 2**64).
_GOLDEN_RATIO_64 = 0x9E3779B97F4A7C15
_MASK_64 = (1 << 64) - 1
# Credentials that providers sometimes echo in error messages.
_SECRET_PATTERNS = (
    re.compile(r"(?i)\bbearer\s+[^\s\"',]+"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
)
_REDACTED = "[redacted]"
_MAX_ERROR_DETAIL_CHARS = 512


@dataclass(frozen=True)
class SpanIds:
    """Ids to copy into pb.Record.trace_id and span_id."""

    # 32 lowercase hex digits.
    trace_id: str
    # 16 lowercase hex digits, or empty when the request span was sampled out.
    span_id: str


def genai_provider_name(provider: pb.Provider | None) -> str:
    """Return gen_ai.provider.name for a plan provider (preset, else kind)."""
    if provider is None:
        return "unknown"
    if provider.preset:
        return provider.preset
    return _GENAI_PROVIDER_BY_KIND.get(provider.kind, provider.kind or "unknown")


def server_address_port(base_url: str) -> tuple[str, int] | None:
    """Return (host, port) of a provider base URL, dropping credentials, path and query."""
    try:
        parts = urlsplit(base_url)
        host = parts.hostname
        port = parts.port or _DEFAULT_PORT_BY_SCHEME.get(parts.scheme)
    except ValueError:
        return None
    if not host or port is None:
        return None
    return host, port


def redact_secrets(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace known secret values and bearer or sk- tokens in ``text`` with a marker."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(_REDACTED, text)
    return text


def request_sample_ratio_from_env(environ: Mapping[str, str] = os.environ) -> float:
    """Read LLMPING_TRACE_SAMPLE_RATIO (0 to 1, default 1)."""
    raw = environ.get(TRACE_SAMPLE_RATIO_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        ratio = float(raw)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise InputError(
            f"invalid {TRACE_SAMPLE_RATIO_ENV}: {raw!r}; use a number from 0 to 1, e.g. 0.1"
        )
    return ratio


def traces_via_controller(environ: Mapping[str, str] = os.environ) -> bool:
    """Return whether LLMPING_TRACES_VIA_CONTROLLER is set to send spans through the controller."""
    return environ.get(TRACES_VIA_CONTROLLER_ENV, "").strip().lower() in ("1", "true", "yes")


def controller_otlp_target(
    address: str, token: str | None, tls: ClientTls | None = None
) -> OtlpTarget:
    """Describe the controller's OTLP TraceService, on the same port as AgentService.

    With ``tls`` the exporter dials with the agent's own TLS settings, client
    certificate included.
    """
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if tls is None:
        return OtlpTarget(endpoint=address, insecure=True, headers=headers)
    return OtlpTarget(
        endpoint=address,
        insecure=False,
        headers=headers,
        credentials=tls.credentials(),
        channel_options=tls.channel_options(),
    )


class AgentTracing:
    """Span and metric hooks for one agent process, each a no-op when it is off."""

    def __init__(
        self,
        provider: TracerProvider | None,
        agent_id: str,
        request_sample_ratio: float = 1.0,
        metrics: GenAiClientMetrics | None = None,
    ) -> None:
        self.provider = provider
        self.agent_id = agent_id
        self.request_sample_ratio = request_sample_ratio
        self.metrics = metrics
        self._tracer = provider.get_tracer("llmping.agent", __version__) if provider else None

    @classmethod
    def from_env(
        cls,
        agent_id: str,
        labels: Mapping[str, str] | None = None,
        controller_address: str | None = None,
        token: str | None = None,
        tls: ClientTls | None = None,
    ) -> AgentTracing:
        """Configure spans and metrics from OTEL_* and LLMPING_TRACE_* variables.

        With LLMPING_TRACES_VIA_CONTROLLER=1 spans go to the controller at
        ``controller_address``, which forwards them, whatever OTEL_EXPORTER_OTLP_ENDPOINT is.
        """
        resource_attributes = {"service.instance.id": agent_id}
        for key, value in (labels or {}).items():
            resource_attributes[f"llmping.agent.label.{key}"] = value
        target = None
        if controller_address and traces_via_controller():
            target = controller_otlp_target(controller_address, token, tls)
        # Imported here because agent/metrics.py imports this module's helpers.
        from llmping.agent.metrics import GenAiClientMetrics

        provider = build_tracer_provider("llmping-agent", resource_attributes, target)
        metrics = GenAiClientMetrics.from_env(agent_id, labels)
        ratio = request_sample_ratio_from_env()
        return cls(provider, agent_id, ratio, metrics if metrics.enabled else None)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start_assignment(
        self, assignment: pb.Assignment, clock_offset_ns: int = 0
    ) -> AssignmentTrace:
        """Open the assignment span as a child of the run span named by assignment.traceparent."""
        return AssignmentTrace(
            self._tracer,
            assignment,
            self.agent_id,
            self.request_sample_ratio,
            clock_offset_ns,
            self.metrics,
        )

    def shutdown(self) -> None:
        """Export the queued spans and metrics and stop the export threads.

        Blocks up to the exporters' timeouts, so async callers run it in a thread.
        """
        if self.provider is not None:
            self.provider.shutdown()
        if self.metrics is not None:
            self.metrics.shutdown()


class AssignmentTrace:
    """The span of one assignment and the request spans under it."""

    def __init__(
        self,
        tracer: trace.Tracer | None,
        assignment: pb.Assignment,
        agent_id: str,
        request_sample_ratio: float,
        clock_offset_ns: int = 0,
        metrics: GenAiClientMetrics | None = None,
    ) -> None:
        self._tracer = tracer
        self._metrics = metrics
        self._agent_id = agent_id
        self._clock_offset_ns = clock_offset_ns
        self._sample_threshold = int(request_sample_ratio * (1 << 64))
        self._providers = {provider.name: provider for provider in assignment.plan.providers}
        self._target_labels = _target_labels(assignment)
        self._open_loop = assignment.plan.load.mode in _OPEN_LOOP_MODES
        self._request_spec = assignment.plan.request
        self._secrets = _known_secrets(assignment)
        self._span: trace.Span | None = None
        self._context: Context | None = None
        self.trace_id = ""
        if tracer is None:
            return

        parent = TraceContextTextMapPropagator().extract({"traceparent": assignment.traceparent})
        self._span = tracer.start_span(
            ASSIGNMENT_SPAN_NAME,
            context=parent,
            kind=SpanKind.INTERNAL,
            attributes=_assignment_attributes(assignment, agent_id, clock_offset_ns),
            start_time=time.time_ns() + clock_offset_ns,
        )
        self._context = trace.set_span_in_context(self._span)
        self.trace_id = trace.format_trace_id(self._span.get_span_context().trace_id)

    def record_request(self, record: pb.Record) -> SpanIds | None:
        """Create the span of one finished request and return the ids for the record.

        Returns None when tracing is off. A failed request is always traced; a successful
        one is traced with probability LLMPING_TRACE_SAMPLE_RATIO, and otherwise gets the
        trace id only. Every request also goes to the GenAI client metrics, when on.
        """
        if self._metrics is not None:
            self._metrics.record(record, self._providers.get(record.provider))
        if self._tracer is None or self._span is None:
            return None
        if not record.error_class and not self._sampled(record.index):
            return SpanIds(self.trace_id, "")

        start_ns, end_ns, base_ns = self._span_times(record)
        provider = self._providers.get(record.provider)
        span = self._tracer.start_span(
            f"chat {record.model or (provider.model if provider else '')}".strip(),
            context=self._context,
            kind=SpanKind.CLIENT,
            attributes=self._request_attributes(record, provider),
            start_time=start_ns,
        )
        _add_request_events(span, record, base_ns, end_ns)
        if record.error_class:
            span.set_status(Status(StatusCode.ERROR, record.error_class))
        span.end(end_time=end_ns)

        # A span the run's sampler dropped is never exported, so its id would point nowhere.
        context = span.get_span_context()
        sampled = bool(context.trace_flags & trace.TraceFlags.SAMPLED)
        return SpanIds(self.trace_id, trace.format_span_id(context.span_id) if sampled else "")

    def end(self, state: int, message: str = "", records_total: int = 0) -> None:
        """Close the assignment span with its final pb.AssignmentUpdate.State."""
        if self._span is None:
            return
        state_name = pb.AssignmentUpdate.State.Name(state)
        self._span.set_attribute("llmping.assignment.state", state_name)
        self._span.set_attribute("llmping.assignment.records_total", records_total)
        if message:
            self._span.set_attribute(
                "llmping.assignment.message", redact_secrets(message, self._secrets)
            )
        if state == pb.AssignmentUpdate.FAILED:
            self._span.set_status(Status(StatusCode.ERROR, redact_secrets(message, self._secrets)))
        self._span.end(end_time=time.time_ns() + self._clock_offset_ns)
        self._span = None

    def _sampled(self, index: int) -> bool:
        return ((index * _GOLDEN_RATIO_64) & _MASK_64) < self._sample_threshold

    def _span_times(self, record: pb.Record) -> tuple[int, int, int]:
        """Return (start, end, base) in ns: the span covers the actual send to the last byte.

        Open-loop latencies count from the scheduled start (so a late agent cannot hide a slow
        provider), closed-loop ones from the actual send: ``base`` is the instant the record's
        *_ms fields count from.
        """
        start_ns = record.start_unix_ns
        base_ns = record.scheduled_unix_ns if self._open_loop else start_ns
        if not base_ns:
            base_ns = start_ns
        end_ms = _last_known_ms(record)
        end_ns = max(start_ns, base_ns + int(end_ms * 1_000_000))
        return start_ns, end_ns, base_ns

    def _request_attributes(
        self, record: pb.Record, provider: pb.Provider | None
    ) -> dict[str, AttributeValue]:
        attributes = _genai_attributes(record, provider, self._request_spec)
        attributes.update(_network_attributes(record))
        attributes.update(_llmping_attributes(record, self._agent_id))
        attributes.update(self._target_labels)
        if record.error_class:
            attributes["error.type"] = record.error_class
            attributes["llmping.error_class"] = record.error_class
            if record.error_phase:
                attributes["llmping.error_phase"] = record.error_phase
            if record.error_detail:
                detail = redact_secrets(record.error_detail, self._secrets)
                attributes["llmping.error_detail"] = detail[:_MAX_ERROR_DETAIL_CHARS]
        return attributes


def _target_labels(assignment: pb.Assignment) -> dict[str, AttributeValue]:
    for target in assignment.plan.targets:
        if target.name == assignment.target:
            return {f"llmping.target.{key}": value for key, value in target.selector.items()}
    return {}


def _known_secrets(assignment: pb.Assignment) -> list[str]:
    """Collect the API key values this assignment may use, so spans can never contain them."""
    secrets = [value for value in assignment.provider_secrets.values() if value]
    for provider in assignment.plan.providers:
        if provider.api_key_env and os.environ.get(provider.api_key_env):
            secrets.append(os.environ[provider.api_key_env])
    return secrets


def _assignment_attributes(
    assignment: pb.Assignment, agent_id: str, clock_offset_ns: int
) -> dict[str, AttributeValue]:
    share = assignment.share
    attributes: dict[str, AttributeValue] = {
        "llmping.run.id": assignment.run_id,
        "llmping.assignment.id": assignment.assignment_id,
        "llmping.agent.id": agent_id,
        "llmping.target": assignment.target,
        "llmping.plan.name": assignment.plan.name,
        "llmping.share.agent_index": share.agent_index,
        "llmping.share.agent_count": share.agent_count,
        "llmping.share.concurrency": share.concurrency,
        "llmping.share.rate_per_s": share.rate_per_s,
        "llmping.share.request_count": share.request_count,
        "llmping.start_at_unix_ns": assignment.start_at_unix_ns,
        "llmping.clock_offset_ns": clock_offset_ns,
    }
    attributes.update(_target_labels(assignment))
    return attributes


def _last_known_ms(record: pb.Record) -> float:
    """Return e2e_ms, or for a request that failed early the latest timing it reached."""
    if record.HasField("e2e_ms"):
        return record.e2e_ms
    reached = [
        getattr(record, name)
        for name in ("ttft_ms", "ttfb_ms", "tls_ms", "connect_ms", "dns_ms")
        if record.HasField(name)
    ]
    return max(reached, default=0.0)


def _genai_attributes(
    record: pb.Record, provider: pb.Provider | None, request: pb.RequestSpec
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": genai_provider_name(provider),
        "gen_ai.request.model": record.model or (provider.model if provider else ""),
        "gen_ai.request.stream": request.stream,
    }
    if request.max_tokens:
        attributes["gen_ai.request.max_tokens"] = request.max_tokens
    if request.HasField("temperature"):
        attributes["gen_ai.request.temperature"] = request.temperature
    if record.response_model:
        attributes["gen_ai.response.model"] = record.response_model
    if record.response_id:
        attributes["gen_ai.response.id"] = record.response_id
    if record.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [record.finish_reason]
    if record.input_tokens:
        attributes["gen_ai.usage.input_tokens"] = record.input_tokens
    if record.output_tokens:
        attributes["gen_ai.usage.output_tokens"] = record.output_tokens
    if record.reasoning_tokens:
        attributes["gen_ai.usage.reasoning.output_tokens"] = record.reasoning_tokens
    address = server_address_port(provider.base_url) if provider else None
    if address:
        attributes["server.address"], attributes["server.port"] = address
    return attributes


def _network_attributes(record: pb.Record) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    if record.http_status:
        attributes["http.response.status_code"] = record.http_status
    if record.http_version:
        attributes["network.protocol.version"] = record.http_version
    if record.remote_ip:
        attributes["network.peer.address"] = record.remote_ip
    return attributes


def _llmping_attributes(record: pb.Record, agent_id: str) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "llmping.run.id": record.run_id,
        "llmping.assignment.id": record.assignment_id,
        "llmping.agent.id": record.agent_id or agent_id,
        "llmping.target": record.target,
        "llmping.provider": record.provider,
        "llmping.request.index": record.index,
        "llmping.stage_index": record.stage_index,
        "llmping.warmup": record.warmup,
        "llmping.attempt": record.attempt,
        "llmping.scheduled_start_unix_ns": record.scheduled_unix_ns,
        "llmping.start_lag_ms": record.start_lag_ms,
        "llmping.connection_reused": record.connection_reused,
        "llmping.output_tokens_estimated": record.output_tokens_estimated,
        "llmping.content_chunks": record.content_chunks,
        "llmping.bytes_received": record.bytes_received,
        "llmping.itl_count": record.itl_count,
    }
    for name in (
        "dns_ms",
        "connect_ms",
        "tls_ms",
        "ttfb_ms",
        "ttft_ms",
        "ttft_content_ms",
        "e2e_ms",
        "tpot_ms",
        "retry_after_s",
    ):
        if record.HasField(name):
            attributes[f"llmping.{name}"] = getattr(record, name)
    if record.itl_count:
        attributes["llmping.itl_mean_ms"] = record.itl_mean_ms
        attributes["llmping.itl_p90_ms"] = record.itl_p90_ms
        attributes["llmping.itl_max_ms"] = record.itl_max_ms
    return attributes


def _add_request_events(span: trace.Span, record: pb.Record, base_ns: int, end_ns: int) -> None:
    if record.HasField("ttfb_ms"):
        span.add_event("response_headers", timestamp=base_ns + int(record.ttfb_ms * 1_000_000))
    if record.HasField("ttft_ms"):
        span.add_event(
            "first_token",
            {"llmping.ttft_ms": record.ttft_ms},
            timestamp=base_ns + int(record.ttft_ms * 1_000_000),
        )
    if not record.error_class:
        span.add_event(
            "end_of_stream",
            {"llmping.output_tokens": record.output_tokens},
            timestamp=end_ns,
        )
