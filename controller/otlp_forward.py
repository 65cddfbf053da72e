"""OTLP TraceService on the controller's gRPC port, forwarding agents' spans to the backend.

An agent behind a firewall then needs one outbound connection only, to the controller, for
both the run protocol and its spans (agent env LLMPING_TRACES_VIA_CONTROLLER=1). Received
ExportTraceServiceRequests are queued and forwarded unchanged to the controller's own OTLP
endpoint (the standard OTEL_EXPORTER_OTLP_* variables, gRPC or http/protobuf). With no
endpoint configured they are dropped and counted at DEBUG level.

Export returns at once because forwarding happens on a background task. A full queue rejects
the request's spans (reported in partial_success) instead of slowing the agent down.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp_trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_trace_grpc
from opentelemetry.util.re import parse_env_headers

from llmping.otel import exporter_names, otlp_protocol

from .logcount import RepeatCounter

log = logging.getLogger(__name__)

MAX_QUEUED_REQUESTS = 256
FORWARD_TIMEOUT_S = 10.0
_DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
_DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"


@dataclass(frozen=True)
class ForwardTarget:
    """The OTLP receiver that the controller forwards agents' spans to."""

    # "grpc" or "http/protobuf".
    protocol: str
    # host:port for grpc, the full URL of the traces path for http/protobuf.
    endpoint: str
    secure: bool
    headers: Mapping[str, str] = field(default_factory=dict)


def forward_target_from_env(environ: Mapping[str, str] = os.environ) -> ForwardTarget | None:
    """Read the OTLP trace endpoint from the OTEL_* variables, or None when traces are off."""
    if "otlp" not in exporter_names("traces", environ):
        return None
    protocol = otlp_protocol("traces", environ)
    headers = parse_env_headers(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        or environ.get("OTEL_EXPORTER_OTLP_HEADERS", ""),
        liberal=True,
    )
    specific = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    generic = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if protocol == "http/protobuf":
        # The signal-specific URL is used as given, and the generic one gets the traces path.
        url = specific or f"{(generic or _DEFAULT_HTTP_ENDPOINT).rstrip('/')}/v1/traces"
        return ForwardTarget(protocol, url, url.startswith("https://"), headers)
    return _grpc_target(specific or generic or _DEFAULT_GRPC_ENDPOINT, headers, environ)


def _grpc_target(
    endpoint: str, headers: Mapping[str, str], environ: Mapping[str, str]
) -> ForwardTarget:
    # Same rule as the OTLP gRPC exporter: the URL scheme decides, and a bare host:port is
    # secure unless OTEL_EXPORTER_OTLP_INSECURE=true.
    parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
    if parts.scheme in ("http", "https"):
        secure = parts.scheme == "https"
    else:
        insecure = environ.get("OTEL_EXPORTER_OTLP_TRACES_INSECURE") or environ.get(
            "OTEL_EXPORTER_OTLP_INSECURE", ""
        )
        secure = insecure.strip().lower() != "true"
    return ForwardTarget("grpc", parts.netloc, secure, headers)


