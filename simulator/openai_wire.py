"""OpenAI chat-completions responses, streaming (SSE) and non-streaming (JSON).

A stream sends, in order:

1. with the azure_empty_first_chunk quirk, an event with empty choices;
2. a role-only chunk;
3. with the keepalive quirk, ": keep-alive" comments while "queued";
4. one chunk per token, reasoning_content first, then content;
5. a chunk with finish_reason;
6. when the request set stream_options.include_usage, a usage-only chunk with empty
   choices;
7. ``data: [DONE]``.
"""

from __future__ import annotations

import json
import secrets
import time

from aiohttp import web

from llmping.simulator.profiles import QuirkProfile
from llmping.simulator.response_plan import ResponsePlan
from llmping.simulator.sse import (
    SseStream,
    comment_line,
    data_event,
    open_sse,
    send_truncated_body,
    sleep_until_ns,
)

_DONE = b"data: [DONE]\n\n"
_FINGERPRINT = "fp_llmping_sim"


class ChunkFactory:
    """Builds the chunk objects of one streamed completion."""

    def __init__(self, plan: ResponsePlan, include_usage: bool) -> None:
        self._plan = plan
        self._include_usage = include_usage
        self._id = "chatcmpl-" + secrets.token_hex(12)
        self._created = int(time.time())

    def chunk(
        self, delta: dict[str, object], finish_reason: str | None = None
    ) -> dict[str, object]:
        chunk: dict[str, object] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._plan.model,
            "system_fingerprint": _FINGERPRINT,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        # With include_usage, OpenAI adds "usage": null to every chunk but the last.
        if self._include_usage:
            chunk["usage"] = None
        return chunk

    def usage_chunk(self) -> dict[str, object]:
        chunk = self.chunk({})
        chunk["choices"] = []
        chunk["usage"] = usage_object(self._plan)
        return chunk


def usage_object(plan: ResponsePlan) -> dict[str, object]:
    """Return the usage object of a finished completion."""
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.output_tokens,
        "total_tokens": plan.prompt_tokens + plan.output_tokens,
        "completion_tokens_details": {"reasoning_tokens": len(plan.reasoning)},
    }


def azure_first_event() -> dict[str, object]:
    """Return Azure OpenAI's first event: no choices, only the prompt filter results."""
    filters = {
        name: {"filtered": False, "severity": "safe"}
        for name in ("hate", "self_harm", "sexual", "violence")
    }
    return {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filters}],
    }


def stream_error_event() -> dict[str, object]:
    """Return the error object some relays send inside a 200 stream when upstream fails."""
    return {
        "error": {
            "message": "simulated upstream error in the middle of the stream",
            "type": "server_error",
            "param": None,
            "code": "upstream_error",
        }
    }


async def stream_chat(
    request: web.Request,
    plan: ResponsePlan,
    quirks: QuirkProfile,
    include_usage: bool,
    headers: dict[str, str],
) -> web.StreamResponse:
    """Stream one chat completion following the plan's timing."""
    stream = await open_sse(request, headers)
    chunks = ChunkFactory(plan, include_usage)

    # The role-only chunk goes out with the headers, well before the first token, so a
    # client that wrongly counts it as the first token measures a TTFT near zero.
    if quirks.azure_empty_first_chunk:
        await stream.send(data_event(azure_first_event()))
    await stream.send(data_event(chunks.chunk({"role": "assistant", "content": ""})))
    await stream.send_keepalives(
        plan.arrival_ns,
        quirks.keepalive_interval_ms,
        plan.token_due_ns(0),
        comment_line("keep-alive"),
    )

    completed = await _send_tokens(stream, plan, chunks)
    if not completed:
        return stream.response

    await stream.send(data_event(chunks.chunk({}, plan.finish_reason)))
    if include_usage:
        await stream.send(data_event(chunks.usage_chunk()))
    await stream.send(_DONE)
    await stream.finish()
    return stream.response


async def _send_tokens(stream: SseStream, plan: ResponsePlan, chunks: ChunkFactory) -> bool:
    """Send every token at its due time; return False when a planned fault ended the stream."""
    deltas: list[dict[str, object]] = [{"reasoning_content": token} for token in plan.reasoning]
    deltas += [{"content": token} for token in plan.content]
    fault_index = len(plan.reasoning) + plan.fault_after_tokens
    sent_count = len(deltas) if plan.fault == "none" else fault_index

    for index in range(sent_count):
        await stream.send_at(plan.token_due_ns(index), data_event(chunks.chunk(deltas[index])))
    if plan.fault == "none":
        return True

    # The fault fires when the next token would have been due.
    await sleep_until_ns(plan.token_due_ns(fault_index))
    if plan.fault == "error_event":
        await stream.send(data_event(stream_error_event()))
        await stream.finish()
    else:
        stream.cut_connection()
    return False


async def complete_chat(
    request: web.Request, plan: ResponsePlan, headers: dict[str, str]
) -> web.StreamResponse:
    """Wait until the last token is due, then return the complete chat completion."""
    await sleep_until_ns(plan.last_token_due_ns())
    if plan.fault == "error_event":
        # Some relays return 200 with an error object as the body.
        return web.json_response(stream_error_event(), headers=headers)

    body = json.dumps(completion_object(plan), ensure_ascii=False).encode("utf-8")
    if plan.fault == "truncate":
        return await send_truncated_body(request, body, headers)
    return web.Response(body=body, content_type="application/json", headers=headers)


def completion_object(plan: ResponsePlan) -> dict[str, object]:
    """Return the chat.completion object of a finished completion."""
    message: dict[str, object] = {
        "role": "assistant",
        "content": "".join(plan.content),
        "refusal": None,
    }
    if plan.reasoning:
        message["reasoning_content"] = "".join(plan.reasoning)
    return {
        "id": "chatcmpl-" + secrets.token_hex(12),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": plan.model,
        "system_fingerprint": _FINGERPRINT,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}
        ],
        "usage": usage_object(plan),
    }
