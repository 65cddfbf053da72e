"""Error classes of one request, and the translation of failures into them.

Every failed request gets exactly one class from the fixed, documented set below and,
beside it, the provider's own error type and message, trimmed to DETAIL_MAX_CHARS:

    http_<status>       any non-2xx response (http_404, http_429, http_502, http_529)
    model_not_found     a 400 or 404 whose body states that the model does not exist
    timeout_connect     DNS, TCP and TLS together took longer than Timeouts.connect_s
    timeout_ttft        no generated text within Timeouts.ttft_s (keep-alives do not count)
    timeout_idle        no body bytes for Timeouts.idle_s after the response headers
    timeout_total       the whole request took longer than Timeouts.total_s
    connection_refused  the server (or the proxy) did not accept the connection
    connection_reset    the connection dropped before the response headers
    dns                 the host name did not resolve
    tls                 the TLS handshake or certificate check failed
    provider_error      an error reported inside a 200 response
    stream_truncated    the connection closed before a finish signal
    empty_response      the response ended with no generated text and no finish signal
    malformed_response  invalid JSON, HTML where JSON was expected, a line too long
    content_filter      the provider stopped the answer with a content-filter reason
    cancelled           the run was cancelled while the request was in flight

A request that fails inside the agent before it reaches the network (out of file
descriptors, out of local ports) is not the provider's failure, so it gets none of these
classes. It gets an internal marker from LOCAL_FAILURES instead, and the runner counts
it in AgentDiagnosis.requests_failed_locally and drops the record.

ClassifiedError is raised inside the agent's measurement code (SSE parser, stream
interpreters, executor) and caught by the executor, which stores it in the record.
It never leaves RequestExecutor.execute.
"""

from __future__ import annotations

import asyncio
import errno
import html
import json
import os
import re
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp
import aiohttp_socks
import python_socks

from llmping.errors import LlmpingError

TIMEOUT_CONNECT = "timeout_connect"
TIMEOUT_TTFT = "timeout_ttft"
TIMEOUT_IDLE = "timeout_idle"
TIMEOUT_TOTAL = "timeout_total"
CONNECTION_REFUSED = "connection_refused"
CONNECTION_RESET = "connection_reset"
DNS = "dns"
TLS = "tls"
PROVIDER_ERROR = "provider_error"
STREAM_TRUNCATED = "stream_truncated"
EMPTY_RESPONSE = "empty_response"
MALFORMED_RESPONSE = "malformed_response"
MODEL_NOT_FOUND = "model_not_found"
CONTENT_FILTER = "content_filter"
CANCELLED = "cancelled"

# Every class except the open-ended http_<status> family.
ERROR_CLASSES = frozenset(
    {
        TIMEOUT_CONNECT,
        TIMEOUT_TTFT,
        TIMEOUT_IDLE,
        TIMEOUT_TOTAL,
        CONNECTION_REFUSED,
        CONNECTION_RESET,
        DNS,
        TLS,
        PROVIDER_ERROR,
        STREAM_TRUNCATED,
        EMPTY_RESPONSE,
        MALFORMED_RESPONSE,
        MODEL_NOT_FOUND,
        CONTENT_FILTER,
        CANCELLED,
    }
)

# Internal markers for requests that failed inside the agent. The runner never stores
# them, as the module docstring explains.
LOCAL_OUT_OF_FILE_DESCRIPTORS = "local_out_of_file_descriptors"
LOCAL_OUT_OF_PORTS = "local_out_of_ports"
LOCAL_FAILURES = frozenset({LOCAL_OUT_OF_FILE_DESCRIPTORS, LOCAL_OUT_OF_PORTS})

# Socket errors that mean the agent's own host ran out of a resource. EMFILE is the
# process's open-file limit, ENFILE the system-wide one. EADDRNOTAVAIL from connect()
# means that no local port was free for the connection.
_LOCAL_ERRNOS = {
    errno.EMFILE: LOCAL_OUT_OF_FILE_DESCRIPTORS,
    errno.ENFILE: LOCAL_OUT_OF_FILE_DESCRIPTORS,
    errno.EADDRNOTAVAIL: LOCAL_OUT_OF_PORTS,
}

