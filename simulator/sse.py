"""Timed writing of responses, shared by the OpenAI and Anthropic wire formats."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
}


async def sleep_until_ns(deadline_ns: int) -> None:
    """Sleep until a time.perf_counter_ns() deadline; return at once if it has passed.

    asyncio wakes timers at millisecond resolution on Linux (epoll timeouts are whole
    milliseconds, rounded up), so a wake-up is up to about 1 ms late.
    """
    delay_ns = deadline_ns - time.perf_counter_ns()
    if delay_ns > 0:
        await asyncio.sleep(delay_ns / 1e9)


def data_event(payload: object) -> bytes:
    """Encode one ``data:`` event; non-ASCII text stays raw UTF-8 as real providers send it."""
    return b"data: " + _compact_json(payload) + b"\n\n"


def named_event(name: str, payload: object) -> bytes:
    """Encode one event with an ``event:`` line, as Anthropic's stream uses."""
    return b"event: " + name.encode() + b"\ndata: " + _compact_json(payload) + b"\n\n"


def comment_line(text: str) -> bytes:
    """Encode an SSE comment, which clients must ignore."""
    return b": " + text.encode() + b"\n\n"


class ClientGone(Exception):
    """The client closed the connection while a response was being streamed.

    ``response`` is the prepared response, which the handler returns so that aiohttp
    finishes it quietly instead of logging the write error.
    """

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__("client closed the connection")
        self.response = response


class SseStream:
    """A prepared streaming response that sends each event as its own write."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self._request = request
        self._response = response

    @property
    def response(self) -> web.StreamResponse:
        return self._response

    async def send(self, payload: bytes) -> None:
        """Write one event; raise ClientGone when the client has closed the connection."""
        try:
            await self._response.write(payload)
        except ConnectionResetError as exc:
            raise ClientGone(self._response) from exc

    async def send_at(self, due_ns: int, payload: bytes) -> None:
        await sleep_until_ns(due_ns)
        await self.send(payload)

    async def send_keepalives(
        self, start_ns: int, interval_ms: float, until_ns: int, payload: bytes
    ) -> None:
        """Send payload every interval_ms after start_ns while before until_ns."""
        if interval_ms <= 0:
            return
        interval_ns = round(interval_ms * 1_000_000)
        due_ns = start_ns + interval_ns
        while due_ns < until_ns:
            await self.send_at(due_ns, payload)
            due_ns += interval_ns

    async def finish(self) -> None:
        try:
            await self._response.write_eof()
        except ConnectionResetError as exc:
            raise ClientGone(self._response) from exc

    def cut_connection(self) -> None:
        """Close the connection without the final empty chunk, like a dropped upstream.

        The client sees the body end early, which it must classify as truncated.
        """
        transport = self._request.transport
        if transport is not None:
            transport.close()


async def open_sse(request: web.Request, headers: dict[str, str]) -> SseStream:
    """Send 200 and the event-stream headers, and return the stream to write events to."""
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **headers})
    await response.prepare(request)
    return SseStream(request, response)


async def send_truncated_body(
    request: web.Request, body: bytes, headers: dict[str, str]
) -> web.StreamResponse:
    """Promise the full Content-Length, send half of the JSON body and close the connection."""
    response = web.StreamResponse(
        status=200, headers={"Content-Type": "application/json", **headers}
    )
    response.content_length = len(body)
    await response.prepare(request)
    try:
        await response.write(body[: len(body) // 2])
    except ConnectionResetError as exc:
        raise ClientGone(response) from exc
    if request.transport is not None:
        request.transport.close()
    return response


def _compact_json(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
