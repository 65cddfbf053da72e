"""Reading one response body into a RequestAttempt: event streams, JSON bodies, errors.

The body format is chosen by the response's Content-Type, not by the request's stream
flag, because some servers return an event stream for stream=false and some return
errors to a streaming request as a JSON object. Bodies are read with readany(),
never readline(), so a single line longer than aiohttp's line limit still parses.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import aiohttp

from llmping.agent.attempt import RequestAttempt
from llmping.agent.deadlines import DeadlineGuard
from llmping.agent.errors import (
    MALFORMED_RESPONSE,
    PHASE_BODY,
    PHASE_FIRST_TOKEN,
    STREAM_TRUNCATED,
    ClassifiedError,
    classify_exception,
    classify_http_error,
    describe_html,
    http_error_class,
    looks_like_html,
    trim_detail,
)
from llmping.agent.providers.base import ProviderAdapter
from llmping.agent.ratelimit import rate_limit_headers, retry_after_s
from llmping.agent.sse import DEFAULT_MAX_LINE_BYTES, SseEvent, SseParser
from llmping.agent.stream import StreamEnd
from llmping.agent.timing import arrival_ns

# An error body is only needed for its message.
MAX_ERROR_BODY_BYTES = 64 * 1024
# A non-streaming response body larger than this is treated as malformed.
MAX_WHOLE_BODY_BYTES = 16 * 1024 * 1024
# The start of an event stream is kept in case it turns out to be no event stream.
SNIFF_BYTES = 64 * 1024
_EVENT_STREAM_STARTS = (b"data:", b"event:", b":", b"id:")


class ResponseReader:
    """Read one response into the attempt's accumulator, timing every read."""

    def __init__(
        self,
        adapter: ProviderAdapter,
        attempt: RequestAttempt,
        guard: DeadlineGuard,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.adapter = adapter
        self.attempt = attempt
        self.guard = guard
        # The connection's protocol, for the time its bytes arrived (see arrival_ns).
        self._protocol: object = None
        # When the last body read returned: bytes read later arrived after it.
        self._resumed_ns = attempt.send_ns
        self.max_line_bytes = max_line_bytes
        # True when the response ended at an end marker and the rest of the body
        # (usually just the chunked terminator) should be read to reuse the connection.
        self.wants_drain = False

    def on_headers(self, response: aiohttp.ClientResponse) -> None:
        """Record the arrival and the facts of the response head."""
        connection = response.connection
        self._protocol = connection.protocol if connection is not None else None
        # Not noted as a resume: body bytes that came with the head are still unread.
        now_ns = arrival_ns(self._protocol, self._resumed_ns, time.perf_counter_ns())
        attempt = self.attempt
        attempt.headers_ns = now_ns
        attempt.phase = PHASE_FIRST_TOKEN
        attempt.http_status = response.status
        version = response.version
        attempt.http_version = f"{version.major}.{version.minor}" if version else ""
        attempt.remote_ip = attempt.timing.peer_ip
        self.guard.bytes_arrived(now_ns)

    async def read(self, response: aiohttp.ClientResponse, stream_requested: bool) -> None:
        """Read the body that follows the head, by status and Content-Type."""
        if not 200 <= response.status < 300:
            await self._read_error(response)
            return
        content_type = response.headers.get("Content-Type", "").lower()
        if "text/event-stream" in content_type:
            await self._read_stream(response)
        elif "json" in content_type or "text/html" in content_type or not stream_requested:
            await self._read_whole(response)
        else:
            # No or an unusual Content-Type for a streaming request: try the stream
            # parser, which falls back to the whole-body reading for non-stream bodies.
            await self._read_stream(response)

    async def _read_error(self, response: aiohttp.ClientResponse) -> None:
        attempt = self.attempt
        headers = response.headers
        attempt.retry_after_s = retry_after_s(headers, time.time())
        if response.status == 429:
            attempt.rate_limit_headers = rate_limit_headers(headers)
        # Set the class before reading the body, so a timeout while reading an error
        # body cannot hide the status.
        attempt.error = ClassifiedError(http_error_class(response.status), "no body read")
        body = await self._read_up_to(response, MAX_ERROR_BODY_BYTES, truncate=True)
        attempt.finish()
        attempt.error = classify_http_error(
            response.status,
            headers,
            body,
            request_path=urlsplit(self.adapter.build_url()).path,
            example_base_url=self.adapter.example_base_url,
        )

    async def _read_whole(self, response: aiohttp.ClientResponse) -> None:
        body = await self._read_up_to(response, MAX_WHOLE_BODY_BYTES, truncate=False)
        now_ns = time.perf_counter_ns()
        self.attempt.finish(now_ns)
        self._interpret_whole(response, body, now_ns)

    async def _read_stream(self, response: aiohttp.ClientResponse) -> None:
        attempt = self.attempt
        acc = attempt.acc
        parser = SseParser(self.max_line_bytes)
        prefix = bytearray()
        try:
            while True:
                chunk = await response.content.readany()
                if not chunk:
                    break
                now_ns = self._arrived_ns()
                self._count(chunk, now_ns)
                if len(prefix) < SNIFF_BYTES and parser.field_lines == 0:
                    prefix += chunk[: SNIFF_BYTES - len(prefix)]
                self._apply_parts(parser.feed_parts(chunk), now_ns)
                if acc.error is not None or acc.done_seen:
                    # The response is over at its end marker or error event, whatever
                    # the server still sends.
                    attempt.finish(now_ns)
                    self.wants_drain = acc.error is None
                    self._conclude(StreamEnd.CLEAN)
                    return
        except (aiohttp.ClientError, OSError) as exc:
            self._end_aborted(exc)
            return

        end_ns = time.perf_counter_ns()
        if parser.field_lines == 0 and acc.keepalive_count == 0 and prefix.strip():
            attempt.finish(end_ns)
            self._interpret_whole(response, bytes(prefix), end_ns)
            return
        self._apply_final(parser, end_ns)
        attempt.finish(end_ns)
        self._conclude(StreamEnd.CLEAN)

    def _conclude(self, end: StreamEnd) -> None:
        error = self.attempt.acc.outcome(end)
        if error is not None:
            self.attempt.fail(error)

    def _apply_final(self, parser: SseParser, end_ns: int) -> None:
        try:
            self._apply(parser.finish(), end_ns)
        except ClassifiedError as exc:
            # The body ended in the middle of an event, which is a cut stream unless
            # the response was already complete.
            if not (self.attempt.acc.finish_reason or self.attempt.acc.done_seen):
                detail = f"stream ended inside an event ({exc.detail})"
                raise ClassifiedError(STREAM_TRUNCATED, detail) from exc

    def _end_aborted(self, exc: BaseException) -> None:
        attempt = self.attempt
        attempt.finish()
        error = classify_exception(exc, attempt.phase)
        if error.error_class == STREAM_TRUNCATED:
            outcome = attempt.acc.outcome(StreamEnd.ABORTED, error.detail)
            if outcome is None:
                return
            error = outcome
        attempt.fail(ClassifiedError(error.error_class, error.detail, attempt.phase))

    def _apply(self, events: list[SseEvent], now_ns: int) -> None:
        acc = self.attempt.acc
        for event in events:
            self.adapter.interpret_event(event, now_ns, acc)
            if acc.error is not None:
                break
        self._after_stream_text()

    def _apply_parts(
        self, parts: tuple[list[SseEvent], list[bytes], list[SseEvent]], now_ns: int
    ) -> None:
        """Apply what SseParser.feed_parts() returned for one read, in stream order."""
        before, payloads, after = parts
        acc = self.attempt.acc
        if before:
            self._apply(before, now_ns)
        if payloads and acc.error is None:
            self.adapter.interpret_payloads(payloads, now_ns, acc)
            self._after_stream_text()
        if after and acc.error is None:
            self._apply(after, now_ns)

    def _after_stream_text(self) -> None:
        if self.attempt.acc.first_text_ns is not None and self.attempt.phase == PHASE_FIRST_TOKEN:
            self.attempt.phase = PHASE_BODY
            self.guard.text_arrived()

    def _interpret_whole(self, response: aiohttp.ClientResponse, body: bytes, now_ns: int) -> None:
        stripped = body.strip()
        if looks_like_html(body):
            detail = f"HTML where JSON was expected: {describe_html(response.headers, body)}"
            raise ClassifiedError(MALFORMED_RESPONSE, detail)
        if stripped.startswith(_EVENT_STREAM_STARTS):
            self._interpret_event_stream_body(body, now_ns)
            return
        if not stripped:
            self._conclude(StreamEnd.CLEAN)
            return
        try:
            obj = json.loads(body)
        except ValueError as exc:
            text = body[:200].decode("utf-8", "replace")
            detail = f"invalid JSON body: {trim_detail(text, 80)}"
            raise ClassifiedError(MALFORMED_RESPONSE, detail) from exc
        self.adapter.interpret_body(obj, now_ns, self.attempt.acc)
        self._after_text()
        self._conclude(StreamEnd.WHOLE_BODY)

    def _interpret_event_stream_body(self, body: bytes, now_ns: int) -> None:
        # An event stream labelled as JSON (or unlabelled): every event arrived with
        # the whole body, so they all share its arrival time.
        parser = SseParser(self.max_line_bytes)
        self._apply(parser.feed(body), now_ns)
        self._apply_final(parser, now_ns)
        self._conclude(StreamEnd.CLEAN)

    def _after_text(self) -> None:
        if self.attempt.acc.first_text_ns is not None:
            self.attempt.phase = PHASE_BODY

    async def _read_up_to(
        self, response: aiohttp.ClientResponse, limit: int, truncate: bool
    ) -> bytes:
        body = bytearray()
        try:
            while True:
                chunk = await response.content.readany()
                if not chunk:
                    return bytes(body)
                self._count(chunk, time.perf_counter_ns())
                body += chunk
                if len(body) > limit:
                    if truncate:
                        return bytes(body[:limit])
                    detail = f"body longer than {limit} bytes"
                    raise ClassifiedError(MALFORMED_RESPONSE, detail)
        except (aiohttp.ClientError, OSError):
            if truncate:
                # An error response whose body was cut still has its status.
                return bytes(body)
            raise

    def _arrived_ns(self) -> int:
        """Return when the bytes just read arrived, and note that the task resumed now."""
        now_ns = time.perf_counter_ns()
        arrived_ns = arrival_ns(self._protocol, self._resumed_ns, now_ns)
        self._resumed_ns = now_ns
        return arrived_ns

    def _count(self, chunk: bytes, now_ns: int) -> None:
        self.attempt.bytes_received += len(chunk)
        self.guard.bytes_arrived(now_ns)
