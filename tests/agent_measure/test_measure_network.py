"""Connection timings and connection failures, against real loopback sockets.

DNS tests use a resolver defined here instead of the system's: the system resolver
sends names it does not know (even under the reserved .invalid domain) to the
configured DNS server, and these tests must not send traffic off the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from llmping.agent.timing import TimedResponseHandler, arrival_ns
from llmping.v1 import llmping_pb2 as pb

ANSWER = (
    b'data: {"id":"c","model":"m","choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


class StaticResolver(AbstractResolver):
    """Resolve a fixed name to 127.0.0.1 after a delay; every other name fails."""

    def __init__(self, names: dict[str, str], delay_s: float = 0.0) -> None:
        self.names = names
        self.delay_s = delay_s
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        await asyncio.sleep(self.delay_s)
        if host not in self.names:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = self.names[host]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


def answer_response(kit: Any, delays_ms: list[float] | None = None) -> Any:
    return kit.ScriptedResponse(chunks=[ANSWER], delays_ms=delays_ms or [0])


async def run(
    executor: Any, scheduled_ns: int | None = None, from_scheduled: bool = False
) -> pb.Record:
    record = pb.Record()
    now = time.perf_counter_ns()
    await executor.execute(
        record, scheduled_ns if scheduled_ns is not None else now, from_scheduled
    )
    return record


async def test_network_connection_reuse(kit: Any, scripted_server: Any, make_executor: Any) -> None:
    server = await scripted_server([answer_response(kit)])
    executor = await make_executor(kit.provider_for("openai", server.url))

    first = await run(executor)
    second = await run(executor)

    assert first.error_class == ""
    assert second.error_class == ""
    assert not first.connection_reused
    assert first.connect_ms > 0
    assert first.tls_ms == 0
    assert first.remote_ip == "127.0.0.1"
    assert first.http_version == "1.1"
    assert second.connection_reused
    assert (second.dns_ms, second.connect_ms, second.tls_ms) == (0, 0, 0)
    assert server.connections == 1


async def test_network_new_connection_per_request(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    server = await scripted_server([answer_response(kit)])
    request = kit.request_spec(new_connection_per_request=True)
    executor = await make_executor(kit.provider_for("openai", server.url), request)

    records = [await run(executor), await run(executor)]

    assert [record.connection_reused for record in records] == [False, False]
    assert all(record.connect_ms > 0 for record in records)
    assert server.connections == 2


async def test_network_connection_refused(kit: Any, make_executor: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executor = await make_executor(kit.provider_for("openai", f"http://127.0.0.1:{port}"))
    record = await run(executor)

    assert record.error_class == "connection_refused"
    assert record.error_phase == "connect"
    # aiohttp's own text adds "ssl:default" to a plain http:// URL.
    assert record.error_detail == f"cannot connect to 127.0.0.1:{port}: connection refused"
    assert record.http_status == 0
    assert not record.HasField("ttfb_ms")


async def test_network_dns_failure(kit: Any, make_executor: Any) -> None:
    executor = await make_executor(
        kit.provider_for("openai", "http://api.llmping.invalid/v1"), None, pb.Timeouts()
    )
    await executor.close()
    resolver = StaticResolver({})
    executor.resolver = resolver
    await executor.start()
    started = time.perf_counter()
    record = await run(executor)

    assert time.perf_counter() - started < 1.0
    assert resolver.lookups == ["api.llmping.invalid"]
    assert record.error_class == "dns"
    assert record.error_phase == "connect"


async def test_network_dns_timing(kit: Any, scripted_server: Any, make_executor: Any) -> None:
    server = await scripted_server([answer_response(kit)])
    executor = await make_executor(
        kit.provider_for("openai", f"http://api.llmping.test:{server.port}")
    )
    await executor.close()
    executor.resolver = StaticResolver({"api.llmping.test": "127.0.0.1"}, delay_s=0.05)
    await executor.start()
    record = await run(executor)

    assert record.error_class == ""
    assert 49 <= record.dns_ms < 500
    assert record.connect_ms < 200
    assert record.ttfb_ms >= record.dns_ms


async def test_network_slow_dns_is_connect_timeout(kit: Any, make_executor: Any) -> None:
    executor = await make_executor(
        kit.provider_for("openai", "http://slow.llmping.test/v1"), None, pb.Timeouts(connect_s=0.2)
    )
    await executor.close()
    executor.resolver = StaticResolver({"slow.llmping.test": "127.0.0.1"}, delay_s=5)
    await executor.start()
    record = await run(executor)

    assert record.error_class == "timeout_connect"
    assert record.error_phase == "connect"
    assert 190 <= record.e2e_ms < 1500


@pytest.fixture
async def silent_tcp_server() -> AsyncIterator[int]:
    """A server that accepts connections and never sends a byte."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    for writer in held:
        writer.close()
    server.close()


