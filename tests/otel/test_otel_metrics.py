"""GenAI client metrics recorded from records, read back with an in-memory metric reader."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from llmping.agent.metrics import DURATION_BUCKETS_S, GenAiClientMetrics
from llmping.agent.tracing import AgentTracing
from llmping.v1 import llmping_pb2 as pb


def _points(reader: InMemoryMetricReader) -> dict[str, list[HistogramDataPoint]]:
    data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[HistogramDataPoint]] = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                points[metric.name] = [
                    point
                    for point in metric.data.data_points
                    if isinstance(point, HistogramDataPoint)
                ]
    return points


def _attribute(point: HistogramDataPoint, key: str) -> object:
    return (point.attributes or {}).get(key)


def _provider() -> pb.Provider:
    return pb.Provider(
        name="relay-a", kind="openai", base_url="https://relay.example.test/v1", model="gpt-4o"
    )


def test_histograms_from_records(make_record: Callable[..., pb.Record]) -> None:
    reader = InMemoryMetricReader()
    metrics = GenAiClientMetrics(MeterProvider(metric_readers=[reader]))
    metrics.record(make_record(itl_count=10, itl_mean_ms=20.0), _provider())
    metrics.record(make_record(index=1, e2e_ms=1100.0), _provider())

    points = _points(reader)
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.count == 2
    assert abs(duration.sum - 2.0) < 1e-9
    assert tuple(duration.explicit_bounds) == DURATION_BUCKETS_S
    assert _attribute(duration, "gen_ai.operation.name") == "chat"
    assert _attribute(duration, "gen_ai.provider.name") == "openai"
    assert _attribute(duration, "gen_ai.request.model") == "gpt-4o"
    assert _attribute(duration, "server.address") == "relay.example.test"
    assert _attribute(duration, "server.port") == 443

    (first_chunk,) = points["gen_ai.client.operation.time_to_first_chunk"]
    assert first_chunk.count == 2
    assert abs(first_chunk.sum - 0.5) < 1e-9
    (per_chunk,) = points["gen_ai.client.operation.time_per_output_chunk"]
    assert per_chunk.count == 1
    assert abs(per_chunk.sum - 0.02) < 1e-9

    tokens = {
        _attribute(point, "gen_ai.token.type"): point
        for point in points["gen_ai.client.token.usage"]
    }
    assert tokens["input"].sum == 34
    assert tokens["output"].sum == 84


def test_errors_and_estimated_tokens(make_record: Callable[..., pb.Record]) -> None:
    reader = InMemoryMetricReader()
    metrics = GenAiClientMetrics(MeterProvider(metric_readers=[reader]))
    failed = make_record(error_class="http_502")
    failed.ClearField("ttft_ms")
    metrics.record(failed, _provider())
    metrics.record(make_record(index=1, output_tokens_estimated=True), _provider())

    points = _points(reader)
    durations = {
        _attribute(point, "error.type") or "": point
        for point in points["gen_ai.client.operation.duration"]
    }
    assert durations["http_502"].count == 1
    assert durations[""].count == 1
    (first_chunk,) = points["gen_ai.client.operation.time_to_first_chunk"]
    assert first_chunk.count == 1
    token_types = {
        _attribute(point, "gen_ai.token.type") for point in points["gen_ai.client.token.usage"]
    }
    # The estimated count of the second record is left out; the first has a real one.
    assert token_types == {"input", "output"}
    output = next(
        point
        for point in points["gen_ai.client.token.usage"]
        if _attribute(point, "gen_ai.token.type") == "output"
    )
    assert output.count == 1


def test_metrics_off_without_provider(make_record: Callable[..., pb.Record]) -> None:
    metrics = GenAiClientMetrics.from_env("agent-1", {"region": "tokyo"})
    assert not metrics.enabled
    metrics.record(make_record(), _provider())
    metrics.shutdown()


def test_request_hook_feeds_metrics_without_tracing(
    make_assignment: Callable[..., pb.Assignment], make_record: Callable[..., pb.Record]
) -> None:
    reader = InMemoryMetricReader()
    metrics = GenAiClientMetrics(MeterProvider(metric_readers=[reader]))
    tracing = AgentTracing(None, "agent-tokyo-1", metrics=metrics)
    trace = tracing.start_assignment(make_assignment())
    assert trace.record_request(make_record()) is None

    (duration,) = _points(reader)["gen_ai.client.operation.duration"]
    assert duration.count == 1
    # The plan's provider relay-a is openai_compatible on relay.example.test:8443.
    assert _attribute(duration, "gen_ai.provider.name") == "openai_compatible"
    assert _attribute(duration, "server.port") == 8443
    tracing.shutdown()


def test_metrics_on_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    tracing = AgentTracing.from_env("agent-1", {"region": "tokyo"})
    assert tracing.metrics is not None
    assert tracing.metrics.enabled
    assert not tracing.enabled
    tracing.shutdown()
