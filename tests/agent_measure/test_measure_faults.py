"""Variants of the recorded faults: how a stream ends, compression, oversized lines."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from llmping.v1 import llmping_pb2 as pb

TEXT = b'data: {"choices":[{"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
FINISH = b'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}\n\n'
FILTERED = b'data: {"choices":[{"delta":{},"finish_reason":"content_filter"}]}\n\n'
ROLE = b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
DONE = b"data: [DONE]\n\n"
CASES = json.loads(
    (Path(__file__).parent.parent / "data" / "provider-responses.json").read_text("utf-8")
)


async def measure(
    kit: Any,
    scripted_server: Any,
    make_executor: Any,
    chunks: list[bytes],
    termination: str = "close",
    kind: str = "openai",
    headers: list[tuple[str, str]] | None = None,
) -> pb.Record:
    response = kit.ScriptedResponse(
        chunks=chunks, delays_ms=[5] * len(chunks), termination=termination
    )
    if headers is not None:
        response.headers = headers
    server = await scripted_server([response])
    executor = await make_executor(kit.provider_for(kind, server.url))
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)
    return record


@pytest.mark.parametrize(
    ("chunks", "termination", "error_class"),
    [
        ([ROLE, TEXT, FINISH, DONE], "close", ""),
        ([ROLE, TEXT, FINISH], "close", ""),
        ([ROLE, TEXT, DONE], "close", ""),
        ([ROLE, TEXT], "close", "stream_truncated"),
        ([ROLE, TEXT, FINISH], "abort", ""),
        ([ROLE, TEXT], "abort", "stream_truncated"),
        ([ROLE], "abort", "stream_truncated"),
        ([ROLE, DONE], "close", "empty_response"),
        ([], "close", "empty_response"),
        ([ROLE, TEXT, FILTERED, DONE], "close", "content_filter"),
        ([ROLE, TEXT, TEXT[:30]], "close", "stream_truncated"),
        ([ROLE, TEXT, FINISH, b"data: {not json}\n\n", DONE], "close", "malformed_response"),
    ],
)
async def test_fault_stream_endings(
    chunks: list[bytes],
    termination: str,
    error_class: str,
    kit: Any,
    scripted_server: Any,
    make_executor: Any,
) -> None:
    record = await measure(kit, scripted_server, make_executor, chunks, termination)
    assert record.error_class == error_class
    if error_class:
        assert record.error_detail


async def test_fault_cut_event_detail(kit: Any, scripted_server: Any, make_executor: Any) -> None:
    # A clean close in the middle of an event: the half-sent JSON is a cut, not malformed.
    record = await measure(kit, scripted_server, make_executor, [ROLE, TEXT, TEXT[:30]])
    assert record.error_class == "stream_truncated"
    assert "stream ended inside an event" in record.error_detail


@pytest.mark.parametrize(
    ("events", "error_class"),
    [
        (["content_block_delta", "message_delta", "message_stop"], ""),
        (["content_block_delta", "message_delta"], ""),
        (["content_block_delta", "message_stop"], ""),
        (["content_block_delta"], "stream_truncated"),
        (["message_stop"], "empty_response"),
    ],
)
async def test_fault_anthropic_endings(
    events: list[str], error_class: str, kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    payloads = {
        "content_block_delta": {
            "type": "content_block_delta",
            "delta": {"type": "text_delta", "text": "Hi"},
        },
        "message_delta": {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
        "message_stop": {"type": "message_stop"},
    }
    chunks = [f"event: {name}\ndata: {json.dumps(payloads[name])}\n\n".encode() for name in events]
    record = await measure(kit, scripted_server, make_executor, chunks, kind="anthropic")
    assert record.error_class == error_class


def _gzip_case() -> dict[str, Any]:
    return next(case for case in CASES if case["id"] == "gzip-compressed-sse")


async def test_fault_gzip_all_at_once(kit: Any, scripted_server: Any, make_executor: Any) -> None:
    # The same compressed bytes in one read: TTFT can only be the arrival of everything.
    case = _gzip_case()
    body = b"".join(chunk.encode("latin-1") for chunk in case["chunks"])
    record = await measure(
        kit, scripted_server, make_executor, [body], kind="anthropic",
        headers=list(case["headers"].items()),
    )  # fmt: skip
    assert record.error_class == ""
    assert record.output_tokens == 3
    assert record.ttft_ms == pytest.approx(record.e2e_ms, abs=3)


async def test_fault_gzip_non_stream(kit: Any, scripted_server: Any, make_executor: Any) -> None:
    body = gzip.compress(b'{"choices":[{"message":{"content":"zipped"},"finish_reason":"stop"}]}')
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
        ("Content-Length", str(len(body))),
    ]
    server = await scripted_server(
        [kit.ScriptedResponse(headers=headers, chunks=[body], delays_ms=[0])]
    )
    executor = await make_executor(
        kit.provider_for("openai", server.url), kit.request_spec(stream=False)
    )
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)
    assert record.error_class == ""
    assert record.content_chunks == 1


async def test_fault_invalid_gzip(kit: Any, scripted_server: Any, make_executor: Any) -> None:
    headers = [
        ("Content-Type", "text/event-stream"),
        ("Content-Encoding", "gzip"),
        ("Transfer-Encoding", "chunked"),
    ]
    record = await measure(
        kit, scripted_server, make_executor, [b"this is not gzip at all" * 4], headers=headers
    )
    assert record.error_class == "malformed_response"


async def test_fault_deflate_stream(kit: Any, scripted_server: Any, make_executor: Any) -> None:
    compressor = zlib.compressobj()
    chunks = [
        compressor.compress(part) + compressor.flush(zlib.Z_SYNC_FLUSH)
        for part in (ROLE, TEXT, FINISH, DONE)
    ]
    chunks[-1] += compressor.flush()
    headers = [
        ("Content-Type", "text/event-stream"),
        ("Content-Encoding", "deflate"),
        ("Transfer-Encoding", "chunked"),
    ]
    record = await measure(kit, scripted_server, make_executor, chunks, headers=headers)
    assert record.error_class == ""
    assert record.finish_reason == "stop"


async def test_fault_line_over_limit(kit: Any, scripted_server: Any, make_executor: Any) -> None:
    # 5 MiB in one line is above the 4 MiB default: classified, not a crash or a hang.
    huge = b'data: {"pad":"' + b"x" * (5 * 1024 * 1024) + b'"}\n\n'
    record = await measure(kit, scripted_server, make_executor, [ROLE, huge, DONE])
    assert record.error_class == "malformed_response"
    assert record.error_detail == "line longer than 4194304 bytes"
    assert record.error_phase == "first_token"
