"""OpenAI wire format of the simulator: streams, JSON responses, errors, keys, quirks."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import pytest


def _content_chunks(lines):
    return [
        line.data
        for line in lines
        if line.text.startswith("data: {")
        and line.data.get("choices")
        and line.data["choices"][0]["delta"].get("content")
    ]


async def test_stream_chunk_sequence(simulator, session, read_sse, body):
    sim = await simulator()
    url = sim.base_url("sim") + "/chat/completions"
    async with session.post(url, json=body()) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        lines = await read_sse(response)

    first = lines[0].data
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(_content_chunks(lines)) == 5
    finish = lines[-2].data
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["choices"][0]["delta"] == {}
    assert lines[-1].text == "data: [DONE]"
    assert all("usage" not in line.data for line in lines[:-1])


async def test_stream_include_usage_adds_final_chunk(simulator, session, read_sse, body):
    sim = await simulator()
    url = sim.base_url("sim") + "/chat/completions"
    request = body(stream_options={"include_usage": True})
    async with session.post(url, json=request) as response:
        lines = await read_sse(response)

    usage_chunk = lines[-2].data
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 5
    assert usage_chunk["usage"]["total_tokens"] == usage_chunk["usage"]["prompt_tokens"] + 5
    assert lines[-1].text == "data: [DONE]"
    # OpenAI sends "usage": null on every chunk before the usage chunk.
    assert all(line.data["usage"] is None for line in lines[:-2])


async def test_non_streaming_completion(simulator, session, body):
    sim = await simulator()
    url = sim.base_url("sim") + "/chat/completions"
    async with session.post(url, json=body(stream=False)) as response:
        assert response.status == 200
        completion = await response.json()

    assert completion["object"] == "chat.completion"
    choice = completion["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    assert completion["usage"]["completion_tokens"] == 5


async def test_max_tokens_cuts_completion(simulator, session, read_sse, body):
    sim = await simulator()
    url = sim.base_url("sim") + "/chat/completions"
    request = body(max_tokens=2, stream_options={"include_usage": True})
    async with session.post(url, json=request) as response:
        lines = await read_sse(response)

    assert len(_content_chunks(lines)) == 2
    assert lines[-3].data["choices"][0]["finish_reason"] == "length"
    assert lines[-2].data["usage"]["completion_tokens"] == 2


async def test_max_completion_tokens_wins(simulator, session, body):
    sim = await simulator()
    url = sim.base_url("sim") + "/chat/completions"
    request = body(stream=False, max_tokens=4, max_completion_tokens=1)
    async with session.post(url, json=request) as response:
        completion = await response.json()
    assert completion["usage"]["completion_tokens"] == 1


async def test_unknown_model_404(simulator, session, body):
    sim = await simulator()
    url = sim.base_url("sim") + "/chat/completions"
    async with session.post(url, json=body(model="gpt-9")) as response:
        assert response.status == 404
        error = (await response.json())["error"]
    assert error["code"] == "model_not_found"
    assert "gpt-9" in error["message"]
    assert error["type"] == "invalid_request_error"


async def test_unknown_provider_404(simulator, session, body):
    sim = await simulator()
    async with session.post(sim.url + "/nobody/v1/chat/completions", json=body()) as response:
        assert response.status == 404
        error = (await response.json())["error"]
    assert error["code"] == "provider_not_found"
    assert "nobody" in error["message"]


async def test_invalid_json_body_400(simulator, session):
    sim = await simulator()
    url = sim.base_url("sim") + "/chat/completions"
    async with session.post(url, data=b"{not json") as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert "not valid JSON" in error["message"]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong-key"}, 401),
        ({"Authorization": "Bearer sk-test-123"}, 200),
        ({"api-key": "sk-test-123"}, 200),
    ],
)
async def test_api_key_check(simulator, session, profile, body, headers, status):
    sim = await simulator(profile(api_key="sk-test-123"))
    url = sim.base_url("sim") + "/chat/completions"
    async with session.post(url, json=body(stream=False), headers=headers) as response:
        assert response.status == status
        text = await response.text()
    if status == 401:
        error = (await response.json())["error"]
        assert error["code"] == "invalid_api_key"
        assert "sk-test-123" not in text
        assert "wrong-key" not in text


async def test_models_list(simulator, session, profile):
    sim = await simulator(profile(models=("a", "b")))
    async with session.get(sim.base_url("sim") + "/models") as response:
        listing = await response.json()
    assert listing["object"] == "list"
    assert [model["id"] for model in listing["data"]] == ["a", "b"]


async def test_chinese_prompt_gets_chinese_text(simulator, session, read_sse, profile):
    sim = await simulator(profile(output_tokens=30))
    url = sim.base_url("sim") + "/chat/completions"
    request = {
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": "写一篇100字的短文"}],
    }
    async with session.post(url, json=request) as response:
        raw = await response.read()

    # Strict decoding fails on any multi-byte character split or mangled by the server.
    text = raw.decode("utf-8")
    assert "\\u" not in text
    contents = [
        line.removeprefix("data: ")
        for line in text.split("\n\n")
        if line.startswith("data: {") and '"content":"' in line
    ]
    completion_text = "".join(contents)
    assert any("\u4e00" <= char <= "\u9fff" for char in completion_text)


async def test_azure_deployment_route(simulator, session, profile, body):
    sim = await simulator(profile(models=("gpt-4o",), api_key="azure-key"))
    url = sim.url + "/sim/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21"
    request = body(model="ignored", stream=False)
    async with session.post(url, json=request, headers={"api-key": "azure-key"}) as response:
        assert response.status == 200
        completion = await response.json()
    assert completion["model"] == "gpt-4o"


async def test_injected_html_error(simulator, session, profile, body):
    sim = await simulator(profile(error_rate=1.0, error_status=502, error_body="html"))
    url = sim.base_url("sim") + "/chat/completions"
    async with session.post(url, json=body()) as response:
        assert response.status == 502
        assert response.headers["Content-Type"].startswith("text/html")
        page = await response.text()
    assert "502 Bad Gateway" in page
    assert sim.stats("sim").statuses[502] == 1


async def test_injected_json_error(simulator, session, profile, body):
    sim = await simulator(profile(error_rate=1.0, error_status=503, error_body="json"))
    url = sim.base_url("sim") + "/chat/completions"
    async with session.post(url, json=body()) as response:
        assert response.status == 503
        error = (await response.json())["error"]
    assert error["type"] == "server_error"


async def test_azure_empty_first_chunk(simulator, session, read_sse, profile, quirky, body):
    sim = await simulator(quirky(profile(), azure_empty_first_chunk=True))
    async with session.post(sim.base_url("sim") + "/chat/completions", json=body()) as response:
        lines = await read_sse(response)
    assert lines[0].data["choices"] == []
    assert lines[0].data["prompt_filter_results"][0]["prompt_index"] == 0
    assert lines[1].data["choices"][0]["delta"]["role"] == "assistant"


async def test_reasoning_before_content(simulator, session, read_sse, profile, quirky, body):
    sim = await simulator(quirky(profile(), reasoning_tokens=3))
    async with session.post(sim.base_url("sim") + "/chat/completions", json=body()) as response:
        lines = await read_sse(response)
    deltas = [line.data["choices"][0]["delta"] for line in lines[1:-2]]
    kinds = ["reasoning_content" if "reasoning_content" in d else "content" for d in deltas]
    assert kinds == ["reasoning_content"] * 3 + ["content"] * 5


async def test_keepalive_comments_before_first_token(
    simulator, session, read_sse, profile, quirky, body
):
    sim = await simulator(quirky(profile(ttft_ms=90.0), keepalive_interval_ms=20.0))
    async with session.post(sim.base_url("sim") + "/chat/completions", json=body()) as response:
        lines = await read_sse(response)
    texts = [line.text for line in lines]
    first_content = next(
        i
        for i, line in enumerate(lines)
        if line.text.startswith("data: {")
        and line.data["choices"]
        and line.data["choices"][0]["delta"].get("content")
    )
    comments = [i for i, text in enumerate(texts) if text.startswith(":")]
    assert len(comments) == 4
    assert all(i < first_content for i in comments)


async def test_error_event_mid_stream(simulator, session, read_sse, profile, quirky, body):
    sim = await simulator(quirky(profile(), stream_error_rate=1.0, fault_after_tokens=2))
    async with session.post(sim.base_url("sim") + "/chat/completions", json=body()) as response:
        assert response.status == 200
        lines = await read_sse(response)
    assert len(_content_chunks(lines)) == 2
    assert lines[-1].data["error"]["code"] == "upstream_error"
    assert all(line.text != "data: [DONE]" for line in lines)
    assert sim.stats("sim").stream_faults == 1


async def test_truncated_stream(simulator, session, read_sse, profile, quirky, body):
    sim = await simulator(quirky(profile(), truncate_rate=1.0, fault_after_tokens=3))
    async with session.post(sim.base_url("sim") + "/chat/completions", json=body()) as response:
        received: list[bytes] = []
        with pytest.raises(aiohttp.ClientPayloadError):
            async for raw in response.content:
                received.append(raw)
    text = b"".join(received).decode()
    assert text.count('"content":"') == 4  # the role chunk's empty content plus 3 tokens
    assert "[DONE]" not in text


async def test_truncated_json_response(simulator, session, profile, quirky, body):
    sim = await simulator(quirky(profile(), truncate_rate=1.0))
    async with session.post(
        sim.base_url("sim") + "/chat/completions", json=body(stream=False)
    ) as response:
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_index_lists_providers(simulator, session, profile):
    sim = await simulator(profile(name="one"), profile(name="two"))
    async with session.get(sim.url + "/") as response:
        index = await response.json()
    assert [p["base_url"] for p in index["providers"]] == [sim.base_url("one"), sim.base_url("two")]


async def test_client_disconnect_logged_quietly(simulator, session, profile, body, caplog):
    caplog.set_level(logging.DEBUG)
    sim = await simulator(profile(tokens_per_s=100.0, output_tokens=50))
    response = await session.post(sim.base_url("sim") + "/chat/completions", json=body())
    await response.content.readline()
    response.close()

    deadline = time.monotonic() + 5.0
    while not any("closed the connection" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the server never noticed the disconnect"
        await asyncio.sleep(0.01)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
