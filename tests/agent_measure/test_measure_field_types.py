"""Every JSON field of a provider body may carry any JSON type.

Hypothesis finds such cases only by chance, so this walks a fixed grid: each known field
name, at the top level and nested one or two levels, holding each JSON type. Nothing may
raise except the classified error.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

from llmping.agent.errors import (
    ClassifiedError,
    classify_http_error,
    describe_body,
    provider_error_detail,
)
from llmping.agent.providers.anthropic_format import (
    interpret_message_body,
    interpret_message_event,
)
from llmping.agent.providers.openai_format import interpret_chunk_event, interpret_completion_body
from llmping.agent.sse import SseParser
from llmping.agent.stream import ResponseAccumulator

# Unhashable values (lists, objects) broke set-membership checks once.
VALUES: list[Any] = [[], {}, 0, -1, 1.5, True, "x", None, [1], [{}], {"a": []}]
FIELDS = [
    "error", "type", "message", "code", "choices", "delta", "content", "usage",
    "finish_reason", "stop_reason", "model", "id", "index", "tool_calls", "function",
    "arguments", "name", "reasoning_content", "content_block", "completion_tokens",
    "output_tokens", "text", "thinking", "partial_json", "prompt_filter_results",
]  # fmt: skip
CONTAINERS = ["choices", "delta", "content", "content_block", "usage", "error", "message"]


def bodies() -> Iterator[dict[str, Any]]:
    for outer in FIELDS:
        for value in VALUES:
            yield {outer: value}
        for inner in FIELDS:
            for value in VALUES[:4]:
                yield {outer: {inner: value}}
                yield {outer: [{inner: value}]}
    for container in CONTAINERS:
        for inner in FIELDS:
            for value in VALUES:
                yield {"choices": [{container: {inner: value}}]}
                yield {"type": "content_block_delta", container: {inner: value}}


def feed_event(interpret: Callable[..., Any], body: dict[str, Any]) -> None:
    parser = SseParser()
    accumulator = ResponseAccumulator()
    raw = b"event: content_block_delta\ndata: " + json.dumps(body).encode() + b"\n\n"
    for event in parser.feed(raw):
        interpret(event, 1, accumulator)


def check_body(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    steps: list[Callable[[], Any]] = [
        lambda: interpret_completion_body(body, 1, ResponseAccumulator()),
        lambda: interpret_message_body(body, 1, ResponseAccumulator()),
        lambda: feed_event(interpret_chunk_event, body),
        lambda: feed_event(interpret_message_event, body),
        lambda: provider_error_detail(body),
        lambda: describe_body({}, raw),
    ]
    for step in steps:
        with contextlib.suppress(ClassifiedError):
            step()
    assert classify_http_error(400, {}, raw).error_class == "http_400"


def test_field_types_never_crash_interpreters() -> None:
    checked = 0
    for body in bodies():
        check_body(body)
        checked += 1
    assert checked > 5000
