"""A chat completions server with exact, known delays: the ground truth for bench/accuracy.py.

Every request gets response headers at once, its first text chunk ``--ttft-ms`` after
the request arrived, then one chunk every ``--gap-ms``. The last text chunk travels in
the same write as the finish chunk, the usage chunk and ``data: [DONE]``. So the true
time to first token is ttft_ms and the true end-to-end time is
ttft_ms + (chunks - 1) * gap_ms, both counted from the request's arrival.

asyncio and aiohttp cannot be the truth: their timers go through epoll, whose timeout
has a 1 ms resolution, so a sleep can end up to a millisecond late. This server is
one thread with non-blocking sockets that blocks in epoll only while the next write is
more than 2 ms away and otherwise polls in a tight loop, so each write leaves within
microseconds of its due time. It is meant to own a core (``taskset``), and it turns the
garbage collector off because a full collection pauses it for milliseconds.

Each response's chunks carry the id ``chatcmpl-NNNNNNNNNN`` (the request's number), so a
client can match its records to the server's timings. On SIGTERM or SIGINT the server
prints how late its own writes left as one JSON line and, with ``--timings-file``,
writes one line per request: id, arrival, first and last write, as
``time.perf_counter_ns()`` values, which on Linux come from CLOCK_MONOTONIC and so are
comparable between processes on one machine.

Usage: python bench/accuracy_server.py --port 0 [--ttft-ms 100 --gap-ms 5 --chunks 32]
prints ``accuracy server listening on http://127.0.0.1:PORT`` once it accepts requests.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import heapq
import itertools
import json
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

from harness import LOOPBACK, summarize

# Below this distance to the next due write the loop stops blocking in epoll.
SPIN_WINDOW_NS = 2_000_000
READ_SIZE = 65536
MAX_HEADER_BYTES = 65536
ID_PLACEHOLDER = b"@@@@@@@@@@"


@dataclass
class DelayProfile:
    """The injected delays, in milliseconds from the request's arrival."""

    ttft_ms: float
    gap_ms: float
    chunks: int

    @property
    def e2e_ms(self) -> float:
        return self.ttft_ms + (self.chunks - 1) * self.gap_ms


@dataclass
class Connection:
    """One client connection: bytes read but not parsed, bytes not yet sent."""

    sock: socket.socket
    inbound: bytearray = field(default_factory=bytearray)
    outbound: bytearray = field(default_factory=bytearray)


@dataclass
class RequestTimings:
    """One request's instants on the server, as perf_counter_ns values."""

    arrival_ns: int
    first_write_ns: int = 0
    last_write_ns: int = 0


@dataclass
class Lateness:
    """How late the server's own writes left, in nanoseconds after their due time."""

    first_chunk_ns: list[int] = field(default_factory=list)
    last_chunk_ns: list[int] = field(default_factory=list)
    all_writes_ns: list[int] = field(default_factory=list)
    requests: int = 0
    per_request: list[RequestTimings] = field(default_factory=list)


def build_pieces(profile: DelayProfile) -> list[bytes]:
    """Build the event-stream writes of one response, the last write closing the stream."""
    pieces: list[bytes] = []
    for index in range(profile.chunks):
        delta: dict[str, str] = {"content": f" word{index}"}
        if index == 0:
            delta = {"role": "assistant", "content": "word0"}
        pieces.append(_event([{"index": 0, "delta": delta, "finish_reason": None}], None))
    closing = _event([{"index": 0, "delta": {}, "finish_reason": "stop"}], None)
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": profile.chunks,
        "total_tokens": 12 + profile.chunks,
    }
    closing += _event([], usage) + b"data: [DONE]\n\n"
    pieces[-1] += closing
    return pieces


def _event(choices: list[dict[str, object]], usage: dict[str, int] | None) -> bytes:
    chunk = {
        "id": "chatcmpl-" + ID_PLACEHOLDER.decode(),
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": choices,
        "usage": usage,
    }
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


