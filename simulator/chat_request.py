"""Parsing of chat request bodies (OpenAI chat completions and Anthropic Messages)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web


class RequestRejected(Exception):
    """A request that the simulated provider rejects with an error status.

    The server turns it into an error response, so it never leaves the simulator.
    """

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass(frozen=True)
class ChatRequest:
    """Fields of a chat request that change the simulated response."""

    model: str
    messages: list[object]
    stream: bool
    include_usage: bool
    max_tokens: int | None


async def read_json_object(request: web.Request) -> dict[str, object]:
    """Read the body as a JSON object or raise RequestRejected(400)."""
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestRejected(
            400, f"request body is not valid JSON: {exc}", "invalid_json"
        ) from exc
    if not isinstance(body, dict):
        raise RequestRejected(400, "request body must be a JSON object", "invalid_request")
    return body


def parse_openai_chat(body: dict[str, object]) -> ChatRequest:
    """Read an OpenAI /chat/completions body; max_completion_tokens wins over max_tokens."""
    stream = _optional_bool(body, "stream")
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    max_tokens = _optional_positive_int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _optional_positive_int(body, "max_tokens")
    return ChatRequest(
        model=_required_model(body),
        messages=_required_messages(body),
        stream=stream,
        include_usage=include_usage,
        max_tokens=max_tokens,
    )


def parse_anthropic_messages(body: dict[str, object]) -> ChatRequest:
    """Read an Anthropic /messages body, where max_tokens is required."""
    max_tokens = _optional_positive_int(body, "max_tokens")
    if max_tokens is None:
        raise RequestRejected(400, "max_tokens: Field required")
    return ChatRequest(
        model=_required_model(body),
        messages=_required_messages(body),
        stream=_optional_bool(body, "stream"),
        include_usage=False,
        max_tokens=max_tokens,
    )


def _required_model(body: dict[str, object]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestRejected(400, "model: a non-empty string is required", "invalid_request")
    return model


def _required_messages(body: dict[str, object]) -> list[object]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestRejected(400, "messages: a non-empty list is required", "invalid_request")
    return messages


def _optional_bool(body: dict[str, object], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestRejected(
            400, f"{name}: expected true or false, got {value!r}", "invalid_request"
        )
    return value


def _optional_positive_int(body: dict[str, object], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestRejected(
            400, f"{name}: expected an integer >= 1, got {value!r}", "invalid_request"
        )
    return value
