"""Anthropic Messages wire format of the simulator."""

from __future__ import annotations

import json

import pytest


def _events(raw: bytes) -> list[tuple[str, dict]]:
    events = []
    for block in raw.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        name_line, data_line = block.split("\n")
        events.append(
            (name_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: ")))
        )
    return events


def _messages_body(**extra):
    body = {
        "model": "m",
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    body.update(extra)
    return body


async def test_stream_event_sequence(simulator, session):
    sim = await simulator()
    async with session.post(sim.base_url("sim") + "/messages", json=_messages_body()) as response:
        assert response.status == 200
        events = _events(await response.read())

    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(payload["type"] == name for name, payload in events)
    assert events[0][1]["message"]["role"] == "assistant"
    assert events[3][1]["delta"]["type"] == "text_delta"
    message_delta = events[-2][1]
    assert message_delta["delta"]["stop_reason"] == "end_turn"
    assert message_delta["usage"]["output_tokens"] == 5


async def test_thinking_block_first(simulator, session, profile, quirky):
    sim = await simulator(quirky(profile(), reasoning_tokens=2))
    async with session.post(sim.base_url("sim") + "/messages", json=_messages_body()) as response:
        events = _events(await response.read())

    starts = [
        payload["content_block"]["type"]
        for name, payload in events
        if name == "content_block_start"
    ]
    assert starts == ["thinking", "text"]
    deltas = [payload["delta"]["type"] for name, payload in events if name == "content_block_delta"]
    assert deltas == ["thinking_delta"] * 2 + ["signature_delta"] + ["text_delta"] * 5


async def test_max_tokens_stop_reason(simulator, session):
    sim = await simulator()
    request = _messages_body(max_tokens=2, stream=False)
    async with session.post(sim.base_url("sim") + "/messages", json=request) as response:
        message = await response.json()
    assert message["type"] == "message"
    assert message["stop_reason"] == "max_tokens"
    assert message["usage"]["output_tokens"] == 2
    assert message["content"][0]["type"] == "text"


async def test_max_tokens_required(simulator, session):
    sim = await simulator()
    request = _messages_body()
    del request["max_tokens"]
    async with session.post(sim.base_url("sim") + "/messages", json=request) as response:
        assert response.status == 400
        error = await response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("headers", "status"), [({}, 401), ({"x-api-key": "sk-ant"}, 200)])
async def test_x_api_key(simulator, session, profile, headers, status):
    sim = await simulator(profile(api_key="sk-ant"))
    request = _messages_body(stream=False)
    async with session.post(
        sim.base_url("sim") + "/messages", json=request, headers=headers
    ) as response:
        assert response.status == status
        error_body = await response.json()
    if status == 401:
        assert error_body["error"]["type"] == "authentication_error"


async def test_unknown_model_not_found(simulator, session):
    sim = await simulator()
    request = _messages_body(model="claude-x")
    async with session.post(sim.base_url("sim") + "/messages", json=request) as response:
        assert response.status == 404
        error = await response.json()
    assert error["error"]["type"] == "not_found_error"
    assert "claude-x" in error["error"]["message"]


async def test_error_event_mid_stream(simulator, session, profile, quirky):
    sim = await simulator(quirky(profile(), stream_error_rate=1.0, fault_after_tokens=1))
    async with session.post(sim.base_url("sim") + "/messages", json=_messages_body()) as response:
        events = _events(await response.read())
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["type"] == "overloaded_error"
    assert [name for name, _ in events].count("content_block_delta") == 1


async def test_chinese_prompt_chinese_text(simulator, session):
    sim = await simulator()
    request = _messages_body(
        stream=False, messages=[{"role": "user", "content": "你好，请简单介绍一下"}]
    )
    async with session.post(sim.base_url("sim") + "/messages", json=request) as response:
        message = json.loads((await response.read()).decode("utf-8"))
    text = message["content"][0]["text"]
    assert any("\u4e00" <= char <= "\u9fff" for char in text)
