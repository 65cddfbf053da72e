"""Prometheus metrics of the controller, served on ``--metrics-listen HOST:PORT`` at /metrics.

Counters and histograms are updated as result batches are stored (ControllerObserver hooks),
so they cover every stored record, warm-up included. They are operational signals for
dashboards and alerts; reports and thresholds are always computed from the stored records.

Series (label values are the plan's provider and target names):

- ``llmping_requests_total{provider,target,outcome}``: outcome is ``ok`` or the error class
- ``llmping_ttft_seconds`` and ``llmping_e2e_seconds{provider,target}``: successful requests
- ``llmping_agents_connected``
- ``llmping_runs{state}``: runs open now (PENDING, RUNNING)
- ``llmping_runs_ended_total{state}``: runs that ended since the controller started
- ``llmping_batches_stored_total``, ``llmping_batches_duplicate_total``
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from llmping.v1 import llmping_pb2 as pb

from .observers import ControllerObserver

log = logging.getLogger(__name__)

# Seconds, from a fast relay's TTFT (tens of ms) to a slow reasoning model's full response.
LATENCY_BUCKETS_S = (
    0.025,
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    7.5,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
)
OPEN_RUN_STATES = ("PENDING", "RUNNING")


class ControllerMetrics(ControllerObserver):
    """The controller's Prometheus series, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "llmping_requests",
            "Requests stored, by provider, target and outcome (ok or the error class).",
            ("provider", "target", "outcome"),
            registry=self.registry,
        )
        self.ttft = Histogram(
            "llmping_ttft_seconds",
            "Time to first token of successful requests.",
            ("provider", "target"),
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.e2e = Histogram(
            "llmping_e2e_seconds",
            "End-to-end latency of successful requests.",
            ("provider", "target"),
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

        self.agents_connected = Gauge(
            "llmping_agents_connected", "Agents connected now.", registry=self.registry
        )
        self.runs = Gauge(
            "llmping_runs", "Runs open now, by state.", ("state",), registry=self.registry
        )
        self.runs_ended = Counter(
            "llmping_runs_ended", "Runs ended, by final state.", ("state",), registry=self.registry
        )

        self.batches_stored = Counter(
            "llmping_batches_stored", "Result batches stored.", registry=self.registry
        )
        self.batches_duplicate = Counter(
            "llmping_batches_duplicate",
            "Result batches received again after they were stored, and acknowledged again.",
            registry=self.registry,
        )

        self._connected: set[str] = set()
        self._open_runs: dict[str, str] = {}
        self._latency_children: dict[tuple[str, str], tuple[Histogram, Histogram]] = {}
        for state in OPEN_RUN_STATES:
            self.runs.labels(state).set(0)

    def agent_connected(self, agent_id: str, labels: dict[str, str]) -> None:
        self._connected.add(agent_id)
        self.agents_connected.set(len(self._connected))

    def agent_disconnected(self, agent_id: str) -> None:
        self._connected.discard(agent_id)
        self.agents_connected.set(len(self._connected))

    def run_started(self, run: pb.RunInfo) -> None:
        self._open_runs[run.run_id] = pb.RunState.Name(run.state)
        self._update_open_runs()

    def run_ended(self, run: pb.RunInfo) -> None:
        self._open_runs.pop(run.run_id, None)
        self._update_open_runs()
        self.runs_ended.labels(pb.RunState.Name(run.state)).inc()

    def batch_stored(
        self, run_id: str, target: str, records: Sequence[pb.Record], store_s: float
    ) -> None:
        self.batches_stored.inc()
        # Counting per batch first keeps the per-record cost to a dict update, which matters
        # at tens of thousands of records per second.
        counts: dict[tuple[str, str, str], int] = {}
        for record in records:
            key = (record.provider, record.target or target, record.error_class or "ok")
            counts[key] = counts.get(key, 0) + 1
            if not record.error_class:
                self._observe_latency(record, key[1])
        for (provider, record_target, outcome), count in counts.items():
            self.requests.labels(provider, record_target, outcome).inc(count)

    def batch_duplicate(self, assignment_id: str, seq: int) -> None:
        self.batches_duplicate.inc()

    def render(self) -> bytes:
        """Return the registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def _observe_latency(self, record: pb.Record, target: str) -> None:
        key = (record.provider, target)
        children = self._latency_children.get(key)
        if children is None:
            children = (self.ttft.labels(*key), self.e2e.labels(*key))
            self._latency_children[key] = children
        if record.HasField("ttft_ms"):
            children[0].observe(record.ttft_ms / 1000)
        if record.HasField("e2e_ms"):
            children[1].observe(record.e2e_ms / 1000)

    def _update_open_runs(self) -> None:
        for state in OPEN_RUN_STATES:
            count = sum(1 for value in self._open_runs.values() if value == state)
            self.runs.labels(state).set(count)


@dataclass
class MetricsServer:
    """A running /metrics endpoint."""

    runner: web.AppRunner
    host: str
    port: int

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_metrics_server(metrics: ControllerMetrics, host: str, port: int) -> MetricsServer:
    """Serve ``metrics`` at http://HOST:PORT/metrics on the running event loop.

    Port 0 picks a free port; the bound one is in the returned MetricsServer.
    """

    async def handle_metrics(request: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        # CONTENT_TYPE_LATEST carries a charset parameter, which aiohttp wants as a header.
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/metrics", handle_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = _bound_port(runner, port)
    log.info("prometheus metrics on http://%s:%d/metrics", host, bound_port)
    return MetricsServer(runner, host, bound_port)


def _bound_port(runner: web.AppRunner, requested_port: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested_port
