"""Incremental Server-Sent Events parser shared by every provider adapter.

Bytes go in as they arrive from the socket, whatever the read boundaries; events come
out. The rules follow the WHATWG "event stream interpretation" algorithm with two
deliberate differences, both for real providers:

* Comment lines (starting with ":") come out at once as keep-alive events, so the
  caller can count them. They never carry generated text.
* At a clean end of the body, a last event with no trailing blank line is still
  dispatched, because some servers end with "data: [DONE]" and no blank line. The
  caller must not call finish() after an aborted connection, so a half-sent event
  is dropped there.

Lines are split on bytes and decoded only when complete. CR and LF never occur inside
a multi-byte UTF-8 sequence, so a character split across two reads is whole again by
the time its line is decoded, and no incremental decoder is needed.

Memory is bounded: a line, or the data of one event, longer than max_line_bytes raises
ClassifiedError(malformed_response). The limit is far above aiohttp's readline limit
on purpose: providers echo prompts or tool results in a single event of several
hundred kilobytes, so callers must read with iter_any(), never readline().
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmping.agent.errors import MALFORMED_RESPONSE, ClassifiedError

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
_FIELD_NAMES = frozenset({"data", "event", "id", "retry"})


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event, or one comment line when is_comment is true."""

    event: str = "message"
    data: str = ""
    id: str = ""
    is_comment: bool = False


class SseParser:
    """Turn a byte stream into SSE events; one parser per response."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        # Number of data, event, id and retry lines seen, so a caller can tell a body
        # that is no event stream at all (an error text, a JSON object) from an empty
        # stream.
        self.field_lines = 0
        self._buffer = bytearray()
        self._scan_from = 0
        self._skip_lf = False
        self._bom_checked = False
        self._event_name = ""
        self._data_lines: list[str] = []
        self._data_bytes = 0
        self._last_id = ""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Add one read's bytes; return the events and comments they complete."""
        if not chunk:
            return []
        if self._skip_lf:
            # The previous read ended with CR: a LF here completes that CRLF and is
            # not a second (blank) line.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        self._buffer += chunk
        if not self._bom_checked and not self._strip_bom():
            return []

        events: list[SseEvent] = []
        start = 0
        buffer = self._buffer
        # The bytes before _scan_from hold no line end (they are the start of a long
        # line), so a line spread over many reads is scanned once, not once per read.
        for match in _LINE_END.finditer(buffer, self._scan_from):
            self._check_size(match.start() - start, "line")
            self._process_line(bytes(buffer[start : match.start()]), events)
            start = match.end()
            if match.group() == b"\r" and start == len(buffer):
                self._skip_lf = True
        del buffer[:start]
        self._scan_from = len(buffer)
        self._check_size(len(buffer), "line")
        return events

    def finish(self) -> list[SseEvent]:
        """Flush at a clean end of the body: the last line and the pending event."""
        events: list[SseEvent] = []
        if self._buffer:
            self._process_line(bytes(self._buffer), events)
            self._buffer.clear()
            self._scan_from = 0
        self._process_line(b"", events)
        return events

    def _strip_bom(self) -> bool:
        # A UTF-8 byte order mark may open the stream and is not part of the first line.
        if len(self._buffer) < len(_BOM) and _BOM.startswith(self._buffer):
            return False
        if self._buffer.startswith(_BOM):
            del self._buffer[: len(_BOM)]
        self._bom_checked = True
        return True

    def _check_size(self, size: int, unit: str) -> None:
        if size > self.max_line_bytes:
            detail = f"{unit} longer than {self.max_line_bytes} bytes"
            raise ClassifiedError(MALFORMED_RESPONSE, detail)

    def _process_line(self, raw: bytes, events: list[SseEvent]) -> None:
        if not raw:
            self._dispatch(events)
            return
        line = raw.decode("utf-8", "replace")
        if line.startswith(":"):
            events.append(SseEvent(event="", data=_strip_one_space(line[1:]), is_comment=True))
            return

        name, colon, value = line.partition(":")
        value = _strip_one_space(value) if colon else ""
        if name in _FIELD_NAMES:
            self.field_lines += 1
        if name == "data":
            self._data_bytes += len(raw)
            self._check_size(self._data_bytes, "event")
            self._data_lines.append(value)
        elif name == "event":
            self._event_name = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        # The standard ignores "retry" here (no reconnects) and unknown field names.

    def _dispatch(self, events: list[SseEvent]) -> None:
        # An event with no data line is not dispatched (standard rule), but its
        # name must not leak into the next event.
        if self._data_lines:
            data = "\n".join(self._data_lines)
            events.append(
                SseEvent(event=self._event_name or "message", data=data, id=self._last_id)
            )
        self._event_name = ""
        self._data_lines = []
        self._data_bytes = 0


def _strip_one_space(value: str) -> str:
    return value[1:] if value.startswith(" ") else value
