"""Anthropic Messages responses, streaming (named SSE events) and non-streaming (JSON).

A stream goes: message_start, content_block_start, ping, then per token a
content_block_delta (thinking_delta inside a thinking block first when the profile has
reasoning tokens, then text_delta inside a text block), content_block_stop,
message_delta with the stop_reason and output token count, and message_stop.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping

from aiohttp import web

from llmping.simulator.profiles import QuirkProfile
from llmping.simulator.response_plan import ResponsePlan
from llmping.simulator.sse import (
    SseStream,
    named_event,
    open_sse,
    send_truncated_body,
    sleep_until_ns,
)

_PING = named_event("ping", {"type": "ping"})
_OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
# Anthropic signs thinking blocks; the simulator's signature is a fixed placeholder.
_SIGNATURE = "c2ltdWxhdGVkLXNpZ25hdHVyZQ=="


def _stop_reason(plan: ResponsePlan) -> str:
    return "max_tokens" if plan.finish_reason == "length" else "end_turn"


async def stream_messages(
    request: web.Request, plan: ResponsePlan, quirks: QuirkProfile, headers: dict[str, str]
) -> web.StreamResponse:
    """Stream one Messages response following the plan's timing."""
    stream = await open_sse(request, headers)
    message_id = "msg_" + secrets.token_hex(12)

    start = {
        "type": "message_start",
        "message": _message_object(message_id, plan, content=[], stop_reason=None, output_tokens=1),
    }
    await stream.send(named_event("message_start", start))
    await stream.send(_PING)
    await stream.send_keepalives(
        plan.arrival_ns, quirks.keepalive_interval_ms, plan.token_due_ns(0), _PING
    )

    completed = await _send_blocks(stream, plan)
    if not completed:
        return stream.response

    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(plan), "stop_sequence": None},
        "usage": {"output_tokens": plan.output_tokens},
    }
    await stream.send(named_event("message_delta", delta))
    await stream.send(named_event("message_stop", {"type": "message_stop"}))
    await stream.finish()
    return stream.response


async def _send_blocks(stream: SseStream, plan: ResponsePlan) -> bool:
    """Send the thinking and text blocks; return False when a planned fault ended the stream."""
    fault_index = len(plan.reasoning) + plan.fault_after_tokens
    token_index = 0
    block_index = 0

    if plan.reasoning:
        await stream.send(_block_start(block_index, {"type": "thinking", "thinking": ""}))
        for token in plan.reasoning:
            delta = {"type": "thinking_delta", "thinking": token}
            await stream.send_at(plan.token_due_ns(token_index), _block_delta(block_index, delta))
            token_index += 1
        signature = {"type": "signature_delta", "signature": _SIGNATURE}
        await stream.send(_block_delta(block_index, signature))
        await stream.send(_block_stop(block_index))
        block_index += 1

    await stream.send(_block_start(block_index, {"type": "text", "text": ""}))
    for token in plan.content:
        if plan.fault != "none" and token_index == fault_index:
            break
        delta = {"type": "text_delta", "text": token}
        await stream.send_at(plan.token_due_ns(token_index), _block_delta(block_index, delta))
        token_index += 1
    if plan.fault == "none":
        await stream.send(_block_stop(block_index))
        return True

    # The fault fires when the next token would have been due.
    await sleep_until_ns(plan.token_due_ns(fault_index))
    if plan.fault == "error_event":
        await stream.send(named_event("error", _OVERLOADED))
        await stream.finish()
    else:
        stream.cut_connection()
    return False


def _block_start(index: int, block: dict[str, object]) -> bytes:
    payload = {"type": "content_block_start", "index": index, "content_block": block}
    return named_event("content_block_start", payload)


def _block_delta(index: int, delta: Mapping[str, object]) -> bytes:
    return named_event(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _block_stop(index: int) -> bytes:
    return named_event("content_block_stop", {"type": "content_block_stop", "index": index})


def _message_object(
    message_id: str,
    plan: ResponsePlan,
    content: list[dict[str, object]],
    stop_reason: str | None,
    output_tokens: int,
) -> dict[str, object]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": plan.prompt_tokens, "output_tokens": output_tokens},
    }


async def complete_messages(
    request: web.Request, plan: ResponsePlan, headers: dict[str, str]
) -> web.StreamResponse:
    """Wait until the last token is due, then return the complete Messages response."""
    await sleep_until_ns(plan.last_token_due_ns())
    if plan.fault == "error_event":
        return web.json_response(_OVERLOADED, headers=headers)

    content: list[dict[str, object]] = []
    if plan.reasoning:
        content.append(
            {"type": "thinking", "thinking": "".join(plan.reasoning), "signature": _SIGNATURE}
        )
    content.append({"type": "text", "text": "".join(plan.content)})
    message_id = "msg_" + secrets.token_hex(12)
    message = _message_object(message_id, plan, content, _stop_reason(plan), plan.output_tokens)
    body = json.dumps(message, ensure_ascii=False).encode("utf-8")
    if plan.fault == "truncate":
        return await send_truncated_body(request, body, headers)
    return web.Response(body=body, content_type="application/json", headers=headers)
