"""RequestExecutor: send one request to a provider and measure it into a record.

One executor serves one provider of one assignment. It owns one aiohttp ClientSession
whose connector has no connection limit (limit=0), so the load model and not the pool
decides concurrency. When the plan requests a new connection per request, the
connector closes every connection after use.

Timeouts are our own deadlines (see deadlines.py); aiohttp's own timeouts are off so
that every limit maps to exactly one error class.

A request that failed inside the agent (EMFILE, ENFILE, EADDRNOTAVAIL while
connecting) gets an internal marker from errors.LOCAL_FAILURES as its error_class.
The runner recognises the marker, counts the request and does not store the record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from llmping.agent.attempt import RequestAttempt
from llmping.agent.deadlines import DeadlineGuard, TimeoutLimits
from llmping.agent.errors import (
    CANCELLED,
    MALFORMED_RESPONSE,
    NETWORK_ERRORS,
    PHASE_HEADERS,
    ClassifiedError,
    classify_exception,
)
from llmping.agent.providers import get_adapter
from llmping.agent.reading import ResponseReader
from llmping.agent.stream import ResponseAccumulator
from llmping.agent.timing import (
    TimedTCPConnector,
    build_trace_config,
    reset_timing,
    socks_connector,
    use_timing,
)
from llmping.errors import PlanError
from llmping.v1 import llmping_pb2 as pb

log = logging.getLogger(__name__)

_HTTP_PROXY_SCHEMES = ("http", "https")
# SOCKS5 through aiohttp-socks sends host names to the proxy, which resolves them.
_SOCKS_PROXY_SCHEMES = ("socks5", "socks4")
# After an end marker the rest of the body is read for at most this long, so the
# connection can go back to the pool. A server that keeps the body open is dropped.
DRAIN_S = 1.0


class RequestExecutor:
    """Send requests for one provider and fill records with their measurements."""

    def __init__(
        self,
        provider: pb.Provider,
        request: pb.RequestSpec,
        timeouts: pb.Timeouts,
        api_key: str | None,
        proxy_url: str | None = None,
    ) -> None:
        """Prepare the request once; raises PlanError for an invalid provider or proxy."""
        self._adapter = get_adapter(provider)
        http_request = self._adapter.build_request(request, api_key)
        self._url = http_request.url
        self._headers = http_request.headers
        self._body = json.dumps(http_request.body, ensure_ascii=False).encode()
        self._is_https = self._url.startswith("https://")
        self._stream_requested = request.stream
        self._force_close = request.new_connection_per_request
        self._limits = TimeoutLimits.from_proto(timeouts)
        self._proxy_url = provider.proxy_url or proxy_url or ""
        self._proxy_scheme = _check_proxy(provider.name, self._proxy_url)
        self._api_key = api_key or ""
        self._session: aiohttp.ClientSession | None = None
        self._unexpected_errors = 0
        # DNS resolver for the connector, set before start(); None means aiohttp's
        # default (getaddrinfo in a thread). Ignored behind a SOCKS proxy, which
        # resolves names itself.
        self.resolver: AbstractResolver | None = None
        # Called after each request with its record and everything the response
        # carried, including the text, which the record does not keep. Meant for debug
        # output and tests. It runs on the event loop, so it must be quick.
        self.response_observer: Callable[[pb.Record, ResponseAccumulator], None] | None = None

    async def start(self) -> None:
        """Create the HTTP session and its connector."""
        if self._session is not None:
            return
        # A context created here (not aiohttp's shared one) honours SSL_CERT_FILE and
        # SSL_CERT_DIR, which agents behind a TLS-inspecting proxy need.
        connector_options: dict[str, Any] = {
            "limit": 0,
            "force_close": self._force_close,
            "ssl": ssl.create_default_context(),
        }
        connector: aiohttp.BaseConnector
        if self._proxy_scheme in _SOCKS_PROXY_SCHEMES:
            connector = socks_connector(self._proxy_url, **connector_options)
        else:
            if self.resolver is not None:
                connector_options["resolver"] = self.resolver
            connector = TimedTCPConnector(**connector_options)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[build_trace_config()],
            timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_read=None),
        )

    async def close(self) -> None:
        """Close the session and every pooled connection."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def execute(
        self, record: pb.Record, scheduled_perf_ns: int, measure_from_scheduled: bool
    ) -> None:
        """Send one request now and fill the record's measurement fields.

        Every failure, including an unexpected exception, becomes the record's error
        class, so the only exception that leaves is asyncio.CancelledError, and then
        only after the record got error_class "cancelled".
        """
        attempt = RequestAttempt(scheduled_ns=scheduled_perf_ns, is_https=self._is_https)
        token = use_timing(attempt.timing)
        try:
            finished_response = await self._send(attempt)
        except asyncio.CancelledError:
            attempt.error = ClassifiedError(CANCELLED, "request cancelled", attempt.phase)
            attempt.finish()
            attempt.fill_record(record, measure_from_scheduled)
            self._scrub_api_key(record)
            raise
        finally:
            reset_timing(token)
        attempt.fill_record(record, measure_from_scheduled)
        self._scrub_api_key(record)
        if self.response_observer is not None:
            try:
                self.response_observer(record, attempt.acc)
            except Exception:
                log.exception("response observer failed for a request to %s", self._url)
        # The measurement is complete, so a cancel while draining leaves the record as is.
        if finished_response is not None:
            await self._drain(finished_response)

    async def _send(self, attempt: RequestAttempt) -> aiohttp.ClientResponse | None:
        """Send the request and read the response into the attempt.

        Returns the response when it ended at an end marker and the rest of its body
        should be drained so the connection can be reused; closes it otherwise.
        """
        if self._session is None:
            await self.start()
        assert self._session is not None
        attempt.send_ns = time.perf_counter_ns()
        guard = DeadlineGuard(self._limits, attempt.send_ns)
        reader = ResponseReader(self._adapter, attempt, guard)

        def on_connected() -> None:
            attempt.phase = PHASE_HEADERS
            guard.connected()

        attempt.timing.on_connected = on_connected
        response: aiohttp.ClientResponse | None = None
        drain = False
        scope = guard.scope()
        try:
            async with scope:
                response = await self._session.request(
                    "POST",
                    self._url,
                    data=self._body,
                    headers=self._headers,
                    proxy=self._proxy_url if self._proxy_scheme in _HTTP_PROXY_SCHEMES else None,
                    allow_redirects=False,
                    trace_request_ctx=attempt.timing,
                )
                reader.on_headers(response)
                await reader.read(response, self._stream_requested)
            drain = reader.wants_drain and attempt.error is None
        except TimeoutError as exc:
            if scope.expired():
                acc = attempt.acc
                error = guard.timeout_error(attempt.phase, acc.text_events > 0, acc.keepalive_count)
            else:
                error = classify_exception(exc, attempt.phase)
            attempt.fail(error)
        except ClassifiedError as exc:
            attempt.fail(exc)
        except NETWORK_ERRORS as exc:
            attempt.fail(classify_exception(exc, attempt.phase))
        except Exception as exc:
            attempt.fail(self._unexpected(exc, attempt.phase))
        finally:
            # After an error or a cancelled read the connection cannot be reused.
            if response is not None and not drain:
                response.close()
        attempt.finish()
        return response if drain else None

    async def _drain(self, response: aiohttp.ClientResponse) -> None:
        # Reading the rest of the body returns a keep-alive connection to the pool.
        if response.content.at_eof():
            # The whole body has been read already, usually with its end marker.
            response.release()
            return
        try:
            async with asyncio.timeout(DRAIN_S):
                while await response.content.readany():
                    pass
        except (TimeoutError, aiohttp.ClientError, OSError):
            response.close()
            return
        except asyncio.CancelledError:
            response.close()
            raise
        response.release()

    def _scrub_api_key(self, record: pb.Record) -> None:
        # Some servers echo the key in an error message or header. It must never be
        # stored, so every text field that carries provider output is masked.
        key = self._api_key
        if not key:
            return
        for name in ("error_detail", "response_id", "response_model", "finish_reason"):
            value = getattr(record, name)
            if key in value:
                setattr(record, name, value.replace(key, "***"))
        for header, value in record.rate_limit_headers.items():
            if key in value:
                record.rate_limit_headers[header] = value.replace(key, "***")

    def _unexpected(self, exc: Exception, phase: str) -> ClassifiedError:
        # Reached only through a bug or an unforeseen response shape. The response is
        # the likely cause, so it counts as malformed. Only the first few occurrences
        # are logged with a stack, to keep a high-rate run's log readable.
        self._unexpected_errors += 1
        if self._unexpected_errors <= 3:
            log.exception("unexpected error while measuring a request to %s", self._url)
        return ClassifiedError(MALFORMED_RESPONSE, f"{type(exc).__name__}: {exc}", phase)


def _check_proxy(provider_name: str, proxy_url: str) -> str:
    if not proxy_url:
        return ""
    path = f"providers[{provider_name}].proxy_url"
    hint = "use an http://, https://, socks5:// or socks4:// proxy URL with a host and port"
    try:
        parts = urlsplit(proxy_url)
        port = parts.port
    except ValueError as exc:
        raise PlanError(path, f"invalid proxy URL: {exc}", hint) from exc
    scheme = parts.scheme.lower()
    if scheme not in _HTTP_PROXY_SCHEMES + _SOCKS_PROXY_SCHEMES:
        raise PlanError(path, f"unsupported proxy scheme {scheme!r}", hint)
    if not parts.hostname or (scheme in _SOCKS_PROXY_SCHEMES and port is None):
        raise PlanError(path, "the proxy URL needs a host and a port", hint)
    return scheme
