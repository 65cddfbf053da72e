"""The SSE parser gives the same events whatever the read boundaries."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmping.agent.errors import MALFORMED_RESPONSE, ClassifiedError
from llmping.agent.sse import SseEvent, SseParser

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "data" / "provider-responses.json").read_text("utf-8")
)
_FILL = re.compile(r"<<FILL:(\d+):(.*?)>>", re.DOTALL)


def case_body(case: dict[str, Any]) -> bytes:
    encoding = case.get("chunk_encoding", "utf-8")
    body = "".join(case["chunks"])
    body = _FILL.sub(lambda match: match.group(2) * int(match.group(1)), body)
    return body.encode(encoding)


# Event-stream bodies small enough to split at every byte position.
SSE_CASES = [
    case
    for case in CASES
    if "event-stream" in case["headers"].get("Content-Type", "")
    and "Content-Encoding" not in case["headers"]
    and not case.get("fill_markers")
]


def parse_in_pieces(body: bytes, cuts: list[int], finish: bool = True) -> list[SseEvent]:
    parser = SseParser()
    events: list[SseEvent] = []
    previous = 0
    for cut in [*sorted(cuts), len(body)]:
        events += parser.feed(body[previous:cut])
        previous = cut
    if finish:
        events += parser.finish()
    return events


def parse_whole(body: bytes) -> list[SseEvent]:
    return parse_in_pieces(body, [])


@pytest.mark.parametrize("case", SSE_CASES, ids=[case["id"] for case in SSE_CASES])
def test_sse_case_every_split(case: dict[str, Any]) -> None:
    body = case_body(case)
    expected = parse_whole(body)
    assert expected
    for cut in range(1, len(body)):
        assert parse_in_pieces(body, [cut]) == expected, cut


@pytest.mark.parametrize("case", SSE_CASES, ids=[case["id"] for case in SSE_CASES])
def test_sse_case_one_byte_reads(case: dict[str, Any]) -> None:
    body = case_body(case)
    assert parse_in_pieces(body, list(range(1, len(body)))) == parse_whole(body)


def test_sse_long_line_case_parses() -> None:
    case = next(case for case in CASES if case.get("fill_markers"))
    body = case_body(case)
    assert len(body) > 700_000
    events = parse_in_pieces(body, list(range(0, len(body), 65_536)))
    assert len(events) == 4
    assert events[-1].data == "[DONE]"
    assert len(events[0].data) > 700_000


@settings(max_examples=200, deadline=None)
@given(
    case_index=st.integers(0, len(SSE_CASES) - 1),
    cuts=st.lists(st.integers(0, 100_000), max_size=40),
)
def test_sse_random_splits(case_index: int, cuts: list[int]) -> None:
    body = case_body(SSE_CASES[case_index])
    cuts = [cut % (len(body) + 1) for cut in cuts]
    assert parse_in_pieces(body, cuts) == parse_whole(body)


def test_sse_comment_variants() -> None:
    body = b": OPENROUTER PROCESSING\n\n:ping\n:\n: keep-alive\r\n\r\ndata: x\n\n"
    events = parse_whole(body)
    comments = [event for event in events if event.is_comment]
    assert [event.data for event in comments] == ["OPENROUTER PROCESSING", "ping", "", "keep-alive"]
    assert [event.data for event in events if not event.is_comment] == ["x"]


def test_sse_data_without_space() -> None:
    assert parse_whole(b"data:[DONE]\n\n") == [SseEvent(data="[DONE]")]
    assert parse_whole(b"data:  two spaces\n\n") == [SseEvent(data=" two spaces")]


def test_sse_multi_line_data() -> None:
    events = parse_whole(b"data: first\ndata:\ndata: third\n\n")
    assert events == [SseEvent(data="first\n\nthird")]


def test_sse_line_endings_mixed() -> None:
    body = b"event: a\rdata: 1\r\rdata: 2\r\n\r\ndata: 3\n\n"
    assert [(event.event, event.data) for event in parse_whole(body)] == [
        ("a", "1"),
        ("message", "2"),
        ("message", "3"),
    ]


def test_sse_crlf_split_is_one_line_end() -> None:
    # "data: x\r" | "\n" | "\r\n": one event, not an extra blank line before the LF.
    parser = SseParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\r") == [SseEvent(data="x")]
    assert parser.feed(b"\ndata: y\n\n") == [SseEvent(data="y")]


def test_sse_event_name_does_not_leak() -> None:
    events = parse_whole(b"event: ping\n\ndata: x\n\n")
    assert events == [SseEvent(event="message", data="x")]


def test_sse_id_persists() -> None:
    events = parse_whole(b"id: 7\ndata: a\n\ndata: b\n\n")
    assert [event.id for event in events] == ["7", "7"]


def test_sse_bom_stripped() -> None:
    body = b"\xef\xbb\xbfdata: x\n\n"
    assert parse_in_pieces(body, [1]) == [SseEvent(data="x")]
    assert parse_in_pieces(body, [2]) == [SseEvent(data="x")]


def test_sse_final_event_without_blank_line() -> None:
    assert parse_whole(b"data: a\n\ndata: [DONE]\n") == [
        SseEvent(data="a"),
        SseEvent(data="[DONE]"),
    ]
    assert parse_whole(b"data: [DONE]") == [SseEvent(data="[DONE]")]


def test_sse_partial_event_dropped_without_finish() -> None:
    body = b'data: {"a": 1}\n\ndata: {"b": '
    assert parse_in_pieces(body, [], finish=False) == [SseEvent(data='{"a": 1}')]


def test_sse_utf8_split_in_character() -> None:
    body = "data: 修复方法完成👍\n\n".encode()
    expected = [SseEvent(data="修复方法完成👍")]
    for cut in range(1, len(body)):
        assert parse_in_pieces(body, [cut]) == expected


def test_sse_invalid_utf8_replaced() -> None:
    assert parse_whole(b"data: \xff\xfe ok\n\n") == [SseEvent(data="\ufffd\ufffd ok")]


def test_sse_line_too_long() -> None:
    parser = SseParser(max_line_bytes=1000)
    parser.feed(b"data: " + b"x" * 900)
    with pytest.raises(ClassifiedError) as caught:
        parser.feed(b"x" * 200)
    assert caught.value.error_class == MALFORMED_RESPONSE
    assert caught.value.detail == "line longer than 1000 bytes"


def test_sse_complete_line_too_long() -> None:
    parser = SseParser(max_line_bytes=1000)
    with pytest.raises(ClassifiedError) as caught:
        parser.feed(b"data: " + b"x" * 2000 + b"\n\n")
    assert caught.value.detail == "line longer than 1000 bytes"


def test_sse_event_too_long() -> None:
    parser = SseParser(max_line_bytes=1000)
    with pytest.raises(ClassifiedError) as caught:
        for _ in range(20):
            parser.feed(b"data: " + b"x" * 100 + b"\n")
    assert caught.value.detail == "event longer than 1000 bytes"


def test_sse_field_lines_counted() -> None:
    parser = SseParser()
    parser.feed(b'{"error": "not an event stream"}\nretry: 10\n')
    parser.finish()
    assert parser.field_lines == 1
    only_comments = SseParser()
    only_comments.feed(b": ping\n\n")
    assert only_comments.field_lines == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_sse_random_bytes_never_crash(chunks: list[bytes]) -> None:
    parser = SseParser(max_line_bytes=2000)
    try:
        for chunk in chunks:
            for event in parser.feed(chunk):
                assert isinstance(event.data, str)
        parser.finish()
    except ClassifiedError as exc:
        assert exc.error_class == MALFORMED_RESPONSE


_FIELD_LINE = st.one_of(
    st.builds(lambda text: f"data: {text}", st.text(max_size=30)),
    st.builds(lambda text: f"data:{text}", st.text(max_size=30)),
    st.builds(lambda text: f"event: {text}", st.text(max_size=10)),
    st.builds(lambda text: f": {text}", st.text(max_size=10)),
    st.builds(lambda text: f"id: {text}", st.text(max_size=5)),
    st.just(""),
)


@settings(max_examples=120, deadline=None)
@given(
    lines=st.lists(_FIELD_LINE, max_size=20),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_sse_generated_streams_split_anywhere(
    lines: list[str], ending: str, cuts: list[int]
) -> None:
    # Line content must not contain line-end characters of its own.
    clean = [re.sub(r"[\r\n]", "", line) for line in lines]
    body = "".join(line + ending for line in clean).encode()
    cuts = [cut % (len(body) + 1) for cut in cuts]
    assert parse_in_pieces(body, cuts) == parse_whole(body)
