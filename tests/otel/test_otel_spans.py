"""Run, assignment and request spans built from records, checked in an in-memory exporter."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

from llmping.agent.tracing import (
    AgentTracing,
    SpanIds,
    genai_provider_name,
    redact_secrets,
    server_address_port,
)
from llmping.controller.tracing import ControllerTracing
from llmping.v1 import llmping_pb2 as pb

MemorySpans = tuple[TracerProvider, InMemorySpanExporter]
RELAY_KEY = "sk-relay-secret-key-0123456789"


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def _run_with_requests(
    memory_spans: MemorySpans,
    make_assignment: Callable[..., pb.Assignment],
    records: list[pb.Record],
    mode: int = pb.LoadSpec.CLOSED,
) -> list[SpanIds | None]:
    provider, _ = memory_spans
    controller = ControllerTracing(provider)
    run_ids = controller.start_run("run-1", make_assignment().plan)
    assignment = make_assignment(traceparent=run_ids.traceparent, mode=mode)
    trace = AgentTracing(provider, "agent-tokyo-1").start_assignment(assignment)
    results = [trace.record_request(record) for record in records]
    trace.end(pb.AssignmentUpdate.FINISHED, records_total=len(records))
    controller.run_ended(pb.RunInfo(run_id="run-1", state=pb.COMPLETED))
    return results


def test_run_assignment_request_tree(
    memory_spans: MemorySpans,
    make_assignment: Callable[..., pb.Assignment],
    make_record: Callable[..., pb.Record],
) -> None:
    records = [make_record(index=i) for i in range(3)]
    ids = _run_with_requests(memory_spans, make_assignment, records)
    spans = memory_spans[1].get_finished_spans()

    (run,) = _by_name(spans, "llmping.run")
    (assignment,) = _by_name(spans, "llmping.assignment")
    requests = _by_name(spans, "chat gpt-4o")
    assert len(requests) == 3
    assert run.parent is None
    assert assignment.parent is not None
    assert assignment.parent.span_id == run.context.span_id
    for request in requests:
        assert request.parent is not None
        assert request.parent.span_id == assignment.context.span_id
        assert request.context.trace_id == run.context.trace_id
        assert request.kind == SpanKind.CLIENT

    trace_hex = format_trace_id(run.context.trace_id)
    returned = {(span_ids.trace_id, span_ids.span_id) for span_ids in ids if span_ids}
    exported = {(trace_hex, format_span_id(r.context.span_id)) for r in requests}
    assert returned == exported
    assert run.attributes is not None
    assert run.attributes["llmping.run.id"] == "run-1"
    assert run.attributes["llmping.plan.name"] == "relay-compare"
    assert run.attributes["llmping.run.state"] == "COMPLETED"


def test_request_span_attributes(
    memory_spans: MemorySpans,
    make_assignment: Callable[..., pb.Assignment],
    make_record: Callable[..., pb.Record],
) -> None:
    record = make_record()
    _run_with_requests(memory_spans, make_assignment, [record])
    (span,) = _by_name(memory_spans[1].get_finished_spans(), "chat gpt-4o")
    attributes = dict(span.attributes or {})

    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai_compatible",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.response.id": "chatcmpl-0",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 17,
        "gen_ai.usage.output_tokens": 42,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.stream": True,
        "server.address": "relay.example.test",
        "server.port": 8443,
        "http.response.status_code": 200,
        "llmping.ttft_ms": 250.0,
        "llmping.e2e_ms": 900.0,
        "llmping.agent.id": "agent-tokyo-1",
        "llmping.target": "tokyo",
        "llmping.target.region": "tokyo",
        "llmping.provider": "relay-a",
        "llmping.start_lag_ms": 3.0,
        "llmping.connection_reused": False,
        "llmping.dns_ms": 1.5,
        "llmping.connect_ms": 4.0,
        "llmping.tls_ms": 9.0,
    }
    for key, value in expected.items():
        assert attributes.get(key) == value, key
    assert attributes["llmping.scheduled_start_unix_ns"] == record.scheduled_unix_ns
    assert "error.type" not in attributes
    assert span.status.status_code == StatusCode.UNSET


def test_request_span_times_and_events(
    memory_spans: MemorySpans,
    make_assignment: Callable[..., pb.Assignment],
    make_record: Callable[..., pb.Record],
) -> None:
    record = make_record()
    _run_with_requests(memory_spans, make_assignment, [record])
    (span,) = _by_name(memory_spans[1].get_finished_spans(), "chat gpt-4o")

    assert span.start_time == record.start_unix_ns
    assert span.end_time == record.start_unix_ns + 900_000_000
    events = {event.name: event for event in span.events}
    assert events["first_token"].timestamp == record.start_unix_ns + 250_000_000
    assert events["response_headers"].timestamp == record.start_unix_ns + 120_000_000
    assert events["end_of_stream"].timestamp == span.end_time


def test_open_loop_times_count_from_schedule(
    memory_spans: MemorySpans,
    make_assignment: Callable[..., pb.Assignment],
    make_record: Callable[..., pb.Record],
) -> None:
    record = make_record()
    _run_with_requests(memory_spans, make_assignment, [record], mode=pb.LoadSpec.CONSTANT)
    (span,) = _by_name(memory_spans[1].get_finished_spans(), "chat gpt-4o")

    # Open-loop latencies count from the scheduled start, 3 ms before the actual send.
    assert span.start_time == record.start_unix_ns
    assert span.end_time == record.scheduled_unix_ns + 900_000_000
    (first_token,) = [event for event in span.events if event.name == "first_token"]
    assert first_token.timestamp == record.scheduled_unix_ns + 250_000_000


def test_failed_request_is_error_span(
    memory_spans: MemorySpans,
    make_assignment: Callable[..., pb.Assignment],
    make_record: Callable[..., pb.Record],
) -> None:
    record = make_record(error_class="http_429", error_phase="headers", http_status=429)
    record.ClearField("ttft_ms")
    record.ClearField("e2e_ms")
    _run_with_requests(memory_spans, make_assignment, [record])
    (span,) = _by_name(memory_spans[1].get_finished_spans(), "chat gpt-4o")

    assert span.status.status_code == StatusCode.ERROR
    assert span.status.description == "http_429"
    assert span.attributes is not None
    assert span.attributes["error.type"] == "http_429"
    assert span.attributes["llmping.error_class"] == "http_429"
    assert span.attributes["llmping.error_phase"] == "headers"
    # Without e2e the span ends at the last timing the request reached (TTFB).
    assert span.end_time == record.start_unix_ns + 120_000_000
    assert "end_of_stream" not in [event.name for event in span.events]


def test_sampling_keeps_errors_and_a_share(
    memory_spans: MemorySpans,
    make_assignment: Callable[..., pb.Assignment],
    make_record: Callable[..., pb.Record],
) -> None:
    provider, exporter = memory_spans
    assignment = make_assignment()
    trace = AgentTracing(provider, "agent-tokyo-1", request_sample_ratio=0.25).start_assignment(
        assignment
    )
    ok_ids = [trace.record_request(make_record(index=i)) for i in range(400)]
    error_ids = [
        trace.record_request(make_record(index=i, error_class="timeout")) for i in range(400, 410)
    ]

    sampled = [ids for ids in ok_ids if ids is not None and ids.span_id]
    assert 80 <= len(sampled) <= 120
    assert all(ids is not None and ids.trace_id == trace.trace_id for ids in ok_ids)
    assert all(ids is not None and ids.span_id for ids in error_ids)
    exported = _by_name(exporter.get_finished_spans(), "chat gpt-4o")
    assert len(exported) == len(sampled) + 10


def test_unsampled_run_exports_nothing(
    memory_spans: MemorySpans,
    make_assignment: Callable[..., pb.Assignment],
    make_record: Callable[..., pb.Record],
) -> None:
    provider, exporter = memory_spans
    unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    trace = AgentTracing(provider, "agent-tokyo-1").start_assignment(
        make_assignment(traceparent=unsampled)
    )
    ids = trace.record_request(make_record())
    trace.end(pb.AssignmentUpdate.FINISHED)

    assert ids is not None
    assert ids.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert ids.span_id == ""
    assert exporter.get_finished_spans() == ()


def test_tracing_off_returns_no_ids(
    make_assignment: Callable[..., pb.Assignment], make_record: Callable[..., pb.Record]
) -> None:
    tracing = AgentTracing(None, "agent-tokyo-1")
    trace = tracing.start_assignment(make_assignment())
    assert trace.record_request(make_record()) is None
    trace.end(pb.AssignmentUpdate.FINISHED)
    tracing.shutdown()


def test_controller_off_still_gives_traceparent() -> None:
    ids = ControllerTracing(None).start_run("run-1", pb.Plan(name="p"))
    version, trace_id, span_id, flags = ids.traceparent.split("-")
    assert (version, flags) == ("00", "01")
    assert trace_id == ids.trace_id
    assert len(trace_id) == 32
    assert len(span_id) == 16
    assert int(trace_id, 16) != 0


def test_partial_run_span_is_error(memory_spans: MemorySpans) -> None:
    provider, exporter = memory_spans
    controller = ControllerTracing(provider)
    controller.start_run("run-2", pb.Plan(name="p"))
    controller.run_ended(
        pb.RunInfo(run_id="run-2", state=pb.PARTIAL, reason="agent a (target tokyo) lost")
    )
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["llmping.run.reason"] == "agent a (target tokyo) lost"


def test_failed_assignment_span_is_error(
    memory_spans: MemorySpans, make_assignment: Callable[..., pb.Assignment]
) -> None:
    provider, exporter = memory_spans
    trace = AgentTracing(provider, "agent-tokyo-1").start_assignment(make_assignment())
    trace.end(pb.AssignmentUpdate.FAILED, "provider relay-a: missing key")
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["llmping.assignment.state"] == "FAILED"


def test_no_api_key_in_any_span(
    monkeypatch: pytest.MonkeyPatch,
    memory_spans: MemorySpans,
    make_assignment: Callable[..., pb.Assignment],
    make_record: Callable[..., pb.Record],
) -> None:
    monkeypatch.setenv("LLMPING_TEST_RELAY_KEY", RELAY_KEY)
    provider, exporter = memory_spans
    assignment = make_assignment()
    assignment.provider_secrets["openai"] = "controller-held-secret-value"
    trace = AgentTracing(provider, "agent-tokyo-1").start_assignment(assignment)
    detail = (
        f"Incorrect API key provided: {RELAY_KEY}; also controller-held-secret-value "
        "and Authorization: Bearer header-secret-123456"
    )
    trace.record_request(make_record(error_class="http_401", error_detail=detail))
    trace.record_request(make_record(index=1))
    trace.end(pb.AssignmentUpdate.FAILED, f"rejected key {RELAY_KEY}")

    dumped = "\n".join(span.to_json() for span in exporter.get_finished_spans())
    for secret in (
        RELAY_KEY,
        "controller-held-secret-value",
        "header-secret-123456",
        "hunter2",
        "query-secret",
    ):
        assert secret not in dumped, secret
    error_span = next(
        span
        for span in exporter.get_finished_spans()
        if span.attributes and span.attributes.get("llmping.error_detail")
    )
    assert "[redacted]" in str(
        json.loads(error_span.to_json())["attributes"]["llmping.error_detail"]
    )


def test_provider_name_and_address_helpers() -> None:
    assert genai_provider_name(pb.Provider(kind="azure")) == "azure.ai.openai"
    assert (
        genai_provider_name(pb.Provider(kind="openai_compatible", preset="deepseek")) == "deepseek"
    )
    assert genai_provider_name(None) == "unknown"
    assert server_address_port("http://127.0.0.1:8080/v1") == ("127.0.0.1", 8080)
    assert server_address_port("https://api.openai.test/v1") == ("api.openai.test", 443)
    assert server_address_port("not a url") is None
    assert redact_secrets("key sk-abcdefghijklmnop here") == "key [redacted] here"
