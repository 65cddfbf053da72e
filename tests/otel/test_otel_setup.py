"""OTEL_* environment handling in llmping.otel and the LLMPING_TRACE_* options."""

from __future__ import annotations

import socket

import pytest
from opentelemetry.sdk.trace import TracerProvider

from llmping.agent.tracing import AgentTracing, request_sample_ratio_from_env
from llmping.controller.otlp_forward import forward_target_from_env
from llmping.controller.tracing import ControllerTracing
from llmping.errors import InputError
from llmping.otel import (
    OtlpTarget,
    build_meter_provider,
    build_resource,
    build_tracer_provider,
    exporter_names,
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The providers built here export nothing, and nothing listens on this port in any case.
CLOSED_PORT = _closed_port()


def test_tracing_off_without_configuration() -> None:
    assert exporter_names("traces") == []
    assert build_tracer_provider("llmping-agent") is None
    assert build_meter_provider("llmping-agent") is None
    assert not AgentTracing.from_env("agent-1").enabled
    assert not ControllerTracing.from_env().enabled


def test_generic_endpoint_turns_on_traces_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{CLOSED_PORT}")
    assert exporter_names("traces") == ["otlp"]
    assert exporter_names("metrics") == []
    provider = build_tracer_provider("llmping-agent")
    assert isinstance(provider, TracerProvider)
    provider.shutdown()


def test_metrics_endpoint_turns_on_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"http://127.0.0.1:{CLOSED_PORT}")
    assert exporter_names("metrics") == ["otlp"]
    provider = build_meter_provider("llmping-agent")
    assert provider is not None
    provider.shutdown()


def test_exporter_none_and_sdk_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{CLOSED_PORT}")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert build_tracer_provider("llmping-agent") is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert build_tracer_provider("llmping-agent") is None
    target = OtlpTarget(f"127.0.0.1:{CLOSED_PORT}")
    assert build_tracer_provider("llmping-agent", target=target) is None


def test_unknown_exporter_is_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(InputError, match="OTEL_TRACES_EXPORTER"):
        build_tracer_provider("llmping-agent")


def test_unknown_protocol_is_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{CLOSED_PORT}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(InputError, match="http/json"):
        build_tracer_provider("llmping-agent")


def test_explicit_target_needs_no_environment() -> None:
    provider = build_tracer_provider("llmping-agent", target=OtlpTarget(f"127.0.0.1:{CLOSED_PORT}"))
    assert provider is not None
    provider.shutdown()


def test_resource_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    default = build_resource("llmping-agent", {"service.instance.id": "agent-1"})
    assert default.attributes["service.name"] == "llmping-agent"
    assert default.attributes["service.instance.id"] == "agent-1"

    monkeypatch.setenv("OTEL_SERVICE_NAME", "tokyo-agents")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,team=infra")
    resource = build_resource("llmping-agent", {"service.instance.id": "agent-1"})
    assert resource.attributes["service.name"] == "tokyo-agents"
    assert resource.attributes["deployment.environment"] == "prod"
    assert resource.attributes["service.instance.id"] == "agent-1"


@pytest.mark.parametrize("raw", ["1.5", "-0.1", "half"])
def test_invalid_sample_ratio(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("LLMPING_TRACE_SAMPLE_RATIO", raw)
    with pytest.raises(InputError, match="LLMPING_TRACE_SAMPLE_RATIO"):
        request_sample_ratio_from_env()


def test_sample_ratio_default_and_value(monkeypatch: pytest.MonkeyPatch) -> None:
    assert request_sample_ratio_from_env() == 1.0
    monkeypatch.setenv("LLMPING_TRACE_SAMPLE_RATIO", "0.25")
    assert request_sample_ratio_from_env() == 0.25


def test_forward_target_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert forward_target_from_env() is None

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{CLOSED_PORT}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=infra,authorization=Bearer%20abc")
    target = forward_target_from_env()
    assert target is not None
    assert target.protocol == "grpc"
    assert target.endpoint == f"127.0.0.1:{CLOSED_PORT}"
    assert not target.secure
    assert target.headers == {"x-team": "infra", "authorization": "Bearer abc"}

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.example.test:4318/")
    target = forward_target_from_env()
    assert target is not None
    assert target.endpoint == "https://collector.example.test:4318/v1/traces"
    assert target.secure


def test_forward_target_bare_host_is_secure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4317")
    target = forward_target_from_env()
    assert target is not None
    assert target.secure
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    target = forward_target_from_env()
    assert target is not None
    assert not target.secure
