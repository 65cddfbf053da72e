"""Broken providers and bad plans, end to end: the run still completes, or the plan is
rejected at submit with a message naming what is connected.

Providers: a port with nothing listening (connection refused), llmping's simulator
returning a 502 HTML error page for every request, and a small HTTP server in this
process returning 200 with an HTML page, which the simulator cannot produce.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from llmping.v1 import llmping_pb2 as pb

REQUEST_COUNT = 3
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Gateway login</title></head><body>log in</body></html>"
)


class HtmlPageHandler(BaseHTTPRequestHandler):
    """Return 200 and an HTML page for every POST, as a captive portal or login wall does."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(HTML_PAGE)))
        self.end_headers()
        self.wfile.write(HTML_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture(scope="module")
def html_server() -> Iterator[str]:
    """Serve HtmlPageHandler on a loopback port and yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), HtmlPageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)


@pytest.fixture(scope="module")
def fault_cluster(shared_cluster: Any) -> Any:
    return shared_cluster


def provider(name: str, base_url: str) -> dict[str, Any]:
    return {"name": name, "kind": "openai_compatible", "base_url": base_url, "model": "m"}


def broken_plan(providers: list[dict[str, Any]], targets: list[str]) -> dict[str, Any]:
    return {
        "name": "e2e-broken-providers",
        "providers": providers,
        "request": {"prompt": "写一篇100字的短文", "max_tokens": 32},
        "load": {"mode": "closed", "concurrency": 1, "request_count": REQUEST_COUNT},
        "targets": targets,
        "timeouts": {"connect_s": 2, "ttft_s": 5, "idle_s": 5, "total_s": 10},
    }


@pytest.fixture(scope="module")
def broken_run(
    fault_cluster: Any, html_server: str, find_free_port: Callable[[], int]
) -> tuple[pb.Report, list[dict[str, Any]]]:
    simulator = fault_cluster.start_simulator(
        [
            {
                "name": "html502",
                "models": ["m"],
                "ttft_ms": 10,
                "tokens_per_s": 100,
                "error_rate": 1.0,
                "error_status": 502,
                "error_body": "html",
            }
        ]
    )
    # Nothing listens on this port: it was bound and closed a moment ago.
    refused_url = f"http://127.0.0.1:{find_free_port()}/v1"
    plan = broken_plan(
        [
            provider("refused", refused_url),
            provider("html502", simulator.base_url("html502")),
            provider("html200", html_server),
        ],
        ["shanghai"],
    )
    result = fault_cluster.run_plan(fault_cluster.write_plan(plan))
    report = result.report()
    assert result.exit_code == 0, f"{result.stderr}\n{fault_cluster.describe()}"
    return report, fault_cluster.records(report.run.run_id)


def classes_of(records: list[dict[str, Any]], provider_name: str) -> Counter[str]:
    return Counter(r["error_class"] for r in records if r["provider"] == provider_name)


def test_broken_run_completes(broken_run: tuple[pb.Report, list[dict[str, Any]]]) -> None:
    report, records = broken_run

    assert report.run.state == pb.COMPLETED
    assert len(records) == 3 * REQUEST_COUNT


def test_refused_provider_classified(broken_run: tuple[pb.Report, list[dict[str, Any]]]) -> None:
    _, records = broken_run
    refused = [r for r in records if r["provider"] == "refused"]

    assert classes_of(records, "refused") == {"connection_refused": REQUEST_COUNT}
    assert {r["error_phase"] for r in refused} == {"connect"}
    assert {r["http_status"] for r in refused} == {0}


def test_html_502_classified(broken_run: tuple[pb.Report, list[dict[str, Any]]]) -> None:
    _, records = broken_run
    html502 = [r for r in records if r["provider"] == "html502"]

    assert classes_of(records, "html502") == {"http_502": REQUEST_COUNT}
    assert {r["http_status"] for r in html502} == {502}
    assert all("html" in r["error_detail"].lower() for r in html502)
    assert all(len(r["error_detail"]) < 1000 for r in html502)


def test_html_200_classified(broken_run: tuple[pb.Report, list[dict[str, Any]]]) -> None:
    _, records = broken_run
    html200 = [r for r in records if r["provider"] == "html200"]

    assert classes_of(records, "html200") == {"malformed_response": REQUEST_COUNT}
    assert {r["http_status"] for r in html200} == {200}
    assert all("Gateway login" in r["error_detail"] for r in html200)


def test_broken_report_counts_errors(broken_run: tuple[pb.Report, list[dict[str, Any]]]) -> None:
    report, _ = broken_run
    summaries = {s.provider: s for s in report.summaries}

    assert set(summaries) == {"refused", "html502", "html200"}
    for summary in summaries.values():
        assert summary.requests == REQUEST_COUNT
        assert summary.errors == REQUEST_COUNT
        assert summary.error_rate == pytest.approx(1.0)
    assert dict(summaries["refused"].error_classes) == {"connection_refused": REQUEST_COUNT}


def test_unmatched_target_rejected(fault_cluster: Any, html_server: str) -> None:
    plan = broken_plan([provider("html200", html_server)], ["shanghai", "frankfurt"])

    result = fault_cluster.run_plan(fault_cluster.write_plan(plan))

    assert result.exit_code == 2, result.stderr
    assert "frankfurt" in result.stderr
    assert "region=shanghai" in result.stderr
    assert "region=tokyo" in result.stderr
    assert result.stdout.strip() == ""


def test_unmatched_target_starts_no_run(fault_cluster: Any, html_server: str) -> None:
    plan = broken_plan([provider("html200", html_server)], ["frankfurt"])
    before = fault_cluster.llmping("runs", "--format", "json")

    result = fault_cluster.run_plan(fault_cluster.write_plan(plan))
    after = fault_cluster.llmping("runs", "--format", "json")

    assert result.exit_code == 2
    assert after.exit_code == 0
    assert after.stdout == before.stdout
