"""Fixtures for the measurement tests.

scripted_server starts a raw HTTP/1.1 server on 127.0.0.1 port 0 that plays scripted
responses byte for byte: the head, then each chunk as its own write (its own HTTP/1.1
chunk when the head says Transfer-Encoding: chunked) after its delay, then the
termination (close, abort or stall). A raw server is needed because aiohttp's own
server cannot drop a connection mid-chunk or split a UTF-8 character on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from llmping.agent.request import RequestExecutor
from llmping.v1 import llmping_pb2 as pb

API_KEY = "sk-llmping-test-SECRET-0123456789"


@dataclass
class ScriptedResponse:
    """One response to play: head, chunks with delays before each, termination."""

    status: int = 200
    headers: list[tuple[str, str]] = field(
        default_factory=lambda: [
            ("Content-Type", "text/event-stream"),
            ("Transfer-Encoding", "chunked"),
        ]
    )
    chunks: list[bytes] = field(default_factory=list)
    delays_ms: list[float] = field(default_factory=list)
    termination: str = "close"


@dataclass
class ReceivedRequest:
    """One request as the server received it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


class ScriptedServer:
    """Raw HTTP/1.1 server that answers requests with scripted responses.

    It runs its own event loop in a thread, so the client's parsing work cannot delay
    the server's writes and skew the timings under test.
    """

    def __init__(self, responses: list[ScriptedResponse]) -> None:
        self._responses = responses
        self.requests: list[ReceivedRequest] = []
        # perf_counter_ns just before each chunk of the latest response was written.
        # The server thread shares the test's clock, so client-side arrival times can
        # be checked against these exactly.
        self.chunk_sent_ns: list[int] = []
        # Set (from the server thread) when the first request has arrived.
        self.request_arrived = threading.Event()
        self.connections = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        await asyncio.wrap_future(future)

    async def close(self) -> None:
        future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        await asyncio.wrap_future(future)
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 5)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        # With a zero write limit, drain() returns only once every byte is sent.
        writer.transport.set_write_buffer_limits(high=0)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                self.request_arrived.set()
                index = min(len(self.requests) - 1, len(self._responses) - 1)
                self.chunk_sent_ns = []
                response = self._responses[index]
                if not await _play(response, reader, writer, self.chunk_sent_ns):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
            self._tasks.discard(task)


async def _read_request(reader: asyncio.StreamReader) -> ReceivedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return ReceivedRequest(method, target, headers, body)


async def _play(
    response: ScriptedResponse,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    chunk_sent_ns: list[int],
) -> bool:
    """Write one response; return True when the connection can serve another request."""
    loop = asyncio.get_running_loop()
    reason = _reason(response.status)
    head = f"HTTP/1.1 {response.status} {reason}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in response.headers) + "\r\n"
    writer.write(head.encode("latin-1"))
    await writer.drain()

    names = {name.lower(): value.lower() for name, value in response.headers}
    chunked = "chunked" in names.get("transfer-encoding", "")
    # Absolute schedule: each delay counts from the previous chunk's planned time, so
    # scheduling jitter does not add up over many chunks.
    start = loop.time()
    offset_s = 0.0
    for chunk, delay_ms in zip(response.chunks, response.delays_ms, strict=True):
        offset_s += delay_ms / 1000
        await asyncio.sleep(max(0.0, start + offset_s - loop.time()))
        chunk_sent_ns.append(time.perf_counter_ns())
        writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
        await writer.drain()

    if response.termination == "abort":
        # drain() waited until the kernel took every byte (write limit 0), so the
        # abort drops the connection right after the last chunk, not before it.
        writer.transport.abort()
        return False
    if response.termination == "stall":
        # Send nothing more and wait until the client gives up.
        await reader.read()
        return False
    if chunked:
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    return chunked or "content-length" in names


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


@pytest.fixture
async def scripted_server() -> AsyncIterator[Callable[..., Any]]:
    """Return an async factory: await scripted_server([ScriptedResponse(...)])."""
    servers: list[ScriptedServer] = []

    async def start(responses: list[ScriptedResponse]) -> ScriptedServer:
        server = ScriptedServer(responses)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


def provider_for(kind: str, base_url: str, **fields: Any) -> pb.Provider:
    """Return a provider of the kind pointing at base_url."""
    provider = pb.Provider(name="test", kind=kind, base_url=base_url, model="test-model")
    if kind == "azure":
        provider.deployment = "test-deployment"
        provider.api_version = "2024-10-21"
    for name, value in fields.items():
        setattr(provider, name, value)
    return provider


def request_spec(stream: bool = True, **fields: Any) -> pb.RequestSpec:
    """Return a one-message request spec."""
    spec = pb.RequestSpec(
        messages=[pb.ChatMessage(role="user", content="hi")],
        max_tokens=32,
        stream=stream,
        include_usage=True,
    )
    for name, value in fields.items():
        setattr(spec, name, value)
    return spec


@pytest.fixture
def kit() -> SimpleNamespace:
    """Helpers the test modules share (conftest modules cannot be imported)."""
    return SimpleNamespace(
        API_KEY=API_KEY,
        ScriptedResponse=ScriptedResponse,
        provider_for=provider_for,
        request_spec=request_spec,
    )


@pytest.fixture
async def make_executor() -> AsyncIterator[Callable[..., Any]]:
    """Return an async factory of started RequestExecutors, closed after the test."""
    executors: list[RequestExecutor] = []

    async def make(
        provider: pb.Provider,
        request: pb.RequestSpec | None = None,
        timeouts: pb.Timeouts | None = None,
        api_key: str | None = API_KEY,
        proxy_url: str | None = None,
    ) -> RequestExecutor:
        executor = RequestExecutor(
            provider,
            request if request is not None else request_spec(),
            timeouts if timeouts is not None else pb.Timeouts(),
            api_key,
            proxy_url,
        )
        await executor.start()
        executors.append(executor)
        return executor

    yield make
    for executor in executors:
        await executor.close()
