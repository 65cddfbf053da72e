"""The controller's Prometheus series, scraped over HTTP from a real aiohttp server."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from llmping.controller.prometheus import ControllerMetrics, start_metrics_server
from llmping.v1 import llmping_pb2 as pb


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_scrape_after_batches(make_record: Callable[..., pb.Record]) -> None:
    metrics = ControllerMetrics()
    metrics.agent_connected("agent-1", {"region": "tokyo"})
    metrics.agent_connected("agent-2", {"region": "shanghai"})
    metrics.agent_disconnected("agent-2")
    metrics.run_started(pb.RunInfo(run_id="run-1", state=pb.RUNNING))
    metrics.run_started(pb.RunInfo(run_id="run-2", state=pb.RUNNING))
    metrics.run_ended(pb.RunInfo(run_id="run-2", state=pb.PARTIAL))
    failed = make_record(index=2, error_class="http_429")
    metrics.batch_stored("run-1", "tokyo", [make_record(), make_record(index=1), failed], 0.001)
    metrics.batch_duplicate("run-1-tokyo-0", 1)

    server = await start_metrics_server(metrics, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{server.port}/metrics"
            async with session.get(url) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                text = await response.text()
    finally:
        await server.close()

    samples = _samples(text)
    ok = (("outcome", "ok"), ("provider", "relay-a"), ("target", "tokyo"))
    limited = (("outcome", "http_429"), ("provider", "relay-a"), ("target", "tokyo"))
    assert samples[("llmping_requests_total", ok)] == 2
    assert samples[("llmping_requests_total", limited)] == 1
    series = (("provider", "relay-a"), ("target", "tokyo"))
    assert samples[("llmping_ttft_seconds_count", series)] == 2
    assert samples[("llmping_ttft_seconds_sum", series)] == 0.5
    assert samples[("llmping_e2e_seconds_count", series)] == 2
    assert samples[("llmping_e2e_seconds_bucket", tuple(sorted((*series, ("le", "1.0")))))] == 2
    assert samples[("llmping_e2e_seconds_bucket", tuple(sorted((*series, ("le", "0.75")))))] == 0
    assert samples[("llmping_agents_connected", ())] == 1
    assert samples[("llmping_runs", (("state", "RUNNING"),))] == 1
    assert samples[("llmping_runs_ended_total", (("state", "PARTIAL"),))] == 1
    assert samples[("llmping_batches_stored_total", ())] == 1
    assert samples[("llmping_batches_duplicate_total", ())] == 1


async def test_registries_are_separate() -> None:
    first = ControllerMetrics()
    second = ControllerMetrics()
    first.agent_connected("agent-1", {})
    assert b"llmping_agents_connected 1.0" in first.render()
    assert b"llmping_agents_connected 0.0" in second.render()
