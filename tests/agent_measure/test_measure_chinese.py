"""Chinese answers end to end: UTF-8 characters split across reads come out whole."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from llmping.agent.stream import ResponseAccumulator
from llmping.agent.tokens import estimate_tokens
from llmping.v1 import llmping_pb2 as pb

PIECES = ["北京是", "中国的首都。", "长城很长！", "Great Wall 😀", "，谢谢。"]
ANSWER = "".join(PIECES)


def openai_body() -> bytes:
    events = [
        {"choices": [{"delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        *[{"choices": [{"delta": {"content": piece}, "finish_reason": None}]} for piece in PIECES],
        {"choices": [{"delta": {}, "finish_reason": "stop"}]},
    ]
    text = "".join(f"data: {json.dumps(event, ensure_ascii=False)}\n\n" for event in events)
    return (text + "data: [DONE]\n\n").encode()


def anthropic_body() -> bytes:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg", "usage": {"input_tokens": 3}}},
        *[
            {"type": "content_block_delta", "delta": {"type": "text_delta", "text": piece}}
            for piece in PIECES
        ],
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        {"type": "message_stop"},
    ]
    return "".join(
        f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
        for event in events
    ).encode()


def split_inside_characters(body: bytes, step: int) -> list[bytes]:
    """Cut every `step` bytes; with 3- and 4-byte characters most cuts land inside one."""
    return [body[start : start + step] for start in range(0, len(body), step)]


@pytest.mark.parametrize(
    ("kind", "make_body"), [("openai", openai_body), ("anthropic", anthropic_body)]
)
@pytest.mark.parametrize("step", [1, 2, 5, 7])
async def test_chinese_split_mid_character(
    kind: str, make_body: Any, step: int, kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    chunks = split_inside_characters(make_body(), step)
    assert any(chunk[:1] and 0x80 <= chunk[0] < 0xC0 for chunk in chunks)
    server = await scripted_server(
        [kit.ScriptedResponse(chunks=chunks, delays_ms=[0.2] * len(chunks))]
    )
    executor = await make_executor(kit.provider_for(kind, server.url))
    seen: list[ResponseAccumulator] = []
    executor.response_observer = lambda _record, acc: seen.append(acc)
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)

    assert record.error_class == ""
    assert seen[0].output_text == ANSWER
    assert "\ufffd" not in seen[0].output_text
    assert record.content_chunks == len(PIECES)
    assert record.output_tokens_estimated
    assert record.output_tokens == estimate_tokens(ANSWER)


def test_chinese_token_estimate() -> None:
    # One token per CJK character, about four characters per token otherwise.
    assert estimate_tokens("北京是中国的首都") == 8
    assert estimate_tokens("Great Wall") == 3
    assert estimate_tokens("长城 Great Wall") == 2 + 3
    assert estimate_tokens("") == 0


async def test_chinese_non_stream_body_split(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    body = json.dumps(
        {"choices": [{"message": {"content": ANSWER}, "finish_reason": "stop"}]},
        ensure_ascii=False,
    ).encode()
    headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Transfer-Encoding", "chunked"),
    ]
    chunks = split_inside_characters(body, 5)
    server = await scripted_server(
        [kit.ScriptedResponse(headers=headers, chunks=chunks, delays_ms=[0.2] * len(chunks))]
    )
    executor = await make_executor(
        kit.provider_for("openai", server.url), kit.request_spec(stream=False)
    )
    seen: list[ResponseAccumulator] = []
    executor.response_observer = lambda _record, acc: seen.append(acc)
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)

    assert record.error_class == ""
    assert seen[0].output_text == ANSWER
