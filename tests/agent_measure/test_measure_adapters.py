"""What each adapter puts on the wire, checked on a real local aiohttp server."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from llmping.agent.providers import get_adapter
from llmping.agent.request import RequestExecutor
from llmping.errors import PlanError
from llmping.v1 import llmping_pb2 as pb

OPENAI_STREAM = (
    b'data: {"id":"c","model":"m","choices":[{"delta":{"content":"ok"},"finish_reason":"stop"}]}'
    b"\n\ndata: [DONE]\n\n"
)
ANTHROPIC_STREAM = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":'
    b'{"type":"text_delta","text":"ok"}}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":1}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


@dataclass
class Recorder:
    """A local server that records requests and answers with a fixed stream."""

    base_url: str = ""
    requests: list[web.Request] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    answer: bytes = OPENAI_STREAM


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    state = Recorder()

    async def handle(request: web.Request) -> web.StreamResponse:
        state.requests.append(request)
        state.bodies.append(json.loads(await request.read()))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(state.answer)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.base_url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


async def send_one(make_executor: Any, provider: pb.Provider, request: Any) -> pb.Record:
    executor: RequestExecutor = await make_executor(provider, request)
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)
    return record


async def test_adapter_openai_wire(recorder: Recorder, kit: Any, make_executor: Any) -> None:
    provider = kit.provider_for("openai", recorder.base_url + "/v1/")
    provider.headers["X-Trace"] = "abc"
    provider.extra_body.update({"top_k": 50, "stream_options": {"extra": True}, "seed": 1.5})
    request = kit.request_spec(temperature=0.2)
    record = await send_one(make_executor, provider, request)

    assert record.error_class == ""
    sent = recorder.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {kit.API_KEY}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Accept"] == "text/event-stream"
    assert sent.headers["X-Trace"] == "abc"
    assert sent.headers["User-Agent"].startswith("llmping/")
    assert recorder.bodies[0] == {
        "model": "test-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "max_completion_tokens": 32,
        "temperature": 0.2,
        "stream_options": {"include_usage": True, "extra": True},
        "top_k": 50,
        "seed": 1.5,
    }


async def test_adapter_openai_no_usage_no_stream(
    recorder: Recorder, kit: Any, make_executor: Any
) -> None:
    request = kit.request_spec(stream=False, include_usage=True, max_tokens=0)
    await send_one(make_executor, kit.provider_for("openai", recorder.base_url), request)
    body = recorder.bodies[0]
    assert body["stream"] is False
    assert "stream_options" not in body
    assert "max_completion_tokens" not in body
    assert recorder.requests[0].headers["Accept"] == "application/json"


async def test_adapter_azure_wire(recorder: Recorder, kit: Any, make_executor: Any) -> None:
    provider = kit.provider_for("azure", recorder.base_url)
    record = await send_one(make_executor, provider, kit.request_spec())

    assert record.error_class == ""
    sent = recorder.requests[0]
    assert sent.path == "/openai/deployments/test-deployment/chat/completions"
    assert sent.query["api-version"] == "2024-10-21"
    assert sent.headers["api-key"] == kit.API_KEY
    assert "Authorization" not in sent.headers
    body = recorder.bodies[0]
    assert "model" not in body
    assert body["max_tokens"] == 32
    assert body["stream_options"] == {"include_usage": True}


async def test_adapter_azure_default_version(
    recorder: Recorder, kit: Any, make_executor: Any
) -> None:
    provider = kit.provider_for("azure", recorder.base_url, api_version="", deployment="")
    await send_one(make_executor, provider, kit.request_spec())
    sent = recorder.requests[0]
    assert sent.path == "/openai/deployments/test-model/chat/completions"
    assert sent.query["api-version"] == "2024-10-21"


async def test_adapter_anthropic_wire(recorder: Recorder, kit: Any, make_executor: Any) -> None:
    recorder.answer = ANTHROPIC_STREAM
    provider = kit.provider_for("anthropic", recorder.base_url)
    request = kit.request_spec(max_tokens=0, include_usage=True)
    request.messages.insert(0, pb.ChatMessage(role="system", content="be brief"))
    record = await send_one(make_executor, provider, request)

    assert record.error_class == ""
    assert record.finish_reason == "end_turn"
    sent = recorder.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == kit.API_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in sent.headers
    assert recorder.bodies[0] == {
        "model": "test-model",
        "messages": [{"role": "user", "content": "hi"}],
        "system": "be brief",
        "max_tokens": 1024,
        "stream": True,
    }


async def test_adapter_anthropic_base_with_v1(
    recorder: Recorder, kit: Any, make_executor: Any
) -> None:
    recorder.answer = ANTHROPIC_STREAM
    provider = kit.provider_for("anthropic", recorder.base_url + "/v1")
    await send_one(make_executor, provider, kit.request_spec())
    assert recorder.requests[0].path == "/v1/messages"


@pytest.mark.parametrize(
    ("preset", "headers"),
    [
        ("openrouter", {"X-Title": "llmping"}),
        ("siliconflow", {}),
        ("deepseek", {}),
    ],
)
async def test_adapter_presets(
    preset: str, headers: dict[str, str], recorder: Recorder, kit: Any, make_executor: Any
) -> None:
    provider = kit.provider_for("", recorder.base_url + "/api/v1", preset=preset)
    provider.headers["HTTP-Referer"] = "https://example.invalid/app"
    record = await send_one(make_executor, provider, kit.request_spec())

    assert record.error_class == ""
    sent = recorder.requests[0]
    assert sent.path == "/api/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {kit.API_KEY}"
    assert sent.headers["HTTP-Referer"] == "https://example.invalid/app"
    for name, value in headers.items():
        assert sent.headers[name] == value
    assert recorder.bodies[0]["max_tokens"] == 32


async def test_adapter_no_key_no_auth(recorder: Recorder, kit: Any, make_executor: Any) -> None:
    executor = await make_executor(
        kit.provider_for("openai_compatible", recorder.base_url), api_key=None
    )
    await executor.execute(pb.Record(), time.perf_counter_ns(), False)
    assert "Authorization" not in recorder.requests[0].headers


async def test_adapter_key_never_in_record(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    # A hostile server echoes the key in its error body and a rate-limit header.
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {kit.API_KEY}"}}).encode()
    server = await scripted_server(
        [
            kit.ScriptedResponse(
                status=429,
                headers=[
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("x-ratelimit-limit-requests", kit.API_KEY),
                ],
                chunks=[body],
                delays_ms=[0],
            )
        ]
    )
    executor = await make_executor(kit.provider_for("openai", server.url))
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)

    assert record.error_class == "http_429"
    assert "Incorrect API key provided: ***" in record.error_detail
    assert kit.API_KEY.encode() not in record.SerializeToString()
    assert kit.API_KEY not in str(record)


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"kind": "gemini"}, "providers[p].kind"),
        ({"kind": "", "preset": "nope"}, "providers[p].preset"),
        ({"kind": "openai", "preset": "openrouter"}, "providers[p].kind"),
        ({"kind": "openai", "base_url": ""}, "providers[p].base_url"),
        ({"kind": "openai", "base_url": "ftp://x"}, "providers[p].base_url"),
        ({"kind": "azure", "model": "", "deployment": ""}, "providers[p].deployment"),
    ],
)
def test_adapter_invalid_provider(fields: dict[str, str], path: str) -> None:
    provider = pb.Provider(name="p", base_url="http://127.0.0.1:9/v1", model="m")
    for name, value in fields.items():
        setattr(provider, name, value)
    with pytest.raises(PlanError) as caught:
        get_adapter(provider)
    assert caught.value.path == path


@pytest.mark.parametrize(
    "proxy_url",
    [
        "ftp://127.0.0.1:1",
        "socks5h://127.0.0.1:1",
        "socks5://127.0.0.1",
        "http://:80",
        "http://[::1",
    ],
)
def test_adapter_invalid_proxy(proxy_url: str, kit: Any) -> None:
    provider = kit.provider_for("openai", "http://127.0.0.1:9", proxy_url=proxy_url)
    with pytest.raises(PlanError) as caught:
        RequestExecutor(provider, kit.request_spec(), pb.Timeouts(), None)
    assert caught.value.path == "providers[test].proxy_url"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("openai", "OpenAIAdapter"),
        ("azure", "AzureAdapter"),
        ("anthropic", "AnthropicAdapter"),
        ("openai_compatible", "CompatibleAdapter"),
    ],
)
def test_adapter_lookup(kind: str, expected: str, kit: Any) -> None:
    adapter = get_adapter(kit.provider_for(kind, "http://127.0.0.1:9"))
    assert type(adapter).__name__ == expected
