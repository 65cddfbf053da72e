"""OpenTelemetry setup shared by the agent and the controller, from the standard OTEL_* variables.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``) or an
OTLP endpoint is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``),
or when the caller passes an explicit :class:`OtlpTarget` (an agent sending its spans through
the controller). Otherwise no provider is built and every tracing hook is a no-op, so an
unconfigured process pays nothing.

Metrics are on only when ``OTEL_METRICS_EXPORTER`` names an exporter or
``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` is set. The generic endpoint alone does not turn them
on, because the usual trace backends (Jaeger, Phoenix) reject OTLP metrics and the exporter
would log an error on every export.

``OTEL_SDK_DISABLED=true`` turns both off. Everything else (headers, compression, timeouts,
TLS certificates, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
``OTEL_BSP_*``) is read by the OpenTelemetry SDK and exporters themselves.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from llmping import __version__
from llmping.errors import InputError

log = logging.getLogger(__name__)

EXPORTER_CHOICES = ("otlp", "console", "none")
PROTOCOL_CHOICES = ("grpc", "http/protobuf")


@dataclass(frozen=True)
class OtlpTarget:
    """An OTLP gRPC receiver chosen by llmping instead of the OTEL_* endpoint variables."""

    # host:port, or an http:// or https:// URL.
    endpoint: str
    insecure: bool = True
    # gRPC metadata sent with every export, e.g. the controller's bearer token.
    headers: Mapping[str, str] = field(default_factory=dict)
    # TLS credentials when insecure is False; None uses the OTEL_* certificate variables.
    credentials: grpc.ChannelCredentials | None = None
    # Extra gRPC channel options, such as grpc.ssl_target_name_override.
    channel_options: tuple[tuple[str, str], ...] = ()


def sdk_disabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Return whether OTEL_SDK_DISABLED turns the OpenTelemetry SDK off."""
    return environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def exporter_names(signal: str, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Return the exporters configured for ``signal`` ("traces" or "metrics"), [] when off.

    Raises InputError for an exporter name llmping does not support.
    """
    if sdk_disabled(environ):
        return []
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    raw = environ.get(variable, "").strip().lower()
    if not raw:
        return ["otlp"] if _endpoint_configured(signal, environ) else []
    names = [name.strip() for name in raw.split(",") if name.strip()]
    for name in names:
        if name not in EXPORTER_CHOICES:
            raise InputError(
                f"invalid {variable}: {name!r}; use one of {', '.join(EXPORTER_CHOICES)}"
            )
    return [name for name in names if name != "none"]


def _endpoint_configured(signal: str, environ: Mapping[str, str]) -> bool:
    if environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip():
        return True
    # The generic endpoint turns on traces only, for the reason in the module docstring.
    return signal == "traces" and bool(environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())


def otlp_protocol(signal: str, environ: Mapping[str, str] = os.environ) -> str:
    """Return the OTLP protocol for ``signal``, from the signal-specific variable first."""
    raw = (
        environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )
    protocol = raw.strip().lower()
    if protocol not in PROTOCOL_CHOICES:
        choices = ", ".join(PROTOCOL_CHOICES)
        raise InputError(f"invalid OTEL_EXPORTER_OTLP_PROTOCOL: {raw!r}; use one of {choices}")
    return protocol


def build_resource(service_name: str, attributes: Mapping[str, str] | None = None) -> Resource:
    """Build the process resource: llmping's defaults, overridden by OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES."""
    defaults: dict[str, str] = {"service.name": service_name, "service.version": __version__}
    defaults.update(attributes or {})
    # Resource.create lets explicit attributes win over the environment, so merging the
    # environment detector again on top restores the standard precedence.
    return Resource.create(defaults).merge(OTELResourceDetector().detect())


def build_tracer_provider(
    service_name: str,
    resource_attributes: Mapping[str, str] | None = None,
    target: OtlpTarget | None = None,
) -> TracerProvider | None:
    """Build a tracer provider with batched export, or return None when tracing is off.

    ``target`` replaces the OTEL_* exporter settings with one OTLP gRPC receiver.
    """
    if sdk_disabled():
        return None
    exporters = [_otlp_grpc_span_exporter(target)] if target else _span_exporters()
    if not exporters:
        return None

    # The sampler comes from OTEL_TRACES_SAMPLER (default parentbased_always_on).
    provider = TracerProvider(resource=build_resource(service_name, resource_attributes))
    for exporter in exporters:
        # BatchSpanProcessor queues spans and exports them on its own thread. When the
        # queue is full it drops spans instead of blocking the caller.
        provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info(
        "tracing on: %s exporting to %s",
        service_name,
        target.endpoint if target else ",".join(exporter_names("traces")),
    )
    return provider


def build_meter_provider(
    service_name: str, resource_attributes: Mapping[str, str] | None = None
) -> MeterProvider | None:
    """Build a meter provider with periodic export, or return None when metrics are off.

    The export interval comes from OTEL_METRIC_EXPORT_INTERVAL (default 60 s).
    """
    exporters = [_metric_exporter(name) for name in exporter_names("metrics")]
    if not exporters:
        return None
    readers = [PeriodicExportingMetricReader(exporter) for exporter in exporters]
    log.info("metrics on: %s exporting to %s", service_name, ",".join(exporter_names("metrics")))
    return MeterProvider(
        metric_readers=readers, resource=build_resource(service_name, resource_attributes)
    )


def _span_exporters() -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in exporter_names("traces"):
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        elif otlp_protocol("traces") == "grpc":
            exporters.append(_otlp_grpc_span_exporter(None))
        else:
            exporters.append(_otlp_http_span_exporter())
    return exporters


def _otlp_grpc_span_exporter(target: OtlpTarget | None) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    if target is None:
        # Endpoint, headers, TLS and compression come from the OTEL_* variables.
        return OTLPSpanExporter()
    return OTLPSpanExporter(
        endpoint=target.endpoint,
        insecure=target.insecure,
        credentials=target.credentials,
        headers=dict(target.headers),
        # opentelemetry-exporter-otlp-proto-grpc 1.45 annotates a one-element tuple, but
        # merges options of any count.
        channel_options=target.channel_options or None,  # type: ignore[arg-type]
    )


def _otlp_http_span_exporter() -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )
    except ImportError as error:
        raise InputError(
            "OTLP over http/protobuf needs the package opentelemetry-exporter-otlp-proto-http; "
            "install it, or set OTEL_EXPORTER_OTLP_PROTOCOL=grpc"
        ) from error
    exporter: SpanExporter = OTLPSpanExporter()
    return exporter


def _metric_exporter(name: str) -> MetricExporter:
    if name == "console":
        return ConsoleMetricExporter()
    if otlp_protocol("metrics") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPMetricExporter as HttpMetricExporter,
        )
    except ImportError as error:
        raise InputError(
            "OTLP over http/protobuf needs the package opentelemetry-exporter-otlp-proto-http; "
            "install it, or set OTEL_EXPORTER_OTLP_PROTOCOL=grpc"
        ) from error
    exporter: MetricExporter = HttpMetricExporter()
    return exporter
