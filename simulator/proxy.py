"""A delay-adding HTTP forward proxy to loopback targets.

Each simulated region's agent can reach the simulated providers through its own proxy,
so its requests travel a "network path" with a known extra latency. The proxy accepts
absolute-form HTTP/1.1 requests (``POST http://127.0.0.1:8000/x HTTP/1.1``, what aiohttp
sends for an http:// URL through an http proxy) and CONNECT tunnels (for https targets).

Rules:

- Only loopback targets (127.0.0.0/8, ::1, localhost) are allowed. Any other host is
  rejected with 403 before any connection or name lookup, so the proxy can never be aimed
  elsewhere.
- Bytes from the client reach the target ``delay_ms`` after they arrived, and bytes from
  the target reach the client ``return_delay_ms`` after they arrived, in order.
- Opening the target connection costs one emulated round trip (the TCP handshake over
  the path), so a new connection pays two round trips before its first response byte
  and a reused one pays one.
- A kept-alive client connection is bound to the first target it names. A later request
  on it naming another host:port is rejected with 502 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from llmping.simulator.delay_line import DelayLine
from llmping.simulator.http_head import (
    Destination,
    ProxyRequestError,
    RequestHead,
    destination_of,
    is_loopback_host,
    origin_form_head,
    parse_request_head,
    relay_body,
)

log = logging.getLogger(__name__)

_HEAD_END = b"\r\n\r\n"
_READ_PIECE_BYTES = 65536
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
}


@dataclass(frozen=True)
class PathDelay:
    """One-way delays of the emulated path between the agent and the providers."""

    upstream_delay_ms: float
    downstream_delay_ms: float
    # Charge one round trip when opening a target connection, like a TCP handshake.
    handshake: bool = True

    @property
    def round_trip_ms(self) -> float:
        return self.upstream_delay_ms + self.downstream_delay_ms


async def open_target_connection(
    host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a TCP connection to a target that already passed the loopback check."""
    connect_host = "127.0.0.1" if host.lower() == "localhost" else host
    return await asyncio.open_connection(connect_host, port)


def local_response(status: int, message: str) -> bytes:
    """Encode a response from the proxy itself, which always closes the connection."""
    body = (f"llmping delay proxy: {message}\n").encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


