"""The delay proxy: added latency, order, loopback-only targets, CONNECT, keep-alive binding."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from llmping.simulator import proxy as proxy_module
from llmping.simulator import start_delay_proxy

TOLERANCE_MS = 15.0


@pytest.fixture
async def proxies() -> AsyncIterator:
    handles = []

    async def start(delay_ms: float, **options):
        handle = await start_delay_proxy("127.0.0.1", 0, delay_ms, **options)
        handles.append(handle)
        return handle

    yield start
    for handle in handles:
        await handle.stop()


async def _time_to_headers_ms(session: aiohttp.ClientSession, url: str, proxy: str | None) -> float:
    sent_ns = time.perf_counter_ns()
    async with session.get(url, proxy=proxy) as response:
        elapsed_ms = (time.perf_counter_ns() - sent_ns) / 1e6
        assert response.status == 200
        await response.read()
    return elapsed_ms


async def _read_http_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one response with a Content-Length body; return its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def test_warm_connection_adds_round_trip(simulator, proxies, session):
    sim = await simulator()
    proxy = await proxies(30.0)
    url = sim.base_url("sim") + "/models"

    direct_ms = statistics.median([await _time_to_headers_ms(session, url, None) for _ in range(5)])
    # The first request opens the proxied connection; the following ones reuse it.
    await _time_to_headers_ms(session, url, proxy.url)
    proxied_ms = statistics.median(
        [await _time_to_headers_ms(session, url, proxy.url) for _ in range(5)]
    )

    added_ms = proxied_ms - direct_ms
    assert added_ms >= 60.0 - 1.0
    assert abs(added_ms - 60.0) < TOLERANCE_MS


async def test_new_connection_pays_handshake(simulator, proxies):
    sim = await simulator()
    proxy = await proxies(25.0)
    url = sim.base_url("sim") + "/models"

    async with aiohttp.ClientSession() as fresh:
        cold_ms = await _time_to_headers_ms(fresh, url, proxy.url)
    # Handshake round trip plus request round trip: 4 x 25 ms.
    assert 100.0 <= cold_ms < 100.0 + TOLERANCE_MS * 2


async def test_asymmetric_delay_without_handshake(simulator, proxies):
    sim = await simulator()
    proxy = await proxies(10.0, return_delay_ms=40.0, handshake_delay=False)
    url = sim.base_url("sim") + "/models"

    async with aiohttp.ClientSession() as fresh:
        cold_ms = await _time_to_headers_ms(fresh, url, proxy.url)
    assert 50.0 <= cold_ms < 50.0 + TOLERANCE_MS * 2


async def test_stream_gaps_survive_proxy(simulator, proxies, session, read_sse, profile, body):
    # A delay line shifts every piece by the same amount, so the token gaps stay intact.
    sim = await simulator(profile(ttft_ms=0.0, tokens_per_s=50.0, output_tokens=10))
    proxy = await proxies(20.0)
    url = sim.base_url("sim") + "/chat/completions"
    async with session.post(url, json=body(), proxy=proxy.url) as response:
        lines = await read_sse(response)

    content = [
        line.received_ns / 1e6
        for line in lines
        if line.text.startswith("data: {")
        and line.data["choices"]
        and line.data["choices"][0]["delta"].get("content")
    ]
    gaps_ms = [later - earlier for earlier, later in itertools.pairwise(content)]
    assert len(content) == 10
    assert abs(statistics.median(gaps_ms) - 20.0) < 5.0
    assert lines[-1].text == "data: [DONE]"


async def test_chunked_request_body_relayed(simulator, proxies, session):
    sim = await simulator()
    proxy = await proxies(5.0)

    async def body_pieces() -> AsyncIterator[bytes]:
        yield b'{"model": "m", "stream": false, '
        yield b'"messages": [{"role": "user", "content": "hi"}]}'

    url = sim.base_url("sim") + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    async with session.post(url, data=body_pieces(), headers=headers, proxy=proxy.url) as response:
        assert response.status == 200
        completion = await response.json()
    assert completion["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET http://192.0.2.1/v1/models HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n",
        b"CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n\r\n",
        b"GET http://example.invalid:8000/x HTTP/1.1\r\nHost: example.invalid\r\n\r\n",
    ],
)
async def test_non_loopback_target_rejected(proxies, monkeypatch, request_head):
    attempts: list[tuple[str, int]] = []

    async def refuse_to_connect(host: str, port: int):
        attempts.append((host, port))
        raise AssertionError("the proxy tried to connect to a rejected target")

    monkeypatch.setattr(proxy_module, "open_target_connection", refuse_to_connect)
    # A long delay shows that a rejection does not even wait for the emulated handshake.
    proxy = await proxies(500.0)

    sent_ns = time.perf_counter_ns()
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(request_head)
    status, body = await asyncio.wait_for(_read_http_response(reader), timeout=5.0)
    elapsed_ms = (time.perf_counter_ns() - sent_ns) / 1e6
    writer.close()

    assert status == 403
    assert b"not a loopback address" in body
    assert elapsed_ms < 200.0
    assert attempts == []


async def test_connect_tunnel_to_loopback(simulator, proxies):
    sim = await simulator()
    proxy = await proxies(10.0)

    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    authority = f"127.0.0.1:{sim.port}"
    writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    established = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
    assert established.startswith(b"HTTP/1.1 200")

    writer.write(f"GET /sim/v1/models HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    status, body = await asyncio.wait_for(_read_http_response(reader), timeout=5.0)
    writer.close()
    assert status == 200
    assert b'"object": "list"' in body


async def test_keepalive_bound_to_first_target(simulator, proxies):
    first = await simulator()
    second = await simulator()
    proxy = await proxies(0.0)

    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    for sim in (first, second):
        url = sim.base_url("sim") + "/models"
        writer.write(f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{sim.port}\r\n\r\n".encode())
        if sim is first:
            status, _ = await asyncio.wait_for(_read_http_response(reader), timeout=5.0)
            assert status == 200

    status, body = await asyncio.wait_for(_read_http_response(reader), timeout=5.0)
    assert status == 502
    assert f"bound to 127.0.0.1:{first.port}".encode() in body
    # The proxy closes the connection after the 502.
    assert await asyncio.wait_for(reader.read(), timeout=5.0) == b""
    writer.close()


async def test_origin_form_request_rejected(proxies):
    proxy = await proxies(0.0)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status, body = await asyncio.wait_for(_read_http_response(reader), timeout=5.0)
    writer.close()
    assert status == 400
    assert b"absolute URL" in body


async def test_unreachable_loopback_target_502(proxies, session):
    proxy = await proxies(0.0)
    # Bind and release a port so that nothing listens on it.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    free_port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()

    async with session.get(f"http://127.0.0.1:{free_port}/x", proxy=proxy.url) as response:
        assert response.status == 502
        assert "cannot connect" in await response.text()