class ExactDelayServer:
    """The single-threaded epoll server; see the module docstring."""

    def __init__(self, listener: socket.socket, profile: DelayProfile) -> None:
        self.listener = listener
        self.profile = profile
        self.pieces = build_pieces(profile)
        body_length = sum(len(piece) for piece in self.pieces)
        self.headers = (
            "HTTP/1.1 200 OK\r\n"
            "Content-Type: text/event-stream\r\n"
            f"Content-Length: {body_length}\r\n"
            "Connection: keep-alive\r\n\r\n"
        ).encode()
        self.offsets_ns = [
            round((profile.ttft_ms + index * profile.gap_ms) * 1e6)
            for index in range(profile.chunks)
        ]
        self.epoll = select.epoll()
        self.connections: dict[int, Connection] = {}
        # (due_ns, tie-breaker, file descriptor, piece index, request number)
        self.schedule: list[tuple[int, int, int, int, int]] = []
        self.sequence = itertools.count()
        self.lateness = Lateness()
        self.stopping = False

    def serve(self) -> None:
        """Accept, read and write until SIGTERM or SIGINT sets ``stopping``."""
        self.listener.setblocking(False)
        self.epoll.register(self.listener.fileno(), select.EPOLLIN)
        while not self.stopping:
            self._write_due()
            for fd, events in self.epoll.poll(self._poll_timeout_s()):
                self._handle_event(fd, events)

    def _poll_timeout_s(self) -> float:
        if not self.schedule:
            return 0.05
        remaining_ns = self.schedule[0][0] - time.perf_counter_ns()
        if remaining_ns <= SPIN_WINDOW_NS:
            return 0.0
        # epoll rounds the timeout up to whole milliseconds, so wake one early.
        return (remaining_ns - SPIN_WINDOW_NS) / 1e9

    def _write_due(self) -> None:
        now_ns = time.perf_counter_ns()
        while self.schedule and self.schedule[0][0] <= now_ns:
            due_ns, _, fd, piece_index, number = heapq.heappop(self.schedule)
            connection = self.connections.get(fd)
            if connection is None:
                continue
            piece = self.pieces[piece_index].replace(ID_PLACEHOLDER, b"%010d" % number)
            self._send(connection, piece)
            now_ns = time.perf_counter_ns()
            self._note_write(number, piece_index, due_ns, now_ns)

    def _note_write(self, number: int, piece_index: int, due_ns: int, written_ns: int) -> None:
        late_ns = written_ns - due_ns
        self.lateness.all_writes_ns.append(late_ns)
        timings = self.lateness.per_request[number]
        if piece_index == 0:
            self.lateness.first_chunk_ns.append(late_ns)
            timings.first_write_ns = written_ns
        if piece_index == len(self.pieces) - 1:
            self.lateness.last_chunk_ns.append(late_ns)
            timings.last_write_ns = written_ns

    def _handle_event(self, fd: int, events: int) -> None:
        if fd == self.listener.fileno():
            self._accept()
            return
        connection = self.connections.get(fd)
        if connection is None:
            return
        if events & select.EPOLLOUT:
            self._flush(connection)
        if events & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            self._read(connection)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connections[sock.fileno()] = Connection(sock)
            self.epoll.register(sock.fileno(), select.EPOLLIN)

    def _read(self, connection: Connection) -> None:
        try:
            data = connection.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(connection)
            return
        arrival_ns = time.perf_counter_ns()
        connection.inbound += data
        while self._take_request(connection):
            self._start_response(connection, arrival_ns)

    def _take_request(self, connection: Connection) -> bool:
        """Remove one complete request from the inbound buffer; False when none is complete."""
        end = connection.inbound.find(b"\r\n\r\n")
        if end < 0:
            if len(connection.inbound) > MAX_HEADER_BYTES:
                self._close(connection)
            return False
        header_block = bytes(connection.inbound[:end]).decode("latin-1")
        body_length = 0
        for line in header_block.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                body_length = int(value.strip())
        total = end + 4 + body_length
        if len(connection.inbound) < total:
            return False
        del connection.inbound[:total]
        return True

    def _start_response(self, connection: Connection, arrival_ns: int) -> None:
        number = self.lateness.requests
        self.lateness.requests += 1
        self.lateness.per_request.append(RequestTimings(arrival_ns))
        self._send(connection, self.headers)
        fd = connection.sock.fileno()
        for piece_index, offset_ns in enumerate(self.offsets_ns):
            entry = (arrival_ns + offset_ns, next(self.sequence), fd, piece_index, number)
            heapq.heappush(self.schedule, entry)

    def _send(self, connection: Connection, data: bytes) -> None:
        if connection.outbound:
            connection.outbound += data
            return
        try:
            sent = connection.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close(connection)
            return
        if sent < len(data):
            connection.outbound += data[sent:]
            self.epoll.modify(connection.sock.fileno(), select.EPOLLIN | select.EPOLLOUT)

    def _flush(self, connection: Connection) -> None:
        try:
            sent = connection.sock.send(connection.outbound)
        except BlockingIOError:
            return
        except OSError:
            self._close(connection)
            return
        del connection.outbound[:sent]
        if not connection.outbound:
            self.epoll.modify(connection.sock.fileno(), select.EPOLLIN)

    def _close(self, connection: Connection) -> None:
        fd = connection.sock.fileno()
        self.connections.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self.epoll.unregister(fd)
        connection.sock.close()

    def lateness_report(self) -> dict[str, object]:
        """Summarize the server's own lateness in milliseconds."""

        def in_ms(values_ns: list[int]) -> dict[str, float]:
            return summarize([value / 1e6 for value in values_ns])

        return {
            "requests": self.lateness.requests,
            "injected": {
                "ttft_ms": self.profile.ttft_ms,
                "gap_ms": self.profile.gap_ms,
                "chunks": self.profile.chunks,
                "e2e_ms": self.profile.e2e_ms,
            },
            "first_chunk_late_ms": in_ms(self.lateness.first_chunk_ns),
            "last_chunk_late_ms": in_ms(self.lateness.last_chunk_ns),
            "any_write_late_ms": in_ms(self.lateness.all_writes_ns),
        }

    def write_timings(self, path: str) -> None:
        """Write one JSON line per request: id, arrival, first and last write (perf ns)."""
        with open(path, "w") as output:
            for number, timings in enumerate(self.lateness.per_request):
                line = {
                    "id": f"chatcmpl-{number:010d}",
                    "arrival_ns": timings.arrival_ns,
                    "first_write_ns": timings.first_write_ns,
                    "last_write_ns": timings.last_write_ns,
                }
                output.write(json.dumps(line) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="loopback TCP port; 0 picks one")
    parser.add_argument("--ttft-ms", type=float, default=100.0, help="injected time to first token")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="injected gap between chunks")
    parser.add_argument("--chunks", type=int, default=32, help="text-carrying chunks per response")
    parser.add_argument("--timings-file", help="write per-request server timings here on exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.chunks < 1:
        raise SystemExit(f"error: invalid --chunks, {args.chunks}, use 1 or more")
    profile = DelayProfile(ttft_ms=args.ttft_ms, gap_ms=args.gap_ms, chunks=args.chunks)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((LOOPBACK, args.port))
    listener.listen(4096)
    server = ExactDelayServer(listener, profile)

    def stop(_signum: int, _frame: object) -> None:
        server.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    port = listener.getsockname()[1]
    print(f"accuracy server listening on http://{LOOPBACK}:{port}", flush=True)
    gc.disable()
    server.serve()
    print(json.dumps(server.lateness_report()), flush=True)
    if args.timings_file:
        server.write_timings(args.timings_file)
    sys.exit(0)


if __name__ == "__main__":
    main()
