"""HTTP/1.1 request heads and body framing, as much as the delay proxy needs.

The proxy parses each request on a kept-alive connection to find where the next one
starts, so it can check that every request names the same target and rewrite its
absolute-form target (``POST http://127.0.0.1:8000/x HTTP/1.1``) into origin form.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

_HOP_BY_HOP_PROXY_HEADERS = frozenset({"proxy-connection", "proxy-authorization"})
_COPY_PIECE_BYTES = 65536


class ProxyRequestError(Exception):
    """A request that the proxy rejects itself with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class RequestHead:
    """Request line and header fields of one HTTP/1.1 request."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


@dataclass(frozen=True)
class Destination:
    """host:port a request names; host is an IP literal or a name, without brackets."""

    host: str
    port: int

    @property
    def authority(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_request_head(raw: bytes) -> RequestHead:
    """Parse bytes up to and including the blank line; raise ProxyRequestError(400)."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ProxyRequestError(400, f"invalid request line {lines[0][:100]!r}")

    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, separator, value = line.partition(":")
        if not separator or not name or name != name.strip():
            raise ProxyRequestError(400, f"invalid header line {line[:100]!r}")
        headers.append((name, value.strip()))
    return RequestHead(method=parts[0], target=parts[1], version=parts[2], headers=tuple(headers))


def destination_of(head: RequestHead) -> Destination:
    """Return the host:port that a CONNECT or absolute-form request names."""
    if head.method == "CONNECT":
        return _parse_authority(head.target, default_port=None)
    if head.target.startswith("/"):
        raise ProxyRequestError(
            400, "this is a forward proxy: send the absolute URL (http://host:port/path)"
        )
    url = urlsplit(head.target)
    if url.scheme.lower() != "http":
        raise ProxyRequestError(
            400, f"unsupported scheme in {head.target[:100]!r}; use CONNECT for https targets"
        )
    return _parse_authority(url.netloc, default_port=80)


def is_loopback_host(host: str) -> bool:
    """Return True for 'localhost' and loopback IP literals; no name is ever resolved."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_form_head(head: RequestHead, destination: Destination) -> bytes:
    """Rewrite an absolute-form head into origin form and drop Proxy-* headers."""
    url = urlsplit(head.target)
    path = url.path or "/"
    if url.query:
        path += "?" + url.query

    lines = [f"{head.method} {path} {head.version}"]
    if head.header("host") is None:
        lines.append(f"Host: {destination.authority}")
    lines += [f"{k}: {v}" for k, v in head.headers if k.lower() not in _HOP_BY_HOP_PROXY_HEADERS]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def relay_body(
    reader: asyncio.StreamReader, head: RequestHead, forward: Callable[[bytes], None]
) -> None:
    """Pass the request body to forward piece by piece, as it arrives.

    Chunked bodies are passed through unchanged, chunk framing included. A request with
    neither Transfer-Encoding nor Content-Length has no body (RFC 9112, section 6.3).
    Raises asyncio.IncompleteReadError when the client closes mid-body.
    """
    transfer_encoding = (head.header("transfer-encoding") or "").lower()
    if transfer_encoding.rstrip().endswith("chunked"):
        await _relay_chunked(reader, forward)
        return
    length_text = head.header("content-length")
    if length_text is None:
        return
    if not length_text.isdigit():
        raise ProxyRequestError(400, f"invalid Content-Length {length_text[:40]!r}")
    await _relay_exactly(reader, int(length_text), forward)


async def _relay_exactly(
    reader: asyncio.StreamReader, remaining: int, forward: Callable[[bytes], None]
) -> None:
    while remaining > 0:
        piece = await reader.read(min(remaining, _COPY_PIECE_BYTES))
        if not piece:
            raise asyncio.IncompleteReadError(b"", remaining)
        forward(piece)
        remaining -= len(piece)


async def _relay_chunked(reader: asyncio.StreamReader, forward: Callable[[bytes], None]) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        forward(size_line)
        size_text = size_line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise ProxyRequestError(400, f"invalid chunk size {size_text[:20]!r}") from exc
        if size == 0:
            break
        await _relay_exactly(reader, size + 2, forward)

    # Trailer fields, then the blank line that ends the message.
    while True:
        line = await reader.readuntil(b"\r\n")
        forward(line)
        if line == b"\r\n":
            return


def _parse_authority(authority: str, default_port: int | None) -> Destination:
    try:
        url = urlsplit("//" + authority)
        host = url.hostname
        port = url.port if url.port is not None else default_port
    except ValueError as exc:
        raise ProxyRequestError(400, f"invalid target {authority[:100]!r}: {exc}") from exc
    if not host or port is None:
        raise ProxyRequestError(400, f"invalid target {authority[:100]!r}; expected host:port")
    return Destination(host=host, port=port)