# Phases of a request, stored in Record.error_phase.
PHASE_CONNECT = "connect"
PHASE_HEADERS = "headers"
PHASE_FIRST_TOKEN = "first_token"
PHASE_BODY = "body"

DETAIL_MAX_CHARS = 300

_WHITESPACE = re.compile(r"\s+")
_HTML_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_MODEL_MISSING = re.compile(
    r"model.{0,200}?(does not exist|not exist|not found|not a valid model|is not available"
    r"|no such model|unknown model|invalid model)"
    r"|not a valid model|(unknown|invalid|unsupported) model",
    re.IGNORECASE | re.DOTALL,
)


_SOCKS_FAILURES = (
    aiohttp_socks.ProxyConnectionError,
    aiohttp_socks.ProxyError,
    python_socks.ProxyConnectionError,
    python_socks.ProxyError,
)

# Exceptions that sending a request can raise for network reasons, all handled by
# classify_exception. aiohttp-socks raises its own classes, which are not OSErrors.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
    OSError,
    aiohttp_socks.ProxyTimeoutError,
    *_SOCKS_FAILURES,
)


class ClassifiedError(LlmpingError):
    """A request failure that already has its error class, detail and phase."""

    def __init__(self, error_class: str, detail: str, phase: str = "") -> None:
        self.error_class = error_class
        self.detail = trim_detail(detail)
        self.phase = phase
        super().__init__(f"{error_class}: {self.detail}")


def http_error_class(status: int) -> str:
    """Return the class of a non-2xx status, such as http_429."""
    return f"http_{status}"


def trim_detail(text: str, max_chars: int = DETAIL_MAX_CHARS) -> str:
    """Collapse whitespace and cut text to max_chars, marking a cut with an ellipsis."""
    flat = _WHITESPACE.sub(" ", text).strip()
    if len(flat) <= max_chars:
        return flat
    return flat[: max_chars - 1] + "…"


def classify_http_error(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    request_path: str = "",
    example_base_url: str = "",
) -> ClassifiedError:
    """Classify a non-2xx response from its status and its body.

    The class is http_<status>, except model_not_found for a 400 or 404 whose body
    states that the model does not exist. The caller still stores the status beside it.
    Any other 404 usually means a wrong base_url, so when the caller gives the request
    path (never the query, which can carry a key), the detail names it with a hint.
    """
    detail = describe_body(headers, body)
    error_class = http_error_class(status)
    if status in (400, 404) and _says_model_missing(body, detail):
        error_class = MODEL_NOT_FOUND
    elif status == 404 and request_path:
        detail = _not_found_detail(detail, request_path, example_base_url)
    return ClassifiedError(error_class, detail, PHASE_HEADERS)


def _not_found_detail(body_detail: str, request_path: str, example_base_url: str) -> str:
    # The body keeps whatever room the hint leaves in DETAIL_MAX_CHARS, at least 100
    # characters, because the controller reads a model name in it as not available.
    hint = "check the provider's base_url"
    if example_base_url:
        hint += f" (for this API it looks like {example_base_url})"
    suffix = f", for POST {request_path}; {hint}"
    room = max(100, DETAIL_MAX_CHARS - len(suffix))
    return f"{trim_detail(body_detail, room)}{suffix}"


def describe_body(headers: Mapping[str, str], body: bytes) -> str:
    """Return the provider's error type and message from an error body of any shape."""
    if looks_like_html(body):
        return describe_html(headers, body)
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return "empty body"
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return provider_error_detail(parsed) or text


