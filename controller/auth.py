"""Bearer-token check on incoming gRPC calls."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

import grpc

from llmping.protocol import TOKEN_REJECTED_PREFIX

AUTHORIZATION_KEY = "authorization"
BEARER_PREFIX = "Bearer "


def token_matches(metadata: Iterable[tuple[str, str | bytes]] | None, token: str) -> bool:
    """Return True when no token is required or the metadata carries ``Bearer <token>``."""
    if not token:
        return True
    expected = (BEARER_PREFIX + token).encode()
    for key, value in metadata or ():
        if key.lower() != AUTHORIZATION_KEY:
            continue
        given = value.encode() if isinstance(value, str) else bytes(value)
        # compare_digest takes the same time whatever the mismatch position.
        if hmac.compare_digest(given, expected):
            return True
    return False


async def require_token(context: grpc.aio.ServicerContext, token: str, who: str) -> None:
    """Abort the call with UNAUTHENTICATED unless it carries the right token.

    ``who`` names the flag or variable that sets the caller's token, for the message.
    """
    if token_matches(context.invocation_metadata(), token):
        return
    await context.abort(
        grpc.StatusCode.UNAUTHENTICATED,
        f"{TOKEN_REJECTED_PREFIX}; start {who} with --token or LLMPING_TOKEN set to the "
        "controller's token",
    )
