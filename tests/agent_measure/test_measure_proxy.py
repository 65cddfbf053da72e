"""Requests through an HTTP forward proxy and a SOCKS5 proxy, both written here.

Both proxies relay only to 127.0.0.1 and refuse every other destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from llmping.v1 import llmping_pb2 as pb

ANSWER = (
    b'data: {"choices":[{"delta":{"content":"via proxy"},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


@dataclass
class ProxyLog:
    """A running proxy: its port and the destinations it was asked for."""

    port: int = 0
    destinations: list[str] = field(default_factory=list)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.close()


async def _relay(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    await asyncio.gather(_pipe(client[0], upstream[1]), _pipe(upstream[0], client[1]))


@pytest.fixture
async def http_proxy() -> AsyncIterator[ProxyLog]:
    """A forward proxy for plain http:// URLs (absolute-form request lines)."""
    log = ProxyLog()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, rest = head.split(b"\r\n", 1)
        method, target, version = request_line.split(b" ")
        url = urlsplit(target.decode())
        log.destinations.append(target.decode())
        if url.hostname != "127.0.0.1":
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        upstream = await asyncio.open_connection("127.0.0.1", url.port)
        path = url.path + (f"?{url.query}" if url.query else "")
        upstream[1].write(b" ".join([method, path.encode(), version]) + b"\r\n" + rest)
        await _relay((reader, writer), upstream)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    log.port = int(server.sockets[0].getsockname()[1])
    yield log
    server.close()


@pytest.fixture
async def socks5_proxy() -> AsyncIterator[ProxyLog]:
    """A SOCKS5 proxy (no authentication, CONNECT only, RFC 1928)."""
    log = ProxyLog()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _version, method_count = await reader.readexactly(2)
        await reader.readexactly(method_count)
        writer.write(b"\x05\x00")
        _version, _command, _reserved, address_type = await reader.readexactly(4)
        if address_type == 1:
            host = socket.inet_ntoa(await reader.readexactly(4))
        else:
            length = (await reader.readexactly(1))[0]
            host = (await reader.readexactly(length)).decode()
        port = int.from_bytes(await reader.readexactly(2), "big")
        log.destinations.append(f"{host}:{port}")
        if host not in ("127.0.0.1", "localhost"):
            # Reply 0x02: connection not allowed by ruleset.
            writer.write(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")
            writer.close()
            return
        upstream = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + port.to_bytes(2, "big"))
        await _relay((reader, writer), upstream)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    log.port = int(server.sockets[0].getsockname()[1])
    yield log
    server.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _run(executor: Any) -> pb.Record:
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)
    return record


async def test_proxy_http(
    http_proxy: ProxyLog, kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    server = await scripted_server([kit.ScriptedResponse(chunks=[ANSWER], delays_ms=[20])])
    # The provider's own proxy wins over the agent's, which here points at a closed port.
    provider = kit.provider_for(
        "openai", server.url + "/v1", proxy_url=f"http://127.0.0.1:{http_proxy.port}"
    )
    executor = await make_executor(provider, proxy_url=f"http://127.0.0.1:{_closed_port()}")
    record = await _run(executor)

    assert record.error_class == ""
    assert record.finish_reason == "stop"
    assert http_proxy.destinations == [f"{server.url}/v1/chat/completions"]
    assert record.remote_ip == "127.0.0.1"
    assert record.ttft_ms >= 20


async def test_proxy_agent_proxy_used(
    http_proxy: ProxyLog, kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    server = await scripted_server([kit.ScriptedResponse(chunks=[ANSWER], delays_ms=[0])])
    executor = await make_executor(
        kit.provider_for("openai", server.url), proxy_url=f"http://127.0.0.1:{http_proxy.port}"
    )
    record = await _run(executor)
    assert record.error_class == ""
    assert len(http_proxy.destinations) == 1


async def test_proxy_http_unreachable(kit: Any, make_executor: Any) -> None:
    proxy_port = _closed_port()
    provider = kit.provider_for(
        "openai", "http://127.0.0.1:9/v1", proxy_url=f"http://127.0.0.1:{proxy_port}"
    )
    executor = await make_executor(provider)
    record = await _run(executor)
    assert record.error_class == "connection_refused"
    assert (
        record.error_detail
        == f"proxy: cannot connect to 127.0.0.1:{proxy_port}: connection refused"
    )


async def test_proxy_socks5(
    socks5_proxy: ProxyLog, kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    server = await scripted_server([kit.ScriptedResponse(chunks=[ANSWER], delays_ms=[20])])
    provider = kit.provider_for(
        "openai", server.url, proxy_url=f"socks5://127.0.0.1:{socks5_proxy.port}"
    )
    executor = await make_executor(provider)
    first = await _run(executor)
    second = await _run(executor)

    assert first.error_class == ""
    assert first.finish_reason == "stop"
    assert socks5_proxy.destinations == [f"127.0.0.1:{server.port}"]
    assert first.remote_ip == "127.0.0.1"
    assert first.connect_ms > 0
    assert first.dns_ms == 0
    assert second.connection_reused


async def test_proxy_socks5_refuses(socks5_proxy: ProxyLog, kit: Any, make_executor: Any) -> None:
    # The name never reaches a resolver: the SOCKS proxy gets it and refuses it.
    provider = kit.provider_for(
        "openai",
        "http://blocked.llmping.invalid/v1",
        proxy_url=f"socks5://127.0.0.1:{socks5_proxy.port}",
    )
    executor = await make_executor(provider)
    record = await _run(executor)

    assert record.error_class == "connection_refused"
    assert "socks proxy" in record.error_detail
    assert socks5_proxy.destinations == ["blocked.llmping.invalid:80"]


async def test_proxy_socks5_unreachable(kit: Any, make_executor: Any) -> None:
    provider = kit.provider_for(
        "openai", "http://127.0.0.1:9/v1", proxy_url=f"socks5://127.0.0.1:{_closed_port()}"
    )
    executor = await make_executor(provider)
    record = await _run(executor)
    assert record.error_class == "connection_refused"
