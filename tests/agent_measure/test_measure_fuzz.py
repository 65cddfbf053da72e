"""Fuzzing: random bytes and random event structures never raise anything but
ClassifiedError from the parser, the interpreters or the error classifier."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmping.agent.attempt import RequestAttempt
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
from llmping.agent.providers.openai_format import (
    interpret_chunk_event,
    interpret_completion_body,
)
from llmping.agent.ratelimit import retry_after_s
from llmping.agent.sse import SseEvent, SseParser
from llmping.agent.stream import ResponseAccumulator, StreamEnd
from llmping.v1 import llmping_pb2 as pb

_KEYS = st.sampled_from(
    [
        "choices", "delta", "message", "content", "reasoning_content", "reasoning",
        "tool_calls", "function", "name", "arguments", "finish_reason", "usage",
        "completion_tokens", "prompt_tokens", "completion_tokens_details",
        "reasoning_tokens", "error", "type", "code", "id", "model", "object", "text",
        "content_block", "stop_reason", "output_tokens", "input_tokens", "partial_json",
        "thinking", "index", "refusal", "function_call", "detail",
    ]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "message_start", "content_block_delta", "message_delta", "text_delta",
            "thinking_delta", "input_json_delta", "tool_use", "error", "stop", "[DONE]",
        ]
    ),
)  # fmt: skip
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_KEYS, children, max_size=6),
    ),
    max_leaves=30,
)
_EVENT_NAMES = st.sampled_from(["message", "error", "message_start", "ping", ""])


def _fill_record(acc: ResponseAccumulator) -> None:
    attempt = RequestAttempt(scheduled_ns=0, is_https=False, send_ns=1, acc=acc)
    attempt.finish(10**9)
    attempt.error = acc.outcome(StreamEnd.CLEAN)
    attempt.fill_record(pb.Record(), measure_from_scheduled=True)


def _events(values: list[Any], names: list[str]) -> list[SseEvent]:
    return [
        SseEvent(event=name, data=json.dumps(value))
        for value, name in zip(values, names + ["message"] * len(values), strict=False)
    ]


@settings(max_examples=300, deadline=None)
@given(st.lists(JSON_VALUES, max_size=8), st.lists(_EVENT_NAMES, max_size=8))
def test_fuzz_openai_events(values: list[Any], names: list[str]) -> None:
    acc = ResponseAccumulator()
    try:
        for now_ns, event in enumerate(_events(values, names)):
            interpret_chunk_event(event, now_ns, acc)
    except ClassifiedError:
        pass
    for end in StreamEnd:
        acc.outcome(end)
    _fill_record(acc)


@settings(max_examples=300, deadline=None)
@given(st.lists(JSON_VALUES, max_size=8), st.lists(_EVENT_NAMES, max_size=8))
def test_fuzz_anthropic_events(values: list[Any], names: list[str]) -> None:
    acc = ResponseAccumulator()
    try:
        for now_ns, event in enumerate(_events(values, names)):
            interpret_message_event(event, now_ns, acc)
    except ClassifiedError:
        pass
    for end in StreamEnd:
        acc.outcome(end)
    _fill_record(acc)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_fuzz_bodies(value: Any) -> None:
    for interpret in (interpret_completion_body, interpret_message_body):
        acc = ResponseAccumulator()
        with contextlib.suppress(ClassifiedError):
            interpret(value, 1, acc)
        _fill_record(acc)
    provider_error_detail(value)
    body = json.dumps(value).encode()
    assert classify_http_error(400, {}, body).error_class
    assert isinstance(describe_body({}, body), str)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=10))
def test_fuzz_bytes_through_parser_and_interpreters(chunks: list[bytes]) -> None:
    for interpret in (interpret_chunk_event, interpret_message_event):
        parser = SseParser(max_line_bytes=1000)
        acc = ResponseAccumulator()
        try:
            for chunk in chunks:
                for event in parser.feed(chunk):
                    interpret(event, 1, acc)
            for event in parser.finish():
                interpret(event, 2, acc)
        except ClassifiedError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(100, 599))
def test_fuzz_error_bodies(body: bytes, status: int) -> None:
    error = classify_http_error(status, {"Content-Type": "text/html"}, body)
    assert error.error_class in (f"http_{status}", "model_not_found")
    assert len(error.detail) <= 300


_RATE_HEADER_NAMES = st.sampled_from(
    [
        "retry-after",
        "retry-after-ms",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
        "anthropic-ratelimit-requests-remaining",
        "anthropic-ratelimit-requests-reset",
    ]
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_RATE_HEADER_NAMES, st.text(max_size=30)))
def test_fuzz_retry_after_headers(headers: dict[str, str]) -> None:
    value = retry_after_s(headers, 1_700_000_000.0)
    assert value is None or value >= 0