async def test_network_tls_handshake_hang_is_connect_timeout(
    kit: Any, silent_tcp_server: int, make_executor: Any
) -> None:
    provider = kit.provider_for("openai", f"https://127.0.0.1:{silent_tcp_server}")
    executor = await make_executor(provider, None, pb.Timeouts(connect_s=0.3))
    record = await run(executor)

    assert record.error_class == "timeout_connect"
    assert 290 <= record.e2e_ms < 1500


async def test_network_no_headers_is_ttft_timeout(
    kit: Any, silent_tcp_server: int, make_executor: Any
) -> None:
    provider = kit.provider_for("openai", f"http://127.0.0.1:{silent_tcp_server}")
    executor = await make_executor(provider, None, pb.Timeouts(ttft_s=0.3))
    record = await run(executor)

    assert record.error_class == "timeout_ttft"
    assert record.error_phase == "headers"


async def test_network_keepalives_do_not_reset_ttft(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    keepalives = [b": keep-alive\n\n"] * 20
    server = await scripted_server([kit.ScriptedResponse(chunks=keepalives, delays_ms=[50] * 20)])
    timeouts = pb.Timeouts(ttft_s=0.4, idle_s=0.2)
    executor = await make_executor(kit.provider_for("openai", server.url), None, timeouts)
    record = await run(executor)

    assert record.error_class == "timeout_ttft"
    assert record.error_phase == "first_token"
    assert "keep-alive events received" in record.error_detail
    assert 395 <= record.e2e_ms < 1500
    assert not record.HasField("ttft_ms")


async def test_network_total_timeout(kit: Any, scripted_server: Any, make_executor: Any) -> None:
    tokens = [b'data: {"choices":[{"delta":{"content":"x"},"finish_reason":null}]}\n\n'] * 30
    server = await scripted_server([kit.ScriptedResponse(chunks=tokens, delays_ms=[50] * 30)])
    executor = await make_executor(
        kit.provider_for("openai", server.url), None, pb.Timeouts(total_s=0.5)
    )
    record = await run(executor)

    assert record.error_class == "timeout_total"
    assert record.error_phase == "body"
    assert record.HasField("ttft_ms")
    assert 495 <= record.e2e_ms < 1500
    assert not record.HasField("tpot_ms")


async def test_network_itl_and_tpot(kit: Any, scripted_server: Any, make_executor: Any) -> None:
    token = b'data: {"choices":[{"delta":{"content":"ab"},"finish_reason":null}]}\n\n'
    usage = b'data: {"choices":[],"usage":{"completion_tokens":5,"prompt_tokens":2}}\n\n'
    finish = b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
    chunks = [token] * 5 + [finish, usage, b"data: [DONE]\n\n"]
    delays = [100, 20, 20, 40, 20, 5, 5, 5]
    server = await scripted_server([kit.ScriptedResponse(chunks=chunks, delays_ms=delays)])
    executor = await make_executor(kit.provider_for("openai", server.url))
    record = await run(executor)

    assert record.error_class == ""
    assert record.itl_count == 4
    # Gaps of 20, 20, 40 and 20 ms; arrivals jitter on a loaded machine.
    assert record.itl_p50_ms == pytest.approx(20, abs=15)
    assert record.itl_max_ms == pytest.approx(40, abs=15)
    assert record.itl_mean_ms == pytest.approx(25, abs=15)
    assert record.output_tokens == 5
    assert record.input_tokens == 2
    assert not record.output_tokens_estimated
    assert record.tpot_ms == pytest.approx((record.e2e_ms - record.ttft_ms) / 4)


async def test_network_measure_from_scheduled(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    server = await scripted_server([answer_response(kit, [50])])
    executor = await make_executor(kit.provider_for("openai", server.url))
    late_by_ns = 200_000_000
    scheduled = time.perf_counter_ns() - late_by_ns
    open_loop = await run(executor, scheduled, from_scheduled=True)
    closed_loop = await run(executor, time.perf_counter_ns() - late_by_ns, from_scheduled=False)

    assert open_loop.start_lag_ms >= 200
    assert open_loop.ttft_ms >= 250
    assert open_loop.e2e_ms >= open_loop.ttft_ms
    assert closed_loop.start_lag_ms >= 200
    assert 50 <= closed_loop.ttft_ms < 200


async def test_network_non_stream_ttft_is_body_arrival(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    body = (
        b'{"id":"c","model":"m","choices":[{"message":{"content":"Hello there"},'
        b'"finish_reason":"stop"}],"usage":{"completion_tokens":2,"prompt_tokens":3}}'
    )
    headers = [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")]
    server = await scripted_server(
        [kit.ScriptedResponse(headers=headers, chunks=[body[:20], body[20:]], delays_ms=[30, 100])]
    )
    request = kit.request_spec(stream=False)
    executor = await make_executor(kit.provider_for("openai", server.url), request)
    record = await run(executor)

    assert record.error_class == ""
    assert record.ttft_ms >= 130
    assert record.ttft_ms == pytest.approx(record.e2e_ms, abs=2)
    assert record.ttft_content_ms == record.ttft_ms
    assert record.content_chunks == 1
    assert record.output_tokens == 2
    assert record.response_id == "c"


async def test_network_cancel_marks_record(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    server = await scripted_server([answer_response(kit, [5000])])
    executor = await make_executor(kit.provider_for("openai", server.url))
    record = pb.Record()
    task = asyncio.create_task(executor.execute(record, time.perf_counter_ns(), False))
    assert await asyncio.to_thread(server.request_arrived.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert record.error_class == "cancelled"
    # The cancel may land before or after the response head reached the client.
    assert record.error_phase in ("headers", "first_token")


# TLS: a certificate made with the openssl command-line tool for 127.0.0.1.


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_server(certificate: tuple[Path, Path]) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(ANSWER)
        await response.write_eof()
        return response

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"https://127.0.0.1:{port}"
    await runner.cleanup()


async def test_network_tls_untrusted_certificate(
    kit: Any, tls_server: str, make_executor: Any
) -> None:
    executor = await make_executor(kit.provider_for("openai", tls_server))
    record = await run(executor)

    assert record.error_class == "tls"
    assert record.error_phase == "connect"
    assert "certificate" in record.error_detail.lower()


async def test_network_tls_timing(
    kit: Any,
    tls_server: str,
    certificate: tuple[Path, Path],
    make_executor: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The executor's TLS context honours SSL_CERT_FILE, read when start() runs.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    executor = await make_executor(kit.provider_for("openai", tls_server))
    first = await run(executor)
    second = await run(executor)

    assert first.error_class == ""
    assert first.tls_ms is not None and first.tls_ms > 0
    assert first.connect_ms > 0
    assert first.ttfb_ms > first.connect_ms + first.tls_ms
    assert second.connection_reused
    assert second.tls_ms == 0


@pytest.fixture
async def garbage_server() -> AsyncIterator[int]:
    """A server that answers any connection with bytes that are neither TLS nor HTTP."""

    async def babble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read(1)
            writer.write(b"\x00garbage that is not a protocol\r\n\r\n" * 4)
            await writer.drain()
            await asyncio.sleep(0.2)
        writer.close()

    server = await asyncio.start_server(babble, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()


async def test_network_tls_to_plain_garbage(
    kit: Any, garbage_server: int, make_executor: Any
) -> None:
    executor = await make_executor(
        kit.provider_for("openai", f"https://127.0.0.1:{garbage_server}")
    )
    record = await run(executor)
    assert record.error_class == "tls"


async def test_network_http_garbage_is_malformed(
    kit: Any, garbage_server: int, make_executor: Any
) -> None:
    executor = await make_executor(kit.provider_for("openai", f"http://127.0.0.1:{garbage_server}"))
    record = await run(executor)
    assert record.error_class == "malformed_response"
    assert record.error_phase == "headers"


async def test_network_reset_before_headers(kit: Any, make_executor: Any) -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        sock = writer.get_extra_info("socket")
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        executor = await make_executor(kit.provider_for("openai", f"http://127.0.0.1:{port}"))
        record = await run(executor)
    finally:
        server.close()
    assert record.error_class == "connection_reset"
    assert record.error_phase == "headers"


async def test_network_read_timed_at_arrival(
    kit: Any, scripted_server: Any, make_executor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A callback that blocks the loop for 80 ms runs after the first text chunk came
    # off the socket and before the reading task resumes. TTFT must still end when
    # the bytes arrived, not when the task got to them. The rest comes later, because
    # a read that also contains bytes from a later data_received() gets that later time.
    first = b'data: {"choices":[{"delta":{"content":"first"},"finish_reason":null}]}\n\n'
    rest = b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
    server = await scripted_server(
        [kit.ScriptedResponse(chunks=[first, rest], delays_ms=[50, 150])]
    )
    executor = await make_executor(kit.provider_for("openai", server.url))
    original = TimedResponseHandler.data_received
    blocked: list[int] = []

    def received_then_blocked(handler: TimedResponseHandler, data: bytes) -> None:
        if b"first" in data and not blocked:
            blocked.append(time.perf_counter_ns())
            asyncio.get_running_loop().call_soon(time.sleep, 0.08)
        original(handler, data)

    monkeypatch.setattr(TimedResponseHandler, "data_received", received_then_blocked)
    record = await run(executor)

    assert record.error_class == ""
    assert blocked
    assert record.ttft_ms >= 50
    assert record.ttft_ms < 50 + 60
    assert record.e2e_ms >= 50 + 150


async def test_network_arrival_needs_plausible_time() -> None:
    class Protocol:
        data_ns = 500

    assert arrival_ns(Protocol(), not_before_ns=400, now_ns=900) == 500
    assert arrival_ns(Protocol(), not_before_ns=600, now_ns=900) == 900
    assert arrival_ns(Protocol(), not_before_ns=100, now_ns=450) == 450
    assert arrival_ns(None, not_before_ns=100, now_ns=450) == 450
