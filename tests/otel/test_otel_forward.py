"""Agents' spans sent through the controller's OTLP TraceService to a real OTLP receiver."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as otlp_trace
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as otlp_trace_grpc

from llmping.agent.tracing import AgentTracing
from llmping.controller.otlp_forward import (
    ForwardTarget,
    TraceForwarder,
    add_trace_service,
    count_spans,
    forward_target_from_env,
)
from llmping.v1 import llmping_pb2 as pb

TOKEN = "controller-token-for-tests"


class CapturingTraceService(otlp_trace_grpc.TraceServiceServicer):
    """A minimal OTLP receiver that keeps what it gets."""

    def __init__(self) -> None:
        self.requests: list[otlp_trace.ExportTraceServiceRequest] = []
        self.metadata: list[dict[str, str]] = []

    async def Export(
        self, request: otlp_trace.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> otlp_trace.ExportTraceServiceResponse:
        self.requests.append(request)
        self.metadata.append(
            {key: str(value) for key, value in context.invocation_metadata() or ()}
        )
        return otlp_trace.ExportTraceServiceResponse()


@pytest.fixture
async def backend() -> AsyncIterator[tuple[CapturingTraceService, int]]:
    service = CapturingTraceService()
    server = grpc.aio.server()
    otlp_trace_grpc.add_TraceServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield service, port
    await server.stop(0)


async def _start_controller(
    forwarder: TraceForwarder, token: str | None = TOKEN
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    add_trace_service(server, forwarder, token)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await forwarder.start()
    return server, port


async def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def _closed_port() -> int:
    """Return a loopback port that was just free, so nothing listens on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _span_request(names: list[str]) -> otlp_trace.ExportTraceServiceRequest:
    request = otlp_trace.ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for index, name in enumerate(names):
        span = scope.spans.add(name=name)
        span.trace_id = bytes(15) + b"\x01"
        span.span_id = bytes(7) + bytes([index + 1])
    return request


async def test_agent_spans_reach_backend_through_controller(
    monkeypatch: pytest.MonkeyPatch,
    backend: tuple[CapturingTraceService, int],
    make_assignment: Callable[..., pb.Assignment],
    make_record: Callable[..., pb.Record],
) -> None:
    service, backend_port = backend
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{backend_port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-backend-key=backend-value")
    forwarder = TraceForwarder(forward_target_from_env())
    controller, controller_port = await _start_controller(forwarder)

    # The agent reaches only the controller: its own OTEL endpoint points at a closed port.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("LLMPING_TRACES_VIA_CONTROLLER", "1")
    tracing = AgentTracing.from_env(
        "agent-tokyo-1", {"region": "tokyo"}, f"127.0.0.1:{controller_port}", TOKEN
    )
    trace = tracing.start_assignment(make_assignment())
    ids = trace.record_request(make_record())
    trace.end(pb.AssignmentUpdate.FINISHED, records_total=1)
    # shutdown() flushes from the exporter thread; keep the event loop free to serve it.
    await asyncio.to_thread(tracing.shutdown)

    await _wait_for(lambda: sum(count_spans(r) for r in service.requests) >= 2)
    await forwarder.close()
    await controller.stop(0)

    names = {
        span.name
        for request in service.requests
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    }
    assert names == {"llmping.assignment", "chat gpt-4o"}
    assert ids is not None
    assert service.metadata[0]["x-backend-key"] == "backend-value"
    assert "authorization" not in service.metadata[0]
    resource = service.requests[0].resource_spans[0].resource
    resource_attributes = {kv.key: kv.value.string_value for kv in resource.attributes}
    assert resource_attributes["service.name"] == "llmping-agent"
    assert resource_attributes["llmping.agent.label.region"] == "tokyo"
    assert forwarder.spans_forwarded == 2


async def test_wrong_token_is_rejected() -> None:
    forwarder = TraceForwarder(None)
    controller, port = await _start_controller(forwarder)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = otlp_trace_grpc.TraceServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.Export(_span_request(["s"]), metadata=metadata)
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        response = await stub.Export(
            _span_request(["s"]), metadata=(("authorization", f"Bearer {TOKEN}"),)
        )
    assert not response.HasField("partial_success")
    await forwarder.close()
    await controller.stop(0)


async def test_spans_dropped_without_endpoint() -> None:
    forwarder = TraceForwarder(None)
    controller, port = await _start_controller(forwarder, token=None)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = otlp_trace_grpc.TraceServiceStub(channel)
        await stub.Export(_span_request(["a", "b", "c"]))
    assert forwarder.spans_dropped == 3
    assert forwarder.spans_forwarded == 0
    await forwarder.close()
    await controller.stop(0)


async def test_full_queue_rejects_spans() -> None:
    # Never started, so nothing drains the one-slot queue.
    target = ForwardTarget("grpc", f"127.0.0.1:{_closed_port()}", False)
    forwarder = TraceForwarder(target, max_queued_requests=1)
    assert forwarder.submit(_span_request(["a"])) == 0
    assert forwarder.submit(_span_request(["b", "c"])) == 2
    assert forwarder.spans_dropped == 2


async def test_forward_over_http_protobuf(monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[tuple[str, bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((request.headers["Content-Type"], await request.read()))
        return web.Response(
            body=otlp_trace.ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")

    forwarder = TraceForwarder(forward_target_from_env())
    await forwarder.start()
    forwarder.submit(_span_request(["x", "y"]))
    await _wait_for(lambda: forwarder.spans_forwarded == 2)
    await forwarder.close()
    await runner.cleanup()

    ((content_type, body),) = received
    assert content_type == "application/x-protobuf"
    parsed = otlp_trace.ExportTraceServiceRequest.FromString(body)
    assert count_spans(parsed) == 2


async def test_unreachable_backend_counts_dropped() -> None:
    # Nothing listens on the closed port, so the export fails fast.
    forwarder = TraceForwarder(ForwardTarget("grpc", f"127.0.0.1:{_closed_port()}", False))
    await forwarder.start()
    forwarder.submit(_span_request(["a"]))
    await _wait_for(lambda: forwarder.spans_dropped == 1, timeout_s=15.0)
    await forwarder.close()
    assert forwarder.spans_forwarded == 0
