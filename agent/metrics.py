"""GenAI client metrics from finished requests, exported over OTLP when configured.

Instrument names, units and bucket boundaries follow the OpenTelemetry GenAI semantic
conventions for client metrics, checked against semantic-conventions v1.41.0
(docs/gen-ai/gen-ai-metrics.md, status Development). Metrics are on only when
OTEL_METRICS_EXPORTER or OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set; otherwise
:meth:`GenAiClientMetrics.record` returns at once.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.util.types import AttributeValue

from llmping import __version__
from llmping.agent.tracing import genai_provider_name, server_address_port
from llmping.otel import build_meter_provider
from llmping.v1 import llmping_pb2 as pb

# Bucket boundaries the conventions give for the duration and chunk-timing histograms (s).
DURATION_BUCKETS_S = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
TOKEN_BUCKETS = tuple(4**power for power in range(14))


class GenAiClientMetrics:
    """The four GenAI client histograms, a no-op without a meter provider."""

    def __init__(self, provider: MeterProvider | None) -> None:
        self.provider = provider
        self._duration: Histogram | None = None
        if provider is None:
            return
        meter = provider.get_meter("llmping.agent", __version__)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self._time_to_first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time from sending the request to the first text-carrying chunk.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self._time_per_output_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            unit="s",
            description="Mean gap between text-carrying chunks after the first, per request.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS_S,
        )
        self._token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )

    @classmethod
    def from_env(cls, agent_id: str, labels: Mapping[str, str] | None = None) -> GenAiClientMetrics:
        """Configure from the OTEL_METRICS_* variables, a no-op when none is set."""
        resource_attributes = {"service.instance.id": agent_id}
        for key, value in (labels or {}).items():
            resource_attributes[f"llmping.agent.label.{key}"] = value
        return cls(build_meter_provider("llmping-agent", resource_attributes))

    @property
    def enabled(self) -> bool:
        return self._duration is not None

    def record(self, record: pb.Record, provider: pb.Provider | None) -> None:
        """Add one finished request to the histograms."""
        if self._duration is None:
            return
        attributes = _metric_attributes(record, provider)
        if record.HasField("e2e_ms"):
            self._duration.record(record.e2e_ms / 1000, attributes)
        if record.HasField("ttft_ms"):
            self._time_to_first_chunk.record(record.ttft_ms / 1000, attributes)
        if record.itl_count:
            # NOTE: a record keeps only summary statistics of its chunk gaps, so each request
            # adds its mean gap once: the histogram counts requests, not chunks.
            self._time_per_output_chunk.record(record.itl_mean_ms / 1000, attributes)
        self._record_tokens(record, attributes)

    def shutdown(self) -> None:
        """Export what is left and stop the export thread."""
        if self.provider is not None:
            self.provider.shutdown()

    def _record_tokens(self, record: pb.Record, attributes: dict[str, AttributeValue]) -> None:
        if record.input_tokens:
            self._token_usage.record(
                record.input_tokens, {**attributes, "gen_ai.token.type": "input"}
            )
        # The conventions forbid reporting counts the client only estimated.
        if record.output_tokens and not record.output_tokens_estimated:
            self._token_usage.record(
                record.output_tokens, {**attributes, "gen_ai.token.type": "output"}
            )


def _metric_attributes(
    record: pb.Record, provider: pb.Provider | None
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": genai_provider_name(provider),
        "gen_ai.request.model": record.model,
        "llmping.provider": record.provider,
        "llmping.target": record.target,
    }
    if record.response_model:
        attributes["gen_ai.response.model"] = record.response_model
    address = server_address_port(provider.base_url) if provider else None
    if address:
        attributes["server.address"], attributes["server.port"] = address
    if record.error_class:
        attributes["error.type"] = record.error_class
    return attributes