class TraceForwarder:
    """Queue of received span batches and the task that forwards them."""

    def __init__(
        self, target: ForwardTarget | None, max_queued_requests: int = MAX_QUEUED_REQUESTS
    ) -> None:
        self.target = target
        self.spans_forwarded = 0
        self.spans_dropped = 0
        self._queue: asyncio.Queue[otlp_trace.ExportTraceServiceRequest] = asyncio.Queue(
            max_queued_requests
        )
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self._session: aiohttp.ClientSession | None = None
        self._no_target = RepeatCounter(
            log, "agent spans dropped: no OTLP endpoint configured", logging.DEBUG
        )
        self._failures = RepeatCounter(log, "forwarding agent spans failed")

    async def start(self) -> None:
        """Open the connection to the backend and start forwarding."""
        if self.target is None:
            return
        if self.target.protocol == "grpc":
            self._channel = _open_grpc_channel(self.target)
        else:
            self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._forward_loop(), name="llmping-otlp-forward")
        log.info("forwarding agent spans to %s", self.target.endpoint)

    def submit(self, request: otlp_trace.ExportTraceServiceRequest) -> int:
        """Queue a request for forwarding and return how many of its spans were rejected."""
        spans = count_spans(request)
        if self.target is None:
            self.spans_dropped += spans
            self._no_target.record(f"{spans} spans")
            return 0
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            self.spans_dropped += spans
            self._failures.record(f"queue full, {spans} spans rejected")
            return spans
        return 0

    async def close(self, timeout_s: float = 5.0) -> None:
        """Forward what is queued (for up to ``timeout_s``), then stop."""
        if self._task is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout_s)
            except TimeoutError:
                log.warning("stopped forwarding with %d span batches queued", self._queue.qsize())
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()
        if self._session is not None:
            await self._session.close()

    async def _forward_loop(self) -> None:
        while True:
            request = await self._queue.get()
            try:
                await self._forward(request)
                self.spans_forwarded += count_spans(request)
            except (grpc.aio.AioRpcError, aiohttp.ClientError, TimeoutError) as error:
                self.spans_dropped += count_spans(request)
                self._failures.record(f"{self._target_endpoint()}: {error}")
            finally:
                self._queue.task_done()

    async def _forward(self, request: otlp_trace.ExportTraceServiceRequest) -> None:
        assert self.target is not None
        headers = dict(self.target.headers)
        if self._channel is not None:
            stub = otlp_trace_grpc.TraceServiceStub(self._channel)
            await stub.Export(request, timeout=FORWARD_TIMEOUT_S, metadata=tuple(headers.items()))
            return
        assert self._session is not None
        headers["Content-Type"] = "application/x-protobuf"
        async with self._session.post(
            self.target.endpoint,
            data=request.SerializeToString(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
        ) as response:
            response.raise_for_status()

    def _target_endpoint(self) -> str:
        return self.target.endpoint if self.target else "none"


class OtlpTraceService(otlp_trace_grpc.TraceServiceServicer):
    """The OTLP TraceService that agents export to, checking the controller token if set."""

    def __init__(self, forwarder: TraceForwarder, token: str | None = None) -> None:
        self.forwarder = forwarder
        self._token = token

    async def Export(
        self,
        request: otlp_trace.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> otlp_trace.ExportTraceServiceResponse:
        if self._token and not _authorized(context, self._token):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong bearer token; give the agent the controller's --token",
            )
        response = otlp_trace.ExportTraceServiceResponse()
        rejected = self.forwarder.submit(request)
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = "controller span queue is full"
        return response


def add_trace_service(
    server: grpc.aio.Server, forwarder: TraceForwarder, token: str | None = None
) -> None:
    """Serve the OTLP TraceService on ``server`` next to the llmping services."""
    otlp_trace_grpc.add_TraceServiceServicer_to_server(OtlpTraceService(forwarder, token), server)


def count_spans(request: otlp_trace.ExportTraceServiceRequest) -> int:
    return sum(
        len(scope_spans.spans)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
    )


def _authorized(context: grpc.aio.ServicerContext, token: str) -> bool:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            return hmac.compare_digest(value.encode(), f"Bearer {token}".encode())
    return False


def _open_grpc_channel(target: ForwardTarget) -> grpc.aio.Channel:
    if target.secure:
        credentials = grpc.ssl_channel_credentials(_read_certificate())
        return grpc.aio.secure_channel(target.endpoint, credentials)
    return grpc.aio.insecure_channel(target.endpoint)


def _read_certificate() -> bytes | None:
    path = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE") or os.environ.get(
        "OTEL_EXPORTER_OTLP_CERTIFICATE"
    )
    if not path:
        return None
    with open(path, "rb") as file:
        return file.read()
