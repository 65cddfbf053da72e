"""The LiteLLM gateway fixture, and the stream shape LiteLLM sends for mock models.

These pin what the end-to-end tests rely on: the gateway serves /v1 with the master
key, mock_delay delays the response, and a streamed mock response with
stream_options.include_usage ends with a usage chunk. Unlike OpenAI, which sends
``choices: []`` with the usage, LiteLLM's usage chunk carries one choice with an empty
delta, so a parser must not take it for a text chunk.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

PROMPT = "写一篇100字的短文"


def chat_body(model: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 64,
        "stream_options": {"include_usage": True},
    }


def content_of(event: dict[str, Any]) -> str:
    choices = event.get("choices") or []
    if not choices:
        return ""
    content: str | None = choices[0].get("delta", {}).get("content")
    return content or ""


def test_gateway_streams_chinese_text(litellm_gateway: Any) -> None:
    events = litellm_gateway.stream_events(chat_body("mock-zh"))

    text = "".join(content_of(event) for event in events)
    assert text == litellm_gateway.answer_text("mock-zh")
    assert events[0]["choices"][0]["delta"].get("role") == "assistant"
    assert all(event["model"] == "mock-zh" for event in events)


def test_gateway_stream_ends_with_usage(litellm_gateway: Any) -> None:
    events = litellm_gateway.stream_events(chat_body("mock-en"))

    usage_events = [event for event in events if event.get("usage")]
    assert len(usage_events) == 1
    assert usage_events[0] is events[-1]
    assert usage_events[0]["usage"]["completion_tokens"] > 0
    assert content_of(usage_events[0]) == ""
    finish_reasons = [
        choice.get("finish_reason")
        for event in events
        for choice in event.get("choices", [])
        if choice.get("finish_reason")
    ]
    assert finish_reasons == ["stop"]


def test_gateway_usage_chunk_keeps_a_choice(litellm_gateway: Any) -> None:
    events = litellm_gateway.stream_events(chat_body("mock-en"))

    assert events[-1]["choices"] == [{"index": 0, "delta": {}}]


def test_gateway_answers_without_stream(litellm_gateway: Any) -> None:
    body = json.loads(litellm_gateway.post_chat(chat_body("mock-en")))

    assert body["choices"][0]["message"]["content"] == litellm_gateway.answer_text("mock-en")
    assert body["usage"]["completion_tokens"] > 0


def test_gateway_mock_delay_slows_answer(litellm_gateway: Any) -> None:
    started_ns = time.perf_counter_ns()
    litellm_gateway.stream_events(chat_body("mock-slow"))
    elapsed_s = (time.perf_counter_ns() - started_ns) / 1e9

    assert elapsed_s >= litellm_gateway.slow_delay_s()


def test_gateway_rejects_wrong_key(litellm_gateway: Any) -> None:
    request = urllib.request.Request(
        f"{litellm_gateway.base_url}/chat/completions",
        data=json.dumps(chat_body("mock-en")).encode("utf-8"),
        headers={"Authorization": "Bearer wrong-key", "Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=10.0)

    # NOTE: litellm 1.108.7 without a database rejects a wrong key with 400
    # ("No connected db.") rather than 401.
    assert 400 <= raised.value.code < 500


def test_gateway_mock_rate_limit_is_429(litellm_gateway: Any) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        litellm_gateway.post_chat(chat_body("mock-ratelimited"))

    assert raised.value.code == 429
