"""Error responses of simulated providers in OpenAI and Anthropic body formats.

OpenAI-compatible APIs return ``{"error": {"message", "type", "param", "code"}}``, and
Anthropic returns ``{"type": "error", "error": {"type", "message"}}``. Gateways in front
of a provider often return 502 or 503 with an HTML page instead, which clients must
survive too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from aiohttp import web

Dialect = Literal["openai", "anthropic"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}

_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def error_response(
    dialect: Dialect,
    status: int,
    message: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """Build a JSON error response in the dialect of the route that was called."""
    if dialect == "anthropic":
        body = anthropic_error_body(status, message)
    else:
        body = openai_error_body(status, message, code)
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers=dict(headers or {}),
    )


def openai_error_body(status: int, message: str, code: str | None) -> dict[str, object]:
    """Return an OpenAI-style error object."""
    if status == 429:
        error_type = "requests"
    elif status >= 500:
        error_type = "server_error"
    else:
        error_type = "invalid_request_error"
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def anthropic_error_body(status: int, message: str) -> dict[str, object]:
    """Return an Anthropic-style error object."""
    error_type = _ANTHROPIC_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": error_type, "message": message}}


def html_error_page(status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    """Build the kind of HTML page a reverse proxy returns when its upstream fails."""
    reason = _REASONS.get(status, "Error")
    page = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return web.Response(
        status=status, text=page, content_type="text/html", headers=dict(headers or {})
    )


def injected_error(
    dialect: Dialect, status: int, body: Literal["json", "html"], headers: Mapping[str, str]
) -> web.Response:
    """Build the response for a request that the profile's error_rate chose to fail."""
    if body == "html":
        return html_error_page(status, headers)
    message = f"simulated upstream failure (status {status})"
    code = "upstream_error" if status >= 500 else None
    return error_response(dialect, status, message, code, headers)
