"""Stream and body interpretation: each kind of provider quirk, not only one instance."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmping.agent.errors import (
    CONTENT_FILTER,
    EMPTY_RESPONSE,
    MALFORMED_RESPONSE,
    PROVIDER_ERROR,
    STREAM_TRUNCATED,
    ClassifiedError,
)
from llmping.agent.providers.anthropic_format import (
    interpret_message_body,
    interpret_message_event,
)
from llmping.agent.providers.openai_format import (
    interpret_chunk_event,
    interpret_completion_body,
)
from llmping.agent.sse import SseEvent
from llmping.agent.stream import ResponseAccumulator, StreamEnd


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> SseEvent:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return SseEvent(data=json.dumps({"id": "c1", "model": "m", "choices": [choice], **extra}))


def feed_openai(events: list[SseEvent]) -> ResponseAccumulator:
    acc = ResponseAccumulator()
    for now_ns, event in enumerate(events, start=1):
        interpret_chunk_event(event, now_ns * 1_000_000, acc)
    return acc


def anthropic_event(payload: dict[str, Any]) -> SseEvent:
    return SseEvent(event=str(payload.get("type", "")), data=json.dumps(payload))


def feed_anthropic(payloads: list[dict[str, Any]]) -> ResponseAccumulator:
    acc = ResponseAccumulator()
    for now_ns, payload in enumerate(payloads, start=1):
        interpret_message_event(anthropic_event(payload), now_ns * 1_000_000, acc)
    return acc


@pytest.mark.parametrize(
    "comment",
    [": OPENROUTER PROCESSING", ":ping", ":", ": keep-alive", ": ping - 2025-01-01 00:00:00"],
)
def test_interpret_comment_is_keepalive(comment: str) -> None:
    acc = feed_openai([SseEvent(event="", data=comment.lstrip(":"), is_comment=True)])
    assert acc.keepalive_count == 1
    assert acc.first_text_ns is None


@pytest.mark.parametrize(
    "payload",
    [
        {"choices": [], "prompt_filter_results": [{"prompt_index": 0}]},
        {"choices": [], "usage": None},
        {"id": "", "model": "", "choices": []},
        {"object": "chat.completion.chunk"},
        {"choices": None},
    ],
)
def test_interpret_empty_choices_skipped(payload: dict[str, Any]) -> None:
    acc = feed_openai([SseEvent(data=json.dumps(payload))])
    assert acc.text_events == 0
    assert acc.error is None
    assert acc.response_id == ""


def test_interpret_usage_last_value_wins() -> None:
    acc = feed_openai(
        [
            chunk({"content": "a"}, usage={"prompt_tokens": 3, "completion_tokens": 1}),
            chunk({"content": "b"}, usage={"prompt_tokens": 3, "completion_tokens": 2}),
            SseEvent(data=json.dumps({"choices": [], "usage": {"completion_tokens": 2}})),
        ]
    )
    assert acc.output_tokens == 2
    assert acc.input_tokens == 3


def test_interpret_usage_inside_choice() -> None:
    event = SseEvent(
        data=json.dumps(
            {"choices": [{"delta": {}, "finish_reason": "stop", "usage": {"completion_tokens": 9}}]}
        )
    )
    assert feed_openai([event]).output_tokens == 9


@pytest.mark.parametrize(
    ("delta", "content", "reasoning"),
    [
        ({"role": "assistant", "content": ""}, "", ""),
        ({"content": None, "reasoning_content": None}, "", ""),
        ({"content": "hi"}, "hi", ""),
        ({"reasoning_content": "think"}, "", "think"),
        ({"reasoning": "think"}, "", "think"),
        ({"reasoning": "think", "reasoning_content": "think"}, "", "think"),
        ({"refusal": "I can't"}, "I can't", ""),
    ],
)
def test_interpret_delta_fields(delta: dict[str, Any], content: str, reasoning: str) -> None:
    acc = feed_openai([chunk(delta)])
    assert acc.output_text == content
    assert acc.reasoning_text == reasoning
    assert acc.text_events == (1 if content or reasoning else 0)
    assert acc.content_chunks == (1 if content else 0)


def test_interpret_tool_call_is_text_not_content() -> None:
    acc = feed_openai(
        [
            chunk({"role": "assistant", "content": None}),
            chunk({"tool_calls": [{"index": 0, "function": {"name": "get_weather"}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
            chunk({"function_call": {"arguments": '"Paris"}'}}),
            chunk(finish="tool_calls"),
        ]
    )
    assert acc.first_text_ns == 2_000_000
    assert acc.text_events == 3
    assert acc.content_chunks == 0
    assert acc.itl_gaps_ms == [1.0, 1.0]
    assert acc.outcome(StreamEnd.CLEAN) is None


def test_interpret_first_content_after_reasoning() -> None:
    acc = feed_openai(
        [chunk({"reasoning_content": "hmm"}), chunk({"content": "yes"}), chunk(finish="stop")]
    )
    assert acc.first_text_ns == 1_000_000
    assert acc.first_content_ns == 2_000_000


@pytest.mark.parametrize(
    ("event", "detail"),
    [
        (SseEvent(data='{"error": {"message": "boom", "type": "server_error"}}'), "server_error"),
        (SseEvent(data='{"error": "upstream timed out"}'), "upstream timed out"),
        (
            SseEvent(data='{"object": "error", "message": "oom", "type": "InternalError"}'),
            "InternalError: oom",
        ),
        (
            SseEvent(data='{"type": "error", "error": {"type": "overloaded_error"}}'),
            "overloaded_error",
        ),
        (SseEvent(event="error", data='{"message": "gone"}'), "gone"),
        (SseEvent(event="error", data='"text"'), "text"),
        (SseEvent(data='{"code": 50000, "message": "Model busy", "data": null}'), "Model busy"),
    ],
)
def test_interpret_error_in_200_stream(event: SseEvent, detail: str) -> None:
    acc = feed_openai([chunk({"content": "partial"}), event])
    assert acc.error is not None
    assert acc.error.error_class == PROVIDER_ERROR
    assert detail in acc.error.detail
    outcome = acc.outcome(StreamEnd.CLEAN)
    assert outcome is not None
    assert outcome.error_class == PROVIDER_ERROR


@pytest.mark.parametrize("data", ["{not json", '{"choices": [', "<html>", "[1, 2"])
def test_interpret_invalid_json_is_malformed(data: str) -> None:
    with pytest.raises(ClassifiedError) as caught:
        feed_openai([SseEvent(data=data)])
    assert caught.value.error_class == MALFORMED_RESPONSE


@pytest.mark.parametrize("data", ["42", '"text"', "null", "[]"])
def test_interpret_non_object_event_is_malformed(data: str) -> None:
    with pytest.raises(ClassifiedError) as caught:
        feed_openai([SseEvent(data=data)])
    assert caught.value.error_class == MALFORMED_RESPONSE


@pytest.mark.parametrize("reason", ["content_filter", "refusal", "SAFETY"])
def test_interpret_content_filter_finish(reason: str) -> None:
    acc = feed_openai([chunk({"content": "part"}), chunk(finish=reason)])
    outcome = acc.outcome(StreamEnd.CLEAN)
    assert outcome is not None
    assert outcome.error_class == CONTENT_FILTER


@pytest.mark.parametrize(
    ("text", "finish", "done", "end", "expected"),
    [
        (True, True, True, StreamEnd.CLEAN, None),
        (True, True, False, StreamEnd.CLEAN, None),
        (True, False, True, StreamEnd.CLEAN, None),
        (True, False, False, StreamEnd.CLEAN, STREAM_TRUNCATED),
        (True, False, False, StreamEnd.ABORTED, STREAM_TRUNCATED),
        (True, True, False, StreamEnd.ABORTED, None),
        (False, False, True, StreamEnd.CLEAN, EMPTY_RESPONSE),
        (False, False, False, StreamEnd.CLEAN, EMPTY_RESPONSE),
        (False, False, False, StreamEnd.ABORTED, STREAM_TRUNCATED),
        (False, True, True, StreamEnd.CLEAN, None),
        (True, False, False, StreamEnd.WHOLE_BODY, None),
        (False, False, False, StreamEnd.WHOLE_BODY, EMPTY_RESPONSE),
    ],
)
def test_interpret_outcome_table(
    text: bool, finish: bool, done: bool, end: StreamEnd, expected: str | None
) -> None:
    acc = ResponseAccumulator()
    if text:
        acc.record_text(1, content="x")
    if finish:
        acc.set_finish_reason("stop")
    acc.done_seen = done
    outcome = acc.outcome(end)
    assert (outcome.error_class if outcome else None) == expected


def test_interpret_anthropic_tool_use_and_thinking() -> None:
    acc = feed_anthropic(
        [
            {"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking"}},
            {"type": "content_block_delta", "delta": {"type": "thinking_delta", "thinking": "hm"}},
            {"type": "content_block_delta", "delta": {"type": "signature_delta", "signature": "s"}},
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "name": "lookup", "input": {}},
            },
            {
                "type": "content_block_delta",
                "delta": {"type": "input_json_delta", "partial_json": '{"q": 1}'},
            },
            {"type": "brand_new_event", "whatever": True},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}},
            {"type": "message_stop"},
        ]
    )
    assert acc.first_text_ns == 3_000_000
    assert acc.text_events == 3
    assert acc.content_chunks == 0
    assert acc.reasoning_text == "hm"
    assert acc.finish_reason == "tool_use"
    assert acc.done_seen
    assert acc.response_id == "msg_1"


def test_interpret_anthropic_usage_placeholder_not_final() -> None:
    acc = feed_anthropic(
        [
            {
                "type": "message_start",
                "message": {"usage": {"input_tokens": 25, "output_tokens": 1}},
            },
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}},
        ]
    )
    assert acc.output_tokens is None
    assert acc.input_tokens == 25
    acc_done = feed_anthropic(
        [
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 15},
            }
        ]
    )
    assert acc_done.output_tokens == 15


def test_interpret_anthropic_error_event() -> None:
    acc = feed_anthropic(
        [{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}]
    )
    assert acc.error is not None
    assert acc.error.detail == "overloaded_error: Overloaded"


def test_interpret_openai_body() -> None:
    acc = ResponseAccumulator()
    body = {
        "id": "c9",
        "model": "gpt",
        "choices": [{"message": {"role": "assistant", "content": "你好"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2},
    }
    interpret_completion_body(body, 7, acc)
    assert acc.output_text == "你好"
    assert acc.first_text_ns == 7
    assert acc.output_tokens == 2
    assert acc.outcome(StreamEnd.WHOLE_BODY) is None


def test_interpret_openai_body_error() -> None:
    acc = ResponseAccumulator()
    interpret_completion_body({"error": {"message": "nope", "code": "bad"}}, 1, acc)
    assert acc.error is not None
    assert acc.error.detail == "bad: nope"


def test_interpret_anthropic_body() -> None:
    acc = ResponseAccumulator()
    body = {
        "type": "message",
        "id": "msg",
        "content": [{"type": "text", "text": "Hello"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 2},
    }
    interpret_message_body(body, 5, acc)
    assert acc.output_text == "Hello"
    assert acc.output_tokens == 2
    assert acc.finish_reason == "end_turn"