def provider_error_detail(obj: Any) -> str | None:
    """Return "code (type): message" when obj is an error object, else None.

    Recognised shapes: OpenAI and Azure {"error": {"message", "type", "code"}},
    Anthropic {"type": "error", "error": {"type", "message"}}, {"error": "text"},
    vLLM {"object": "error", "message", "type", "code"}, SiliconFlow and other relays
    {"code": ..., "message": ...} with no choices, FastAPI {"detail": ...}, and a list
    whose first element is one of these.
    """
    if isinstance(obj, list) and obj:
        return provider_error_detail(obj[0])
    if not isinstance(obj, dict):
        return None
    error = obj.get("error")
    if isinstance(error, dict):
        return _format_error_fields(error) or json.dumps(error)[:DETAIL_MAX_CHARS]
    if isinstance(error, str) and error:
        return error
    if obj.get("object") == "error" or obj.get("type") == "error":
        return _format_error_fields(obj) or "error event with no message"
    if "choices" not in obj and _is_relay_error(obj):
        return _format_error_fields(obj)
    detail = obj.get("detail")
    if "choices" not in obj and isinstance(detail, str) and detail:
        return detail
    return None


def _is_relay_error(obj: Mapping[str, Any]) -> bool:
    # Relays such as SiliconFlow return {"code": 20012, "message": "..."} or just
    # {"message": "...", "data": null}. A message without any response field is an error.
    message = obj.get("message")
    if not isinstance(message, str) or not message:
        return False
    response_keys = {"content", "type", "usage", "output", "result"}
    return not response_keys & obj.keys()


def _format_error_fields(fields: Mapping[str, Any]) -> str:
    code = _scalar_text(fields.get("code"))
    error_type = _scalar_text(fields.get("type"))
    if error_type == "error":
        error_type = ""
    message = _scalar_text(fields.get("message"))
    head = code or error_type
    if code and error_type and error_type != code:
        head = f"{code} ({error_type})"
    if head and message:
        return f"{head}: {message}"
    return head or message


def _scalar_text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value)


def looks_like_html(body: bytes) -> bool:
    """Return True when a body is an HTML page (a proxy or CDN error page)."""
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def describe_html(headers: Mapping[str, str], body: bytes) -> str:
    """Describe an HTML error page by the edge that sent it and its <title>."""
    server = headers.get("Server", headers.get("server", "")).strip()
    edge = server.lower() or "unknown server"
    if "cloudflare" in body[:8192].decode("latin-1").lower() or "cf-ray" in _lower_keys(headers):
        edge = "cloudflare"
    detail = f"html error page ({edge})"
    match = _HTML_TITLE.search(body[:65536])
    if match:
        title = html.unescape(match.group(1).decode("utf-8", "replace"))
        detail += f": {trim_detail(title)}"
    return detail


def _lower_keys(headers: Mapping[str, str]) -> set[str]:
    return {key.lower() for key in headers}


def _says_model_missing(body: bytes, detail: str) -> bool:
    if b"model_not_found" in body:
        return True
    # Anthropic responds to an unknown model with not_found_error and "model: <name>".
    if "not_found_error" in detail and "model:" in detail:
        return True
    return bool(_MODEL_MISSING.search(detail))


def classify_exception(exc: BaseException, phase: str) -> ClassifiedError:
    """Translate an aiohttp, socket, TLS or SOCKS exception into a classified error."""
    if isinstance(exc, ClassifiedError):
        return exc
    local_errno = local_failure_errno(exc)
    if local_errno is not None:
        return _local_failure(exc, local_errno)

    name = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ClassifiedError(DNS, f"{name}: {exc}", PHASE_CONNECT)
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)):
        return ClassifiedError(TLS, f"{name}: {exc}", PHASE_CONNECT)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        detail = f"proxy answered {exc.status} {exc.message}"
        return ClassifiedError(http_error_class(exc.status), detail, PHASE_CONNECT)
    # aiohttp-socks re-raises python-socks errors as its own classes; accept both.
    if isinstance(exc, (aiohttp_socks.ProxyTimeoutError, python_socks.ProxyTimeoutError)):
        return ClassifiedError(TIMEOUT_CONNECT, f"socks proxy: {exc}", PHASE_CONNECT)
    if isinstance(exc, _SOCKS_FAILURES):
        return ClassifiedError(CONNECTION_REFUSED, f"socks proxy: {exc}", PHASE_CONNECT)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _classify_connect_error(exc)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return _classify_payload_error(exc, phase)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, ConnectionError)):
        return _classify_disconnect(exc, phase)
    if isinstance(exc, aiohttp.ClientResponseError):
        # The HTTP parser rejected the status line or the headers.
        return ClassifiedError(MALFORMED_RESPONSE, f"invalid HTTP response: {exc.message}", phase)
    if isinstance(exc, (aiohttp.ClientOSError, OSError)):
        return _classify_disconnect(exc, phase)
    return ClassifiedError(MALFORMED_RESPONSE, f"{name}: {exc}", phase)