class _DelayProxy:
    """Connection handling of one proxy listener."""

    def __init__(self, delay: PathDelay) -> None:
        self.delay = delay
        self.connection_tasks: set[asyncio.Task[None]] = set()

    async def handle_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.connection_tasks.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # ProxyHandle.stop() cancels open connections. Python 3.11's stream callback
            # logs a cancelled handler task as an error, so this task ends normally.
            pass
        except (ConnectionError, OSError) as exc:
            log.debug("delay proxy connection closed: %s", exc)
        except Exception:
            log.exception(
                "delay proxy connection from %s failed", writer.get_extra_info("peername")
            )
        finally:
            writer.close()
            if task is not None:
                self.connection_tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw_head = await reader.readuntil(_HEAD_END)
        except asyncio.IncompleteReadError:
            return
        except asyncio.LimitOverrunError:
            await _respond_locally(writer, 431, "request head larger than 64 KiB")
            return

        try:
            head = parse_request_head(raw_head)
            destination = destination_of(head)
            _check_loopback(destination)
        except ProxyRequestError as exc:
            await _respond_locally(writer, exc.status, exc.message)
            return

        target = await self._connect(destination)
        if target is None:
            await _respond_locally(writer, 502, f"cannot connect to {destination.authority}")
            return
        target_reader, target_writer = target

        try:
            if head.method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await self._tunnel(reader, writer, target_reader, target_writer)
            else:
                # The request leaves now that the emulated handshake is done.
                sent_ns = time.perf_counter_ns()
                await self._forward(
                    reader, writer, target_reader, target_writer, head, destination, sent_ns
                )
        finally:
            target_writer.close()

    async def _connect(
        self, destination: Destination
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        if self.delay.handshake:
            await asyncio.sleep(self.delay.round_trip_ms / 1000.0)
        try:
            return await open_target_connection(destination.host, destination.port)
        except OSError as exc:
            log.info("delay proxy cannot connect to %s: %s", destination.authority, exc)
            return None

    async def _tunnel(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        target_reader: asyncio.StreamReader,
        target_writer: asyncio.StreamWriter,
    ) -> None:
        upstream = DelayLine(target_writer, self.delay.upstream_delay_ms, "upstream")
        downstream = DelayLine(client_writer, self.delay.downstream_delay_ms, "downstream")
        pumps = [_pump_raw(client_reader, upstream), _pump_raw(target_reader, downstream)]
        await _run_until_client_closed(pumps, upstream, downstream)

    async def _forward(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        target_reader: asyncio.StreamReader,
        target_writer: asyncio.StreamWriter,
        first_head: RequestHead,
        destination: Destination,
        first_sent_ns: int,
    ) -> None:
        upstream = DelayLine(target_writer, self.delay.upstream_delay_ms, "upstream")
        downstream = DelayLine(client_writer, self.delay.downstream_delay_ms, "downstream")
        pumps = [
            _pump_requests(
                client_reader, first_head, first_sent_ns, destination, upstream, downstream
            ),
            _pump_raw(target_reader, downstream),
        ]
        await _run_until_client_closed(pumps, upstream, downstream)


async def _run_until_client_closed(
    pumps: list[Coroutine[Any, Any, None]],
    upstream: DelayLine,
    downstream: DelayLine,
) -> None:
    """Run both pumps until the client side is closed, then tear everything down."""
    tasks = [asyncio.create_task(pump) for pump in pumps]
    try:
        await downstream.closed.wait()
    finally:
        for task in tasks:
            task.cancel()
        await upstream.aclose()
        await downstream.aclose()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _pump_raw(reader: asyncio.StreamReader, line: DelayLine) -> None:
    """Copy everything from reader into line; end the line at EOF."""
    try:
        while True:
            data = await reader.read(_READ_PIECE_BYTES)
            if not data:
                break
            line.send(data, time.perf_counter_ns())
    except (ConnectionError, OSError) as exc:
        log.debug("delay proxy read stopped: %s", exc)
    finally:
        line.end(time.perf_counter_ns())


async def _pump_requests(
    reader: asyncio.StreamReader,
    head: RequestHead,
    sent_ns: int,
    bound: Destination,
    upstream: DelayLine,
    downstream: DelayLine,
) -> None:
    """Forward requests one by one in origin form while they name the bound target."""
    try:
        while True:
            upstream.send(origin_form_head(head, bound), sent_ns)
            await relay_body(
                reader, head, lambda piece: upstream.send(piece, time.perf_counter_ns())
            )

            raw_head = await reader.readuntil(_HEAD_END)
            sent_ns = time.perf_counter_ns()
            head = parse_request_head(raw_head)
            destination = destination_of(head)
            if head.method == "CONNECT" or destination != bound:
                raise ProxyRequestError(
                    502,
                    f"this connection is bound to {bound.authority}; open a new connection"
                    f" for {destination.authority}",
                )
    except ProxyRequestError as exc:
        _reject_on_bound_connection(exc.status, exc.message, upstream, downstream)
    except asyncio.LimitOverrunError:
        _reject_on_bound_connection(431, "request head larger than 64 KiB", upstream, downstream)
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        upstream.end(time.perf_counter_ns())


def _reject_on_bound_connection(
    status: int, message: str, upstream: DelayLine, downstream: DelayLine
) -> None:
    log.info("delay proxy responded %d: %s", status, message)
    downstream.send_local(local_response(status, message))
    downstream.end(None)
    upstream.end(None)


def _check_loopback(destination: Destination) -> None:
    if not is_loopback_host(destination.host):
        raise ProxyRequestError(
            403,
            f"rejected target {destination.authority} because it is not a loopback address;"
            " this proxy forwards only to 127.0.0.0/8, ::1 and localhost",
        )


async def _respond_locally(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    log.info("delay proxy responded %d: %s", status, message)
    with contextlib.suppress(ConnectionError, OSError):
        writer.write(local_response(status, message))
        await writer.drain()


@dataclass
class ProxyHandle:
    """A running delay proxy; stop it with ``await handle.stop()``."""

    host: str
    port: int
    delay: PathDelay
    _server: asyncio.Server
    _proxy: _DelayProxy

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop listening and cut every open connection."""
        self._server.close()
        tasks = list(self._proxy.connection_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        log.info("delay proxy on %s stopped", self.url)


async def start_delay_proxy(
    host: str = "127.0.0.1",
    port: int = 0,
    delay_ms: float = 0.0,
    *,
    return_delay_ms: float | None = None,
    handshake_delay: bool = True,
) -> ProxyHandle:
    """Start a delay proxy on host:port (port 0 picks a free port).

    delay_ms is the one-way delay from client to target; return_delay_ms, the delay from
    target to client, defaults to delay_ms. With handshake_delay, opening a target
    connection costs one round trip (delay_ms + return_delay_ms).
    """
    back_ms = delay_ms if return_delay_ms is None else return_delay_ms
    if delay_ms < 0 or back_ms < 0:
        raise ValueError(f"proxy delays must be >= 0 ms, got {delay_ms} and {back_ms}")
    delay = PathDelay(
        upstream_delay_ms=delay_ms, downstream_delay_ms=back_ms, handshake=handshake_delay
    )
    proxy = _DelayProxy(delay)

    server = await asyncio.start_server(proxy.handle_client, host, port)
    bound_port = int(server.sockets[0].getsockname()[1])
    handle = ProxyHandle(host=host, port=bound_port, delay=delay, _server=server, _proxy=proxy)
    log.info(
        "delay proxy listening on %s, delay %g ms to target and %g ms back",
        handle.url,
        delay_ms,
        back_ms,
    )
    return handle
