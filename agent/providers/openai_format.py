"""Reading OpenAI chat-completions responses, streamed and whole.

The same format comes from OpenAI, Azure OpenAI and every OpenAI-compatible server;
quirks seen in the field and handled here:

* Azure's first event carries only prompt_filter_results with "choices": [], and the
  include_usage event has empty choices too: an empty choices list is skipped, but its
  usage is read.
* The first event is often role-only with content "" (or null): it is not text.
* Reasoning models send reasoning_content (DeepSeek, SiliconFlow) or reasoning
  (OpenRouter, vLLM) before the visible content.
* An error may arrive inside a 200 stream as {"error": {...}}, as an "event: error", or
  as a vLLM {"object": "error"} object: all are provider_error.
* [DONE] may be missing (llama.cpp, Anthropic-style servers), and "data:[DONE]" may
  come without the space.
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
from llmping.agent.sse import SseEvent
from llmping.agent.stream import ResponseAccumulator

DONE_MARKER = "[DONE]"


def parse_json_event(data: str) -> Any:
    """Decode the JSON data of one event, raising malformed_response when invalid."""
    try:
        return json.loads(data)
    except ValueError as exc:
        detail = f"invalid JSON in stream event: {trim_detail(data, 80)}"
        raise ClassifiedError(MALFORMED_RESPONSE, detail) from exc


def interpret_chunk_event(event: SseEvent, now_ns: int, acc: ResponseAccumulator) -> None:
    """Apply one chat.completion.chunk event to the accumulator."""
    if event.is_comment:
        acc.keepalive_count += 1
        return
    data = event.data.strip()
    if not data:
        return
    if data == DONE_MARKER:
        acc.done_seen = True
        return

    chunk = parse_json_event(data)
    detail = provider_error_detail(chunk)
    if detail is not None or event.event == "error":
        acc.error = ClassifiedError(PROVIDER_ERROR, detail or data)
        return
    if not isinstance(chunk, dict):
        detail = f"stream event is not a JSON object: {trim_detail(data, 80)}"
        raise ClassifiedError(MALFORMED_RESPONSE, detail)
    apply_completion(chunk, now_ns, acc, choice_key="delta")


def interpret_completion_body(obj: Any, now_ns: int, acc: ResponseAccumulator) -> None:
    """Apply a whole chat.completion body (stream=false) to the accumulator."""
    detail = provider_error_detail(obj)
    if detail is not None:
        acc.error = ClassifiedError(PROVIDER_ERROR, detail)
        return
    if not isinstance(obj, dict):
        raise ClassifiedError(MALFORMED_RESPONSE, "response body is not a JSON object")
    apply_completion(obj, now_ns, acc, choice_key="message")


def apply_completion(
    obj: dict[str, Any], now_ns: int, acc: ResponseAccumulator, choice_key: str
) -> None:
    """Apply the identity, usage, choices and finish reason of one chunk or body."""
    acc.set_identity(obj.get("id") or None, obj.get("model") or None)
    apply_usage(obj.get("usage"), acc)

    choices = obj.get("choices")
    if not isinstance(choices, list):
        return
    content: list[str] = []
    reasoning: list[str] = []
    tool: list[str] = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get(choice_key)
        if not isinstance(message, dict):
            # Streams that mix up the two shapes exist, so read whichever is present.
            message = choice.get("message") or choice.get("delta")
        if isinstance(message, dict):
            _collect_text(message, content, reasoning, tool)
        # Legacy completions put the text straight in the choice.
        content.append(text_field(choice, "text"))
        # Moonshot and some relays put usage inside the choice.
        apply_usage(choice.get("usage"), acc)
        acc.set_finish_reason(choice.get("finish_reason"))
    acc.record_text(now_ns, "".join(content), "".join(reasoning), "".join(tool))


def _collect_text(
    message: dict[str, Any], content: list[str], reasoning: list[str], tool: list[str]
) -> None:
    content.append(text_field(message, "content"))
    content.append(text_field(message, "refusal"))
    # Some servers send the same text under both names; count it once.
    reasoning.append(text_field(message, "reasoning_content") or text_field(message, "reasoning"))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            tool.append(text_field(function, "name") + text_field(function, "arguments"))
    function_call = message.get("function_call")
    tool.append(text_field(function_call, "name") + text_field(function_call, "arguments"))


def apply_usage(usage: Any, acc: ResponseAccumulator) -> None:
    """Apply an OpenAI usage object (null or missing is ignored)."""
    if not isinstance(usage, dict):
        return
    details = usage.get("completion_tokens_details")
    reasoning = int_field(details.get("reasoning_tokens")) if isinstance(details, dict) else None
    output = int_field(usage.get("completion_tokens"))
    if output is None:
        output = int_field(usage.get("output_tokens"))
    prompt = int_field(usage.get("prompt_tokens"))
    if prompt is None:
        prompt = int_field(usage.get("input_tokens"))
    acc.set_usage(output_tokens=output, input_tokens=prompt, reasoning_tokens=reasoning)
