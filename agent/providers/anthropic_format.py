"""Reading Anthropic Messages responses, streamed and whole.

A stream is a sequence of typed events: message_start (id, model, input usage),
content_block_start, content_block_delta (text_delta, thinking_delta,
input_json_delta, signature_delta, citations_delta), content_block_stop,
message_delta (stop_reason and the cumulative output_tokens), message_stop, ping and
error. Unknown event types are ignored, because Anthropic may add new ones. There
is no [DONE]: message_stop is the end marker.
"""

from __future__ import annotations

import json
from typing import Any

from llmping.agent.errors import (
    MALFORMED_RESPONSE,
    PROVIDER_ERROR,
    ClassifiedError,
    provider_error_detail,
    trim_detail,
)
from llmping.agent.providers.base import int_field, text_field
from llmping.agent.providers.openai_format import parse_json_event
from llmping.agent.sse import SseEvent
from llmping.agent.stream import ResponseAccumulator

# Content blocks whose start carries text: a tool's name counts as generated text, the
# same as an OpenAI tool_calls name.
_TOOL_BLOCKS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})


def interpret_message_event(event: SseEvent, now_ns: int, acc: ResponseAccumulator) -> None:
    """Apply one Messages API stream event to the accumulator."""
    if event.is_comment:
        acc.keepalive_count += 1
        return
    data = event.data.strip()
    if not data:
        return
    obj = parse_json_event(data)
    if not isinstance(obj, dict):
        detail = f"stream event is not a JSON object: {trim_detail(data, 80)}"
        raise ClassifiedError(MALFORMED_RESPONSE, detail)

    # The data's own "type" is authoritative; the SSE event name is the fallback.
    event_type = obj.get("type")
    if not isinstance(event_type, str):
        event_type = event.event
    if event_type == "content_block_delta" and event.event != "error":
        # Nearly every event of a stream is a delta, so it is tested first.
        _apply_delta(obj.get("delta"), now_ns, acc)
    elif event_type == "error" or event.event == "error":
        detail = provider_error_detail(obj) or data
        acc.error = ClassifiedError(PROVIDER_ERROR, detail)
    elif event_type == "message_start":
        _apply_message(obj.get("message"), acc, final=False)
    elif event_type == "content_block_start":
        _apply_block(obj.get("content_block"), now_ns, acc)
    elif event_type == "message_delta":
        delta = obj.get("delta")
        if isinstance(delta, dict):
            acc.set_finish_reason(delta.get("stop_reason"))
        _apply_usage(obj.get("usage"), acc)
    elif event_type == "message_stop":
        acc.done_seen = True
    elif event_type == "ping":
        acc.keepalive_count += 1


def interpret_message_body(obj: Any, now_ns: int, acc: ResponseAccumulator) -> None:
    """Apply a whole Messages API body (stream=false) to the accumulator."""
    if not isinstance(obj, dict):
        raise ClassifiedError(MALFORMED_RESPONSE, "response body is not a JSON object")
    if obj.get("type") == "error" or "error" in obj:
        detail = provider_error_detail(obj) or "error object with no message"
        acc.error = ClassifiedError(PROVIDER_ERROR, detail)
        return
    _apply_message(obj, acc, final=True)
    acc.set_finish_reason(obj.get("stop_reason"))
    content: list[str] = []
    reasoning: list[str] = []
    tool: list[str] = []
    blocks = obj.get("content")
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict):
            continue
        content.append(text_field(block, "text"))
        reasoning.append(text_field(block, "thinking"))
        if text_field(block, "type") in _TOOL_BLOCKS:
            tool.append(text_field(block, "name") + _json_text(block.get("input")))
    acc.record_text(now_ns, "".join(content), "".join(reasoning), "".join(tool))


def _apply_message(message: Any, acc: ResponseAccumulator, final: bool) -> None:
    if not isinstance(message, dict):
        return
    acc.set_identity(message.get("id"), message.get("model"))
    usage = message.get("usage")
    if final:
        _apply_usage(usage, acc)
    elif isinstance(usage, dict):
        # message_start's output_tokens is a placeholder (often 1); the count comes
        # with message_delta, and a stream cut before it falls back to an estimate.
        acc.set_usage(input_tokens=int_field(usage.get("input_tokens")))


def _apply_block(block: Any, now_ns: int, acc: ResponseAccumulator) -> None:
    if not isinstance(block, dict):
        return
    tool = text_field(block, "name") if text_field(block, "type") in _TOOL_BLOCKS else ""
    acc.record_text(now_ns, text_field(block, "text"), text_field(block, "thinking"), tool)


def _apply_delta(delta: Any, now_ns: int, acc: ResponseAccumulator) -> None:
    if not isinstance(delta, dict):
        return
    delta_type = delta.get("type")
    if delta_type == "text_delta":
        acc.record_text(now_ns, content=text_field(delta, "text"))
    elif delta_type == "thinking_delta":
        acc.record_text(now_ns, reasoning=text_field(delta, "thinking"))
    elif delta_type == "input_json_delta":
        acc.record_text(now_ns, tool=text_field(delta, "partial_json"))


def _apply_usage(usage: Any, acc: ResponseAccumulator) -> None:
    # message_delta's usage is cumulative, so it replaces earlier values.
    if isinstance(usage, dict):
        acc.set_usage(
            output_tokens=int_field(usage.get("output_tokens")),
            input_tokens=int_field(usage.get("input_tokens")),
        )


def _json_text(value: Any) -> str:
    if value is None or value == {}:
        return ""
    return json.dumps(value, ensure_ascii=False)
