"""DNS, TCP connect and TLS timings of one request, from aiohttp's tracing hooks.

What each figure covers (all from time.perf_counter_ns):

* dns_ms: on_dns_resolvehost_start to _end. 0 when aiohttp's DNS cache answered, when
  the host is an IP literal, and behind a SOCKS proxy (the proxy resolves the name).
* connect_ms: from the end of DNS (or the start of the connection when there was no
  lookup) until the TCP connection is up. Behind an HTTP proxy it includes the CONNECT
  exchange for https URLs. Behind a SOCKS proxy it includes the SOCKS handshake and
  also the TLS handshake, because aiohttp-socks does TLS inside its connect call.
* tls_ms: from TCP up until on_connection_create_end, i.e. the TLS handshake. 0 for
  http:// URLs; None behind a SOCKS proxy, where it cannot be separated.
* All three are 0 when a pooled connection was reused, and connection_reused says so.

aiohttp has no hook between the TCP connect and the TLS handshake. TimedTCPConnector
fills that gap: asyncio (and uvloop) call the protocol factory after the socket is
connected and before the handshake starts, so the factory marks the time.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp_socks import ProxyConnector
from python_socks import parse_proxy_url

# The timing of the request being connected in the current task. Set by the executor
# around each request, read by the connector's protocol factory, which aiohttp calls
# in the same task.
_current_timing: ContextVar[ConnectionTiming | None] = ContextVar(
    "llmping_connection_timing", default=None
)


@dataclass
class ConnectionTiming:
    """Connection events of one request, as perf_counter_ns instants."""

    dns_start_ns: int | None = None
    dns_end_ns: int | None = None
    create_start_ns: int | None = None
    transport_ready_ns: int | None = None
    create_end_ns: int | None = None
    reused: bool = False
    peer_ip: str = ""
    # Called once when the request has a connection (new or reused), so the executor
    # can switch from the connect deadline to the TTFT deadline.
    on_connected: Callable[[], None] | None = None

    def dns_ms(self) -> float:
        """DNS lookup duration; 0 for a reused connection, a cache hit or an IP literal."""
        if self.reused or self.dns_start_ns is None or self.dns_end_ns is None:
            return 0.0
        return _ms(self.dns_end_ns - self.dns_start_ns)

    def connect_ms(self) -> float | None:
        """TCP connect duration (see the module docstring for proxies), or None if unknown."""
        if self.reused:
            return 0.0
        start_ns = self.dns_end_ns or self.create_start_ns
        end_ns = self.transport_ready_ns or self.create_end_ns
        if start_ns is None or end_ns is None:
            return None
        return _ms(end_ns - start_ns)

    def tls_ms(self, is_https: bool) -> float | None:
        """TLS handshake duration, 0 for plain HTTP, None when it cannot be separated."""
        if self.reused or not is_https:
            return 0.0
        if self.transport_ready_ns is None or self.create_end_ns is None:
            return None
        return _ms(self.create_end_ns - self.transport_ready_ns)

    def mark_connected(self) -> None:
        """Run the on_connected callback once."""
        callback, self.on_connected = self.on_connected, None
        if callback is not None:
            callback()


def use_timing(timing: ConnectionTiming | None) -> Any:
    """Make timing the current task's timing; returns the token for reset_timing."""
    return _current_timing.set(timing)


def reset_timing(token: Any) -> None:
    """Restore the timing that was current before use_timing."""
    _current_timing.reset(token)


def build_trace_config() -> aiohttp.TraceConfig:
    """Return a TraceConfig whose hooks fill the ConnectionTiming passed as
    trace_request_ctx to the request."""
    config = aiohttp.TraceConfig()
    config.on_dns_resolvehost_start.append(_on_dns_start)
    config.on_dns_resolvehost_end.append(_on_dns_end)
    config.on_connection_create_start.append(_on_create_start)
    config.on_connection_create_end.append(_on_create_end)
    config.on_connection_reuseconn.append(_on_reuse)
    return config


def _timing(context: SimpleNamespace) -> ConnectionTiming | None:
    timing = context.trace_request_ctx
    return timing if isinstance(timing, ConnectionTiming) else None


async def _on_dns_start(_session: object, context: SimpleNamespace, _params: object) -> None:
    timing = _timing(context)
    if timing is not None:
        timing.dns_start_ns = time.perf_counter_ns()


async def _on_dns_end(_session: object, context: SimpleNamespace, _params: object) -> None:
    timing = _timing(context)
    if timing is not None:
        timing.dns_end_ns = time.perf_counter_ns()


