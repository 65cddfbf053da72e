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

Almost every event of a stream is a chunk with one choice whose delta carries only
content (and a role, or fields set to null). Such an event takes a fast path that
reads only those fields: interpret_chunk_payloads() decodes it with msgspec, and
_apply_plain_choice() reads it from a dict. Any other shape takes the full path, and
all give the same result for a plain chunk.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import orjson

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
_DONE_BYTES = DONE_MARKER.encode()

# Message fields besides these carry text (refusal, reasoning, tool calls) unless null.
_PLAIN_MESSAGE_FIELDS = frozenset({"content", "role"})


def parse_json_event(data: str) -> Any:
    """Decode the JSON data of one event, raising malformed_response when invalid.

    orjson decodes a typical chunk about three times as fast as the json module. It
    rejects some input that the json module accepts: NaN, Infinity and -Infinity,
    numbers too large for a double (1e400) and escaped lone surrogates ("\\ud800").
    Python's json.dumps writes NaN and Infinity unless called with allow_nan=False, so
    a Python server can send a logprob of -Infinity in an event whose text is fine.
    The json module therefore decodes whatever orjson rejects, and the result is the
    same as before orjson was used.

    NOTE: orjson returns integers outside the 64-bit range as floats where the json
    module returns exact ints. Token counts that large are rejected either way, but
    an error object holding such a number shows it in float notation in error_detail.
    """
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
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
    if event.event != "error" and _is_completion_chunk(chunk):
        apply_completion(chunk, now_ns, acc, choice_key="delta")
        return
    detail = provider_error_detail(chunk)
    if detail is not None or event.event == "error":
        acc.error = ClassifiedError(PROVIDER_ERROR, detail or data)
        return
    if not isinstance(chunk, dict):
        detail = f"stream event is not a JSON object: {trim_detail(data, 80)}"
        raise ClassifiedError(MALFORMED_RESPONSE, detail)
    apply_completion(chunk, now_ns, acc, choice_key="delta")


class _PlainDelta(msgspec.Struct):
    """The delta fields that apply_completion() reads; others are skipped unread."""

    content: Any = None
    refusal: Any = None
    reasoning_content: Any = None
    reasoning: Any = None
    tool_calls: Any = None
    function_call: Any = None


class _PlainChoice(msgspec.Struct):
    delta: _PlainDelta | msgspec.UnsetType = msgspec.UNSET
    finish_reason: Any = None
    # Present (even as null), either sends the chunk to the full path.
    text: Any = msgspec.UNSET
    usage: Any = msgspec.UNSET


class _PlainChunk(msgspec.Struct):
    choices: list[_PlainChoice] | msgspec.UnsetType = msgspec.UNSET
    id: Any = None
    model: Any = None
    usage: Any = None
    error: Any = msgspec.UNSET
    object: Any = None
    type: Any = None


_decode_plain_chunk = msgspec.json.Decoder(_PlainChunk).decode


def interpret_chunk_payloads(payloads: list[bytes], now_ns: int, acc: ResponseAccumulator) -> None:
    """Apply plain "message" events, given as raw data values, that arrived at now_ns.

    The result is the same as interpret_chunk_event() on each decoded event in turn,
    stopping at the first error. The usual chunk (one choice whose delta carries
    only content, no error) is decoded by msgspec into the structs above, which
    skip every field the result does not depend on. That takes about half the time
    of orjson building dicts of every field, in bench/parse_micro.py. The content of
    consecutive such chunks is recorded in one call, because they share one arrival
    time.

    Anything else goes through interpret_chunk_event(), after the content before it
    has been recorded, so the order is kept: [DONE], invalid UTF-8 or JSON, a value
    of an unexpected type, errors, reasoning, tool calls, several choices. Both paths
    take the last of duplicate keys. Where the two decoders differ (msgspec keeps
    integers beyond 64 bits exact), the values concerned are ones this reader
    ignores either way.
    """
    texts: list[str] = []
    decode = _decode_plain_chunk
    unset = msgspec.UNSET
    needs_identity = not (acc.response_id and acc.response_model)
    for payload in payloads:
        if payload == _DONE_BYTES:
            acc.done_seen = True
            continue
        try:
            chunk: _PlainChunk | None = decode(payload)
        except msgspec.MsgspecError:
            chunk = None
        if chunk is not None:
            choices = chunk.choices
            if (
                type(choices) is list
                and len(choices) == 1
                and chunk.error is unset
                and chunk.object != "error"
                and chunk.type != "error"
            ):
                choice = choices[0]
                delta = choice.delta
                if (
                    type(delta) is _PlainDelta
                    and choice.text is unset
                    and choice.usage is unset
                    and delta.refusal is None
                    and delta.reasoning_content is None
                    and delta.reasoning is None
                    and delta.tool_calls is None
                    and delta.function_call is None
                ):
                    if needs_identity:
                        acc.set_identity(chunk.id or None, chunk.model or None)
                        needs_identity = not (acc.response_id and acc.response_model)
                    if chunk.usage is not None:
                        apply_usage(chunk.usage, acc)
                    if choice.finish_reason is not None:
                        acc.set_finish_reason(choice.finish_reason)
                    content = delta.content
                    if content and type(content) is str:
                        texts.append(content)
                    continue

        if texts:
            acc.record_content_events(now_ns, texts)
            texts = []
        event = SseEvent(data=payload.decode("utf-8", "replace"))
        interpret_chunk_event(event, now_ns, acc)
        if acc.error is not None:
            return
        needs_identity = not (acc.response_id and acc.response_model)
    if texts:
        acc.record_content_events(now_ns, texts)


def _only_null_besides_plain(message: dict[str, Any]) -> bool:
    # Fields set to null carry no text, and OpenAI sends "refusal": null in its first
    # chunk.
    return all(value is None or name in _PLAIN_MESSAGE_FIELDS for name, value in message.items())


def _is_completion_chunk(chunk: Any) -> bool:
    """Return True for a dict that provider_error_detail would not read as an error.

    Such a dict has "choices", no "error" key, and no "object" or "type" set to
    "error". Checking that costs less than calling provider_error_detail on every chunk.
    """
    return (
        isinstance(chunk, dict)
        and "choices" in chunk
        and "error" not in chunk
        and chunk.get("object") != "error"
        and chunk.get("type") != "error"
    )


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
    if not (acc.response_id and acc.response_model):
        acc.set_identity(obj.get("id") or None, obj.get("model") or None)
    usage = obj.get("usage")
    if usage is not None:
        apply_usage(usage, acc)

    choices = obj.get("choices")
    if not isinstance(choices, list):
        return
    if len(choices) == 1 and _apply_plain_choice(choices[0], now_ns, acc, choice_key):
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


def _apply_plain_choice(
    choice: Any, now_ns: int, acc: ResponseAccumulator, choice_key: str
) -> bool:
    """Apply a choice whose message has no text besides content, or return False.

    The full path in apply_completion gives the same result for such a choice,
    because it reads nothing else from it: no choice-level "text" or "usage", and no
    refusal, reasoning or tool call in the message.
    """
    if not isinstance(choice, dict) or "text" in choice or "usage" in choice:
        return False
    message = choice.get(choice_key)
    if not isinstance(message, dict):
        return False
    if not (_PLAIN_MESSAGE_FIELDS.issuperset(message) or _only_null_besides_plain(message)):
        return False
    reason = choice.get("finish_reason")
    if reason is not None:
        acc.set_finish_reason(reason)
    content = message.get("content")
    if isinstance(content, str) and content:
        acc.record_text(now_ns, content)
    return True


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
