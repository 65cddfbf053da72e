"""An OTLP/gRPC trace receiver that counts spans and discards them, for bench/agent_ceiling.py.

It returns an empty success response to every TraceService/Export call at once, so
the agent's exporter never waits on the receiver. It prints
``otlp sink listening on 127.0.0.1:PORT`` once it accepts calls and, on SIGTERM or
SIGINT, one JSON line with the number of export calls and spans received.

Usage: python bench/otlp_sink.py [--port 0]
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

LOOPBACK = "127.0.0.1"


class CountingTraceService(trace_grpc.TraceServiceServicer):
    """Trace service that counts export calls and spans and keeps no span data."""

    def __init__(self) -> None:
        self.calls = 0
        self.spans = 0
        self._lock = threading.Lock()

    def Export(
        self, request: trace_pb.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_pb.ExportTraceServiceResponse:
        spans = 0
        for resource in request.resource_spans:
            spans += sum(len(scope.spans) for scope in resource.scope_spans)
        with self._lock:
            self.calls += 1
            self.spans += spans
        return trace_pb.ExportTraceServiceResponse()


def main() -> None:
    parser = argparse.ArgumentParser(description="Count and discard OTLP spans.")
    parser.add_argument("--port", type=int, default=0, help="loopback TCP port; 0 picks one")
    args = parser.parse_args()

    service = CountingTraceService()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_grpc.add_TraceServiceServicer_to_server(service, server)
    port = server.add_insecure_port(f"{LOOPBACK}:{args.port}")
    server.start()

    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stopped.set())
    signal.signal(signal.SIGINT, lambda _signum, _frame: stopped.set())
    print(f"otlp sink listening on {LOOPBACK}:{port}", flush=True)
    stopped.wait()
    server.stop(grace=1.0).wait()
    print(json.dumps({"export_calls": service.calls, "spans": service.spans}), flush=True)


if __name__ == "__main__":
    main()
