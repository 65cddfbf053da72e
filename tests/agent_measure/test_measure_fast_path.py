"""The fast path for plain events gives exactly what the line-by-line path gives.

SseParser.feed_parts() hands plain "message" events over as raw payloads, and
interpret_chunk_payloads() reads the usual chunk from orjson's result of those bytes.
These tests feed the same streams, cut at random read boundaries, through both paths
and compare every event and every field of the accumulator.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmping.agent.errors import ClassifiedError
from llmping.agent.providers import get_adapter
from llmping.agent.providers.base import ProviderAdapter
from llmping.agent.sse import DEFAULT_MAX_LINE_BYTES, SseEvent, SseParser
from llmping.agent.stream import ResponseAccumulator
from llmping.v1 import llmping_pb2 as pb

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "data" / "provider-responses.json").read_text("utf-8")
)
SSE_CASES = [
    case
    for case in CASES
    if "event-stream" in case["headers"].get("Content-Type", "")
    and "Content-Encoding" not in case["headers"]
]
_FILL = re.compile(r"<<FILL:(\d+):(.*?)>>", re.DOTALL)

OPENAI = get_adapter(pb.Provider(name="o", kind="openai", base_url="http://127.0.0.1:1/v1"))
ANTHROPIC = get_adapter(pb.Provider(name="a", kind="anthropic", base_url="http://127.0.0.1:1/v1"))


def case_body(case: dict[str, Any]) -> bytes:
    body = "".join(case["chunks"])
    body = _FILL.sub(lambda match: match.group(2) * int(match.group(1)), body)
    return body.encode(case.get("chunk_encoding", "utf-8"))


def _plain_chunk(content: Any, **delta_extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [
            {"index": 0, "delta": {"content": content, **delta_extra}, "finish_reason": None}
        ],
    }


_JSON_KEYS = st.sampled_from(
    [
        "choices", "delta", "content", "error", "usage", "object", "type", "text",
        "refusal", "finish_reason", "id", "model", "message",
    ]
)  # fmt: skip
_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(_JSON_KEYS, children, max_size=4),
    ),
    max_leaves=12,
)
_TEXT = st.one_of(st.text(max_size=6), st.sampled_from(["你好", "世界", "é", "\u2028", "", " "]))


_PLAIN = '{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"hi"}}]}'
# Shapes where a decoder could read a chunk differently from a dict-based reading.
_RAW_SHAPES = {
    "duplicate_keys": (
        b'{"choices":[{"delta":{"content":"a"}}],"choices":[{"delta":{"content":"b",'
        b'"content":"c"}}],"id":"x","id":"y"}'
    ),
    "unknown_delta_field": b'{"choices":[{"delta":{"content":"a","annotations":[1]}}]}',
    "delta_null": b'{"choices":[{"delta":null,"message":{"content":"m"}}]}',
    "choices_null": b'{"id":"c","choices":null,"usage":{"completion_tokens":3}}',
    "message_and_delta": (b'{"choices":[{"delta":{"content":"d"},"message":{"content":"m"}}]}'),
    "big_int": (
        b'{"choices":[{"delta":{"content":"b"}}],"usage":{"completion_tokens":'
        b"123456789012345678901234567890}}"
    ),
    "huge_float": b'{"choices":[{"delta":{"content":"f"}}],"usage":{"completion_tokens":1e400}}',
    "empty_refusal": b'{"choices":[{"delta":{"content":"r","refusal":""}}]}',
    "empty_tool_calls": b'{"choices":[{"delta":{"content":"t","tool_calls":[]}}]}',
    "finish_number": b'{"choices":[{"delta":{"content":"n"},"finish_reason":7}]}',
    "id_number": _PLAIN.replace('"c1"', "17").encode(),
    "content_list": b'{"choices":[{"delta":{"content":["x"]}}]}',
    "choice_string": b'{"choices":["x"]}',
    "error_null": _PLAIN.replace('"id"', '"error":null,"id"').encode(),
    "error_with_choices": _PLAIN.replace('"id"', '"error":{"message":"boom"},"id"').encode(),
    "object_error_with_choices": _PLAIN.replace('"id"', '"object":"error","id"').encode(),
    "type_error_with_choices": _PLAIN.replace('"id"', '"type":"error","id"').encode(),
    "refusal_text": b'{"choices":[{"delta":{"content":null,"refusal":"I cannot help"}}]}',
    "reasoning_text": b'{"choices":[{"delta":{"content":"","reasoning":"thinking"}}]}',
    "tool_call": (
        b'{"choices":[{"delta":{"content":null,"tool_calls":[{"index":0,'
        b'"function":{"name":"f","arguments":"{}"}}]}}]}'
    ),
    "function_call": b'{"choices":[{"delta":{"function_call":{"name":"f","arguments":"{}"}}}]}',
    "choice_text": b'{"choices":[{"delta":{"content":"a"},"text":"legacy"}]}',
    "choice_usage": b'{"choices":[{"delta":{"content":"a"},"usage":{"completion_tokens":4}}]}',
    "choice_text_null": b'{"choices":[{"delta":{"content":"a"},"text":null}]}',
    "two_choices": b'{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"b"}}]}',
    "usage_only": b'{"id":"u","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":5}}',
    "usage_and_text": b'{"choices":[{"delta":{"content":"z"}}],"usage":{"completion_tokens":1}}',
    "plain": _PLAIN.encode(),
}


@st.composite
def chunk_payload(draw: st.DrawFn) -> bytes:
    """Return the data of one event: mostly plain chunks, and every other shape too."""
    kind = draw(
        st.sampled_from(
            [
                "plain", "plain", "plain", "plain", "role", "refusal_null", "finish",
                "usage", "reasoning", "tool", "error", "object_error", "type_error",
                "two_choices", "choice_text", "choice_usage", "duplicate_keys",
                "unknown_delta_field", "delta_null", "choices_null", "message_and_delta",
                "big_int", "huge_float", "empty_refusal", "empty_tool_calls",
                "finish_number", "id_number", "content_list", "choice_string",
                "error_null", "error_with_choices", "object_error_with_choices",
                "type_error_with_choices", "refusal_text", "reasoning_text",
                "tool_call", "function_call", "choice_text_null", "done", "done_spaced",
                "invalid_json", "invalid_utf8", "nan", "surrogate", "empty", "not_object",
                "random",
            ]
        )
    )  # fmt: skip
    if kind == "plain":
        return json.dumps(_plain_chunk(draw(_TEXT)), ensure_ascii=draw(st.booleans())).encode()
    if kind == "role":
        return json.dumps(_plain_chunk("", role="assistant")).encode()
    if kind == "refusal_null":
        return json.dumps(_plain_chunk(draw(_TEXT), refusal=None, role="assistant")).encode()
    if kind == "finish":
        chunk = _plain_chunk(None)
        chunk["choices"][0]["finish_reason"] = draw(
            st.sampled_from(["stop", "length", "content_filter", "", None])
        )
        return json.dumps(chunk).encode()
    if kind == "usage":
        usage = {"prompt_tokens": 3, "completion_tokens": draw(st.integers(0, 99))}
        empty_choices = draw(st.booleans())
        chunk = {"id": "c", "choices": [] if empty_choices else _plain_chunk("x")["choices"]}
        return json.dumps({**chunk, "usage": usage}).encode()
    if kind == "reasoning":
        return json.dumps(_plain_chunk(None, reasoning_content=draw(_TEXT))).encode()
    if kind == "tool":
        call = {"index": 0, "function": {"name": "f", "arguments": draw(_TEXT)}}
        return json.dumps(_plain_chunk(None, tool_calls=[call])).encode()

    if kind == "error":
        return json.dumps({"error": {"message": draw(_TEXT), "type": "server_error"}}).encode()
    if kind == "object_error":
        return json.dumps({"object": "error", "message": "bad", "choices": []}).encode()
    if kind == "type_error":
        return json.dumps({**_plain_chunk("x"), "type": "error"}).encode()
    if kind == "two_choices":
        chunk = _plain_chunk("a")
        chunk["choices"].append({"index": 1, "delta": {"content": "b"}})
        return json.dumps(chunk).encode()
    if kind == "choice_text":
        chunk = _plain_chunk("a")
        chunk["choices"][0]["text"] = "legacy"
        return json.dumps(chunk).encode()
    if kind == "choice_usage":
        # Moonshot and some relays put usage inside the choice.
        chunk = _plain_chunk("u")
        chunk["choices"][0]["usage"] = {"completion_tokens": draw(st.integers(0, 9))}
        return json.dumps(chunk).encode()

    if kind in _RAW_SHAPES:
        return _RAW_SHAPES[kind]
    if kind == "done":
        return b"[DONE]"
    if kind == "done_spaced":
        return b" [DONE] "
    if kind == "invalid_json":
        return b'{"choices": [{"delta": {"content": "cut'
    if kind == "invalid_utf8":
        return json.dumps(_plain_chunk("ab")).encode().replace(b"ab", b"a\xff")
    if kind == "nan":
        return json.dumps(_plain_chunk("n")).encode().replace(b'"index": 0', b'"index": NaN')
    if kind == "surrogate":
        return json.dumps(_plain_chunk("s")).encode().replace(b'"s"', b'"\\ud800"')

    if kind == "empty":
        return b""
    if kind == "not_object":
        return b'["x"]'
    return json.dumps(draw(_JSON_VALUES)).encode()


@st.composite
def event_stream(draw: st.DrawFn) -> bytes:
    """Return an event stream of mostly plain events, with the framing variations seen."""
    payloads = draw(st.lists(chunk_payload(), max_size=10))
    newline = draw(st.sampled_from([b"\n", b"\n", b"\r\n", b"\r"]))
    parts: list[bytes] = []
    if draw(st.integers(0, 9)) == 0:
        parts.append(b"\xef\xbb\xbf")
    for payload in payloads:
        extra = draw(st.sampled_from(["", "", "", "", "comment", "event", "id", "blank"]))
        if extra == "comment":
            parts.append(b": keep-alive" + newline)
        elif extra == "event":
            parts.append(b"event: " + draw(st.sampled_from([b"error", b"message", b"ping"])))
            parts.append(newline)
        elif extra == "id":
            parts.append(b"id: 7" + newline)
        elif extra == "blank":
            parts.append(newline)
        prefix = b"data:" if draw(st.integers(0, 5)) == 0 else b"data: "
        parts.append(prefix + payload + newline + newline)
    if draw(st.booleans()):
        # A stream that ends without its last blank line.
        parts.append(b"data: [DONE]")
    return b"".join(parts)


def _pieces(body: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cut % (len(body) + 1) for cut in cuts), len(body)]
    return [body[start:end] for start, end in itertools.pairwise(bounds)]


def _comparable(event: SseEvent) -> tuple[str, str, bool]:
    # Payload events carry no id, which no adapter reads.
    return (event.event, event.data, event.is_comment)


def events_by_feed(pieces: list[bytes], max_line_bytes: int = 4096) -> Any:
    parser = SseParser(max_line_bytes)
    events: list[SseEvent] = []
    try:
        for piece in pieces:
            events += parser.feed(piece)
        events += parser.finish()
    except ClassifiedError as exc:
        return [_comparable(event) for event in events], exc.detail
    return [_comparable(event) for event in events], None


def events_by_feed_parts(pieces: list[bytes], max_line_bytes: int = 4096) -> Any:
    parser = SseParser(max_line_bytes)
    events: list[SseEvent] = []
    try:
        for piece in pieces:
            before, payloads, after = parser.feed_parts(piece)
            events += before
            events += [SseEvent(data=payload.decode("utf-8", "replace")) for payload in payloads]
            events += after
        events += parser.finish()
    except ClassifiedError as exc:
        return [_comparable(event) for event in events], exc.detail
    return [_comparable(event) for event in events], None


@dataclass
class Outcome:
    """Everything an accumulator ended with, and the error the parsing raised."""

    state: dict[str, Any]
    raised: tuple[str, str] | None


def _state(acc: ResponseAccumulator) -> dict[str, Any]:
    return {
        "first_text_ns": acc.first_text_ns,
        "first_content_ns": acc.first_content_ns,
        "last_text_ns": acc.last_text_ns,
        "itl_gaps_ms": acc.itl_gaps_ms,
        "text_events": acc.text_events,
        "content_chunks": acc.content_chunks,
        "keepalive_count": acc.keepalive_count,
        "output_tokens": acc.output_tokens,
        "input_tokens": acc.input_tokens,
        "reasoning_tokens": acc.reasoning_tokens,
        "finish_reason": acc.finish_reason,
        "response_id": acc.response_id,
        "response_model": acc.response_model,
        "done_seen": acc.done_seen,
        "error": None if acc.error is None else (acc.error.error_class, acc.error.detail),
        "output_text": acc.output_text,
        "reasoning_text": acc.reasoning_text,
        "estimate": acc.estimator.estimate(),
    }


def _interpret_events(
    adapter: ProviderAdapter, events: list[SseEvent], now_ns: int, acc: ResponseAccumulator
) -> None:
    for event in events:
        adapter.interpret_event(event, now_ns, acc)
        if acc.error is not None:
            return


def interpret_by_events(
    adapter: ProviderAdapter, pieces: list[bytes], max_line_bytes: int = 4096
) -> Outcome:
    """Parse line by line and interpret event by event, as before the fast path."""
    parser = SseParser(max_line_bytes)
    acc = ResponseAccumulator()
    try:
        for now_ns, piece in enumerate(pieces):
            _interpret_events(adapter, parser.feed(piece), now_ns, acc)
            if acc.error is not None:
                break
    except ClassifiedError as exc:
        return Outcome(_state(acc), (exc.error_class, exc.detail))
    return Outcome(_state(acc), None)


def interpret_by_parts(
    adapter: ProviderAdapter, pieces: list[bytes], max_line_bytes: int = 4096
) -> Outcome:
    """Parse with feed_parts() and interpret in the order agent/reading.py uses."""
    parser = SseParser(max_line_bytes)
    acc = ResponseAccumulator()
    try:
        for now_ns, piece in enumerate(pieces):
            before, payloads, after = parser.feed_parts(piece)
            _interpret_events(adapter, before, now_ns, acc)
            if payloads and acc.error is None:
                adapter.interpret_payloads(payloads, now_ns, acc)
            if acc.error is None:
                _interpret_events(adapter, after, now_ns, acc)
            if acc.error is not None:
                break
    except ClassifiedError as exc:
        return Outcome(_state(acc), (exc.error_class, exc.detail))
    return Outcome(_state(acc), None)


@settings(max_examples=400, deadline=None)
@given(event_stream(), st.lists(st.integers(0, 10_000), max_size=6))
def test_feed_parts_same_events(body: bytes, cuts: list[int]) -> None:
    pieces = _pieces(body, cuts)
    assert events_by_feed_parts(pieces) == events_by_feed(pieces)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_feed_parts_same_events_random_bytes(pieces: list[bytes]) -> None:
    assert events_by_feed_parts(pieces) == events_by_feed(pieces)


@settings(max_examples=400, deadline=None)
@given(event_stream(), st.lists(st.integers(0, 10_000), max_size=6))
def test_payloads_same_openai_outcome(body: bytes, cuts: list[int]) -> None:
    pieces = _pieces(body, cuts)
    assert interpret_by_parts(OPENAI, pieces) == interpret_by_events(OPENAI, pieces)


@settings(max_examples=150, deadline=None)
@given(event_stream(), st.lists(st.integers(0, 10_000), max_size=6))
def test_payloads_same_anthropic_outcome(body: bytes, cuts: list[int]) -> None:
    pieces = _pieces(body, cuts)
    assert interpret_by_parts(ANTHROPIC, pieces) == interpret_by_events(ANTHROPIC, pieces)


@pytest.mark.parametrize("case", SSE_CASES, ids=[case["id"] for case in SSE_CASES])
def test_fast_path_recorded_cases(case: dict[str, Any]) -> None:
    body = case_body(case)
    adapter = ANTHROPIC if "anthropic" in case["id"] else OPENAI
    step = max(1, len(body) // 40)
    for cut in range(0, len(body) + 1, step):
        pieces = [body[:cut], body[cut:]]
        expected_events = events_by_feed(pieces, DEFAULT_MAX_LINE_BYTES)
        assert events_by_feed_parts(pieces, DEFAULT_MAX_LINE_BYTES) == expected_events, cut
        expected = interpret_by_events(adapter, pieces, DEFAULT_MAX_LINE_BYTES)
        assert interpret_by_parts(adapter, pieces, DEFAULT_MAX_LINE_BYTES) == expected, cut


@pytest.mark.parametrize("kind", sorted(_RAW_SHAPES))
def test_payload_shape_same_outcome(kind: str) -> None:
    # One clean read, so the payload certainly takes the payload path.
    body = b"data: " + _RAW_SHAPES[kind] + b"\n\ndata: [DONE]\n\n"
    assert SseParser().feed_parts(body)[0] == []
    assert interpret_by_parts(OPENAI, [body]) == interpret_by_events(OPENAI, [body])


def test_plain_stream_takes_fast_path() -> None:
    body = b"".join(
        b"data: " + json.dumps(_plain_chunk(f"w{index}")).encode() + b"\n\n" for index in range(5)
    )
    before, payloads, after = SseParser().feed_parts(body + b"data: [DONE]\n\n")
    assert before == []
    assert after == []
    assert len(payloads) == 6
    assert payloads[-1] == b"[DONE]"


def test_fast_path_resumes_after_cut_event() -> None:
    body = b"data: " + json.dumps(_plain_chunk("a")).encode() + b"\n\n"
    parser = SseParser()
    first = parser.feed_parts(body + body[:10])
    second = parser.feed_parts(body[10:] + body + body)
    assert len(first[1]) == 1
    assert len(second[0]) == 1
    assert len(second[1]) == 2


def test_content_events_batch_same_as_one_by_one() -> None:
    one_by_one = ResponseAccumulator()
    batched = ResponseAccumulator()
    reads = [(5, ["a", "你"]), (9, ["b"]), (9, ["c", "d", "e"])]
    for now_ns, texts in reads:
        for text in texts:
            one_by_one.record_text(now_ns, text)
        batched.record_content_events(now_ns, texts)
    assert _state(batched) == _state(one_by_one)
    assert batched.itl_gaps_ms == [0.0, 4e-6, 0.0, 0.0, 0.0]
