"""Fixtures for the tracing and metrics tests: a clean OTEL_* environment, in-memory span
export, and builders for assignments and records."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmping.v1 import llmping_pb2 as pb

ENV_PREFIXES = ("OTEL_", "LLMPING_TRACE")


@pytest.fixture(autouse=True)
def clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every OTEL_* and LLMPING_TRACE* variable so each test starts with tracing off."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture
def memory_spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider that keeps finished spans in memory, exported synchronously."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _plan(mode: int = pb.LoadSpec.CLOSED) -> pb.Plan:
    plan = pb.Plan(name="relay-compare")
    plan.providers.add(
        name="relay-a",
        kind="openai_compatible",
        base_url="https://user:hunter2@relay.example.test:8443/v1?key=query-secret",
        model="gpt-4o",
        api_key_env="LLMPING_TEST_RELAY_KEY",
        headers={"Authorization": "Bearer header-secret-123456"},
    )
    plan.providers.add(name="openai", kind="openai", base_url="https://api.openai.test/v1")
    plan.request.max_tokens = 64
    plan.request.stream = True
    plan.request.temperature = 0.2
    plan.load.mode = mode
    plan.targets.add(name="tokyo", selector={"region": "tokyo"})
    return plan


@pytest.fixture
def make_assignment() -> Callable[..., pb.Assignment]:
    def build(
        traceparent: str = "", mode: int = pb.LoadSpec.CLOSED, run_id: str = "run-1"
    ) -> pb.Assignment:
        assignment = pb.Assignment(
            run_id=run_id,
            assignment_id=f"{run_id}-tokyo-0",
            target="tokyo",
            plan=_plan(mode),
            start_at_unix_ns=time.time_ns(),
            traceparent=traceparent,
        )
        assignment.share.concurrency = 2
        assignment.share.agent_count = 1
        return assignment

    return build


@pytest.fixture
def make_record() -> Callable[..., pb.Record]:
    def build(index: int = 0, error_class: str = "", **fields: object) -> pb.Record:
        start_ns = time.time_ns() - 2_000_000_000
        record = pb.Record(
            run_id="run-1",
            assignment_id="run-1-tokyo-0",
            agent_id="agent-tokyo-1",
            target="tokyo",
            provider="relay-a",
            model="gpt-4o",
            index=index,
            scheduled_unix_ns=start_ns - 3_000_000,
            start_unix_ns=start_ns,
            start_lag_ms=3.0,
            dns_ms=1.5,
            connect_ms=4.0,
            tls_ms=9.0,
            ttfb_ms=120.0,
            ttft_ms=250.0,
            e2e_ms=900.0,
            output_tokens=42,
            input_tokens=17,
            http_status=200,
            http_version="1.1",
            remote_ip="127.0.0.1",
            finish_reason="stop",
            response_model="gpt-4o-2024-08-06",
            response_id=f"chatcmpl-{index}",
            error_class=error_class,
        )
        for name, value in fields.items():
            setattr(record, name, value)
        return record

    return build