async def _on_create_start(_session: object, context: SimpleNamespace, _params: object) -> None:
    timing = _timing(context)
    if timing is not None:
        timing.create_start_ns = time.perf_counter_ns()


async def _on_create_end(_session: object, context: SimpleNamespace, _params: object) -> None:
    timing = _timing(context)
    if timing is not None:
        timing.create_end_ns = time.perf_counter_ns()
        timing.mark_connected()


async def _on_reuse(_session: object, context: SimpleNamespace, _params: object) -> None:
    timing = _timing(context)
    if timing is not None:
        timing.reused = True
        timing.mark_connected()


class _PeerRecordingMixin:
    """Record the peer address of the connection each request gets, new or pooled.

    The response cannot be asked later: aiohttp returns the connection to the pool
    as soon as a short body has arrived, before the caller looks at the response.
    """

    # The signature, `timeout` included, is aiohttp's BaseConnector.connect.
    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109
    ) -> Any:
        connection = await super().connect(req, traces, timeout)  # type: ignore[misc]
        timing = _current_timing.get()
        transport = connection.transport
        if timing is not None and transport is not None:
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple) and peer:
                # Behind a proxy this is the proxy, the only peer the agent talks to.
                timing.peer_ip = str(peer[0])
        return connection


class TimedResponseHandler(ResponseHandler):
    """aiohttp's protocol for one connection, noting when bytes last came off the socket.

    The event loop calls data_received() as soon as it polls the socket. The task that
    reads the response resumes later, after every callback queued before it, so at
    a high request rate its own clock reading can be a millisecond or more after the
    bytes arrived. The reader uses data_ns instead (see agent/reading.py).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        # perf_counter_ns() at the last data_received(), 0 before the first.
        self.data_ns = 0

    def data_received(self, data: bytes) -> None:
        if data:
            # aiohttp 3.14 also calls this with b"" when it resumes reading.
            self.data_ns = time.perf_counter_ns()
        super().data_received(data)


def arrival_ns(protocol: object, not_before_ns: int, now_ns: int) -> int:
    """Return when the bytes just read arrived: the protocol's data_ns if plausible.

    not_before_ns is when the reading task last resumed, or the send time before the
    first read: bytes read now were not in the buffer then, so they arrived later.
    Falls back to now_ns for a protocol without data_ns (behind a SOCKS proxy) and for
    a data_ns before not_before_ns, which belongs to other bytes.
    """
    data_ns = getattr(protocol, "data_ns", 0)
    if not_before_ns <= data_ns <= now_ns:
        return int(data_ns)
    return now_ns


class _TransportReadyMixin:
    """Wrap the connector's protocol factory to mark the end of the TCP connect.

    The factory also builds TimedResponseHandler in place of aiohttp's ResponseHandler.

    NOTE: relies on aiohttp's private BaseConnector._factory (aiohttp 3.10 to 3.14),
    a functools.partial of ResponseHandler. If it changes, tls_ms becomes None and
    connect_ms includes TLS, or reads are timed when the reading task resumes.
    """

    def _mark_transport_ready(self) -> None:
        inner = getattr(self, "_factory", None)
        if inner is None:
            return
        build = inner
        if isinstance(inner, functools.partial) and inner.func is ResponseHandler:
            build = functools.partial(TimedResponseHandler, *inner.args, **inner.keywords)

        def factory() -> Any:
            timing = _current_timing.get()
            if timing is not None:
                # The last call wins: with an HTTP proxy and an https URL, aiohttp calls
                # the factory again after CONNECT, right before the TLS handshake.
                timing.transport_ready_ns = time.perf_counter_ns()
            return build()

        setattr(self, "_factory", factory)  # noqa: B010 - the attribute is private to aiohttp


class TimedTCPConnector(_PeerRecordingMixin, _TransportReadyMixin, aiohttp.TCPConnector):
    """TCPConnector that records the peer and when the TCP connection is up, before TLS."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._mark_transport_ready()


class TimedSocksConnector(_PeerRecordingMixin, ProxyConnector):
    """SOCKS proxy connector that records the peer (the proxy).

    aiohttp-socks builds its protocol itself after its own TLS handshake, so no
    transport-ready mark is possible and tls_ms stays None.
    """


def socks_connector(proxy_url: str, **kwargs: Any) -> aiohttp.TCPConnector:
    """Return a connector that tunnels through a SOCKS proxy (socks5://, socks4://)."""
    proxy_type, host, port, username, password = parse_proxy_url(proxy_url)
    return TimedSocksConnector(
        proxy_type=proxy_type,
        host=host,
        port=port,
        username=username,
        password=password,
        **kwargs,
    )


def _ms(duration_ns: int) -> float:
    return duration_ns / 1e6