def local_failure_errno(exc: BaseException) -> int | None:
    """Return the errno when exc, or an error it wraps, means the agent ran out of a resource.

    aiohttp keeps the socket error in ClientConnectorError.os_error, and aiohttp-socks
    chains the python-socks error (which carries the errno) as __cause__.
    """
    current: BaseException | None = exc
    for _ in range(4):
        if current is None:
            return None
        if isinstance(current, OSError) and current.errno in _LOCAL_ERRNOS:
            return current.errno
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, OSError) and os_error.errno in _LOCAL_ERRNOS:
            return os_error.errno
        current = current.__cause__
    return None


def _local_failure(exc: BaseException, local_errno: int) -> ClassifiedError:
    errno_name = errno.errorcode.get(local_errno, str(local_errno))
    detail = f"{errno_name} ({os.strerror(local_errno)}): {type(exc).__name__}: {exc}"
    return ClassifiedError(_LOCAL_ERRNOS[local_errno], detail, PHASE_CONNECT)


def _classify_connect_error(exc: aiohttp.ClientConnectorError) -> ClassifiedError:
    cause = exc.os_error
    detail = describe_connect_error(exc)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        detail = f"proxy: {detail}"
    if isinstance(cause, asyncio.TimeoutError):
        return ClassifiedError(TIMEOUT_CONNECT, detail, PHASE_CONNECT)
    if isinstance(cause, ConnectionResetError):
        return ClassifiedError(CONNECTION_RESET, detail, PHASE_CONNECT)
    # NOTE: unreachable hosts and networks (EHOSTUNREACH, ENETUNREACH) have no class
    # of their own in the documented set, so they count as connection_refused. The
    # detail keeps the errno text.
    return ClassifiedError(CONNECTION_REFUSED, detail, PHASE_CONNECT)


def describe_connect_error(exc: aiohttp.ClientConnectorError) -> str:
    """Describe a failed connection as "cannot connect to HOST:PORT: <OS reason>".

    aiohttp's own text ends in "ssl:default" even for an http:// URL, which reads as if
    TLS were involved, and asyncio hides the OS reason behind "Connect call failed".
    """
    host = f"[{exc.host}]" if ":" in exc.host else exc.host
    return f"cannot connect to {host}:{exc.port}: {_connect_failure_reason(exc.os_error)}"


def _connect_failure_reason(cause: OSError) -> str:
    if isinstance(cause, asyncio.TimeoutError):
        return "timed out"
    if cause.errno:
        return os.strerror(cause.errno).lower()
    # Several addresses failed (aiohttp then joins their errors), or the error has no
    # errno, such as an OSError raised by a custom resolver.
    return str(cause) or type(cause).__name__


def _classify_payload_error(exc: aiohttp.ClientPayloadError, phase: str) -> ClassifiedError:
    text = str(exc)
    if "content-encoding" in text.lower() or "decompress" in text.lower():
        return ClassifiedError(MALFORMED_RESPONSE, f"invalid compressed body: {text}", phase)
    detail = f"connection closed mid-body (ClientPayloadError): {text}"
    return ClassifiedError(STREAM_TRUNCATED, detail, phase or PHASE_BODY)


def _classify_disconnect(exc: BaseException, phase: str) -> ClassifiedError:
    detail = f"{type(exc).__name__}: {exc}"
    if phase in (PHASE_FIRST_TOKEN, PHASE_BODY):
        return ClassifiedError(STREAM_TRUNCATED, f"connection closed mid-body ({detail})", phase)
    return ClassifiedError(CONNECTION_RESET, detail, phase or PHASE_HEADERS)
