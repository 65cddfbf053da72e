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

The parser runs for every read of every response, so it has a fast path. A read with
LF line ends only, or with CRLF line ends only, is split with bytes.split. A read with
a lone CR (old Mac line ends, or a CRLF cut between two reads) takes the regular
expression path, which handles all three line ends.

Memory is bounded: a line, or the data of one event, longer than max_line_bytes raises
ClassifiedError(malformed_response). The limit is far above aiohttp's readline limit
on purpose: providers echo prompts or tool results in a single event of several
hundred kilobytes, so callers must read with iter_any(), never readline().
"""

from __future__ import annotations

import re

from llmping.agent.errors import MALFORMED_RESPONSE, ClassifiedError

DEFAULT_MAX_LINE_BYTES = 4 * 1024 * 1024

_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"
_FIELD_NAMES = frozenset({"data", "event", "id", "retry"})


class SseEvent:
    """One dispatched event, or one comment line when is_comment is true.

    A plain class with __slots__ rather than a frozen dataclass, because a stream
    creates one per chunk and a frozen dataclass's __init__ costs about three times
    as much. Treat instances as immutable.
    """

    __slots__ = ("data", "event", "id", "is_comment")

    def __init__(
        self, event: str = "message", data: str = "", id: str = "", is_comment: bool = False
    ) -> None:
        self.event = event
        self.data = data
        self.id = id
        self.is_comment = is_comment

    def _fields(self) -> tuple[str, str, str, bool]:
        return (self.event, self.data, self.id, self.is_comment)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SseEvent):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"SseEvent(event={self.event!r}, data={self.data!r}, id={self.id!r}, "
            f"is_comment={self.is_comment!r})"
        )


class SseParser:
    """Turn a byte stream into SSE events; one parser per response."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        # Number of data, event, id and retry lines seen, so a caller can tell a body
        # that is no event stream at all (an error text, a JSON object) from an empty
        # stream.
        self.field_lines = 0
        # The start of an unfinished line, as the reads delivered it. Joining the parts
        # only once the line ends keeps a long line spread over many reads linear in
        # its length. The parts never contain CR or LF.
        self._partial: list[bytes] = []
        self._partial_bytes = 0
        self._skip_lf = False
        self._bom_pending: bytes | None = b""
        self._event_name = ""
        self._data_lines: list[str] = []
        self._data_bytes = 0
        self._last_id = ""

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Add one read's bytes; return the events and comments they complete."""
        if self._skip_lf and chunk:
            # The previous read ended with CR: a LF here completes that CRLF and is
            # not a second (blank) line.
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._bom_pending is not None:
            chunk = self._strip_bom(chunk)
        if not chunk:
            return []

        lines = self._split_lines(chunk)
        tail = lines.pop()
        events: list[SseEvent] = []
        if lines:
            if self._partial:
                lines[0] = b"".join([*self._partial, lines[0]])
                self._partial = []
                self._partial_bytes = 0
            self._process_lines(lines, events)
        if tail:
            self._partial.append(tail)
            self._partial_bytes += len(tail)
            self._check_size(self._partial_bytes, "line")
        return events

    def feed_parts(self, chunk: bytes) -> tuple[list[SseEvent], list[bytes], list[SseEvent]]:
        """Add one read's bytes like feed(), returning its plain events as raw payloads.

        A plain event is a "message" event made of one "data:" line and its blank line,
        which is almost every event an OpenAI-style stream sends. The result is
        (events before, payloads, events after): feed() would have returned the events
        before, then one SseEvent("message", payload decoded as UTF-8 with replacement)
        per payload, then the events after. Those SseEvents would also carry the last
        id seen before them. The events after can only be comments, because an event
        needs a blank line to end.

        Reads whose complete events are all plain skip the line loop: the payloads are
        cut out with bytes.split and are not decoded, so a JSON decoder can take the
        bytes as they are. Any other read takes the path of feed().
        """
        if self._bom_pending is not None:
            chunk = self._strip_bom(chunk)
        before: list[SseEvent] = []
        if not self._is_clean():
            cut = self._first_event_end(chunk)
            if cut < 0:
                return self.feed(chunk), [], []
            before = self.feed(chunk[:cut])
            chunk = chunk[cut:]
            if not self._is_clean():
                return before + self.feed(chunk), [], []

        end = chunk.rfind(b"\n\n")
        head = chunk[:end]
        if (
            end <= 0
            or not head.startswith(b"data:")
            or len(head) > self.max_line_bytes
            or b"\r" in chunk
        ):
            return before + self.feed(chunk), [], []
        payloads = _plain_payloads(head)
        if payloads is None:
            return before + self.feed(chunk), [], []
        self.field_lines += len(payloads)
        after = self.feed(chunk[end + 2 :]) if end + 2 < len(chunk) else []
        return before, payloads, after

    def _is_clean(self) -> bool:
        """Return whether the next byte starts a new line of a new event."""
        return not (
            self._partial
            or self._data_lines
            or self._event_name
            or self._skip_lf
            or self._bom_pending is not None
        )

    def _first_event_end(self, chunk: bytes) -> int:
        """Return the index just past the first event end in chunk, or -1 if unsure."""
        if b"\r" in chunk:
            return -1
        if not self._partial and chunk[:1] == b"\n":
            # The previous read ended with a complete line, so this LF is a blank line.
            return 1
        end = chunk.find(b"\n\n")
        return -1 if end < 0 else end + 2

    def finish(self) -> list[SseEvent]:
        """Flush at a clean end of the body: the last line and the pending event."""
        events: list[SseEvent] = []
        lines = [b""]
        if self._partial:
            lines.insert(0, b"".join(self._partial))
            self._partial = []
            self._partial_bytes = 0
        self._process_lines(lines, events)
        return events

    def _strip_bom(self, chunk: bytes) -> bytes:
        # A UTF-8 byte order mark may open the stream and is not part of the first
        # line. Until three bytes have arrived, the bytes that match its start wait.
        assert self._bom_pending is not None
        start = self._bom_pending + chunk
        if len(start) < len(_BOM) and _BOM.startswith(start):
            self._bom_pending = start
            return b""
        self._bom_pending = None
        return start[len(_BOM) :] if start.startswith(_BOM) else start

    def _split_lines(self, chunk: bytes) -> list[bytes]:
        """Return the complete lines of chunk followed by the unfinished rest."""
        if b"\r" not in chunk:
            return chunk.split(b"\n")
        if chunk.count(b"\r") == chunk.count(b"\r\n"):
            # Every CR is the first half of a CRLF, so it ends a line and nothing else.
            lines = chunk.split(b"\n")
            return [line[:-1] if line[-1:] == b"\r" else line for line in lines]
        return self._split_lines_any_end(chunk)

    def _split_lines_any_end(self, chunk: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        for match in _LINE_END.finditer(chunk):
            lines.append(chunk[start : match.start()])
            start = match.end()
        if chunk[-1:] == b"\r":
            # The LF of this CRLF may come with the next read.
            self._skip_lf = True
        lines.append(chunk[start:])
        return lines

    def _check_size(self, size: int, unit: str) -> None:
        if size > self.max_line_bytes:
            detail = f"{unit} longer than {self.max_line_bytes} bytes"
            raise ClassifiedError(MALFORMED_RESPONSE, detail)

    def _process_lines(self, lines: list[bytes], events: list[SseEvent]) -> None:
        max_line_bytes = self.max_line_bytes
        for raw in lines:
            if len(raw) > max_line_bytes:
                self._check_size(len(raw), "line")
            if not raw:
                if self._data_lines:
                    self._dispatch(events)
                else:
                    # An event with no data line is not dispatched (standard rule), but
                    # its name must not leak into the next event.
                    self._event_name = ""
            elif raw.startswith(b"data:"):
                # The common line, read without splitting it at the colon. Decoding only
                # the value gives the same text, because "data: " is whole ASCII.
                self.field_lines += 1
                self._data_bytes += len(raw)
                if self._data_bytes > max_line_bytes:
                    self._check_size(self._data_bytes, "event")
                value = raw[6:] if raw[5:6] == b" " else raw[5:]
                self._data_lines.append(value.decode("utf-8", "replace"))
            else:
                self._process_other_line(raw, events)

    def _process_other_line(self, raw: bytes, events: list[SseEvent]) -> None:
        line = raw.decode("utf-8", "replace")
        if line.startswith(":"):
            events.append(SseEvent("", _strip_one_space(line[1:]), "", True))
            return

        name, colon, value = line.partition(":")
        value = _strip_one_space(value) if colon else ""
        if name in _FIELD_NAMES:
            self.field_lines += 1
        if name == "data":
            # Only "data" without a colon gets here; "data:..." takes the fast path.
            self._data_bytes += len(raw)
            self._check_size(self._data_bytes, "event")
            self._data_lines.append(value)
        elif name == "event":
            self._event_name = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        # The standard ignores "retry" here (no reconnects) and unknown field names.

    def _dispatch(self, events: list[SseEvent]) -> None:
        data_lines = self._data_lines
        data = data_lines[0] if len(data_lines) == 1 else "\n".join(data_lines)
        events.append(SseEvent(self._event_name or "message", data, self._last_id))
        self._event_name = ""
        self._data_lines = []
        self._data_bytes = 0


def _plain_payloads(head: bytes) -> list[bytes] | None:
    """Split complete events into their data values, or return None unless all are plain.

    head contains whole events separated by blank lines, without the last blank line, and
    has no CR. Each event is plain when it is one line that starts with "data:". The
    split on the separator proves that every event starts so, and the count of LF
    proves that every LF belongs to a separator, so no loop over the lines is needed.
    Only LF is counted because bytes.count of a two-byte pattern costs about three
    times as much in CPython 3.11.
    """
    if head.startswith(b"data: "):
        # A later event with "data:" and no space stays inside the value before it,
        # and the count below then sends the read to the line loop.
        values = head[6:].split(b"\n\ndata: ")
    else:
        values = head[5:].split(b"\n\ndata:")
        values = [value[1:] if value[:1] == b" " else value for value in values]
    if head.count(b"\n") != 2 * (len(values) - 1):
        # Another line inside an event, an extra blank line, or an event that does not
        # start with "data:".
        return None
    return values


def _strip_one_space(value: str) -> str:
    return value[1:] if value.startswith(" ") else value
