"""Every recorded provider response, served from a real local server and measured.

tests/data/provider-responses.json lists real response shapes and failure modes of LLM
APIs. Each case is played byte for byte with its delays, and the record the executor
fills must match the case's expectations, including TTFT at the right chunk.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from llmping.agent.stream import ResponseAccumulator
from llmping.v1 import llmping_pb2 as pb

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent.parent / "data" / "provider-responses.json").read_text("utf-8")
)

# Delays above this are shortened so the folder stays quick; the longest case (keep-alive
# comments for 20 s before the first token) keeps its shape at about 4 s.
MAX_DELAY_MS = 1000.0
# A chunk's arrival at the client is checked against the instant the server wrote it
# (both threads read the same perf_counter clock). An arrival can never be early, so
# taking TTFT at an earlier chunk (a role-only event, a comment, a filter annotation)
# always fails. It may be late when the machine is loaded, so the upper bound is
# looser; counting from a later text chunk is also caught by the interpretation tests.
LATE_TOLERANCE_MS = 40.0
# The chunk after the 750 KB event waits while the client parses that event (about
# 20 ms on an idle core, several times that under load). Taking TTFT at the large
# role-only event itself is still caught, because an arrival can never be early.
LATE_TOLERANCE_OVERRIDES_MS = {"sse-line-longer-than-aiohttp-limit": 250.0}
DETAIL_OVERRIDES = {"azure-missing-api-version-404": "Resource not found"}
_FILL = re.compile(r"<<FILL:(\d+):(.*?)>>", re.DOTALL)


def wire_chunks(case: dict[str, Any]) -> list[bytes]:
    """Return the case's chunks as the bytes to send."""
    encoding = case.get("chunk_encoding", "utf-8")
    chunks = []
    for text in case["chunks"]:
        if case.get("fill_markers"):
            text = _FILL.sub(lambda match: match.group(2) * int(match.group(1)), text)
        chunks.append(text.encode(encoding))
    return chunks


def delays_ms(case: dict[str, Any]) -> list[float]:
    return [min(float(delay), MAX_DELAY_MS) for delay in case["delays_ms"]]


def provider_kind(case: dict[str, Any]) -> str:
    provider = case["provider"]
    if provider.startswith("Anthropic"):
        return "anthropic"
    if provider.startswith("Azure"):
        return "azure"
    return "openai_compatible"


def stream_requested(case: dict[str, Any]) -> bool:
    return bool(case.get("request", {}).get("body", {}).get("stream", True))


def assert_at_chunk(
    arrival_ns: int | None, send_ns: int, server: Any, case: dict[str, Any], index: int
) -> None:
    """Check that an arrival instant is the arrival of chunk index, and that the time
    since the send covers at least the case's delays up to that chunk."""
    assert arrival_ns is not None
    late_ms = (arrival_ns - server.chunk_sent_ns[index]) / 1e6
    tolerance_ms = LATE_TOLERANCE_OVERRIDES_MS.get(case["id"], LATE_TOLERANCE_MS)
    assert 0 <= late_ms <= tolerance_ms, (index, late_ms)
    assert (arrival_ns - send_ns) / 1e6 >= sum(delays_ms(case)[: index + 1])


async def measure_case(
    case: dict[str, Any], kit: Any, scripted_server: Any, make_executor: Any
) -> tuple[pb.Record, ResponseAccumulator, Any]:
    server = await scripted_server(
        [
            kit.ScriptedResponse(
                status=case["status"],
                headers=list(case["headers"].items()),
                chunks=wire_chunks(case),
                delays_ms=delays_ms(case),
                termination=case["termination"],
            )
        ]
    )
    # A short idle limit (above the case's 800 ms wait before its first chunk) keeps
    # the stalled-stream case quick.
    timeouts = pb.Timeouts(idle_s=1.0 if case["termination"] == "stall" else 0)
    request = kit.request_spec(stream=stream_requested(case))
    executor = await make_executor(
        kit.provider_for(provider_kind(case), server.url), request, timeouts
    )
    seen: list[ResponseAccumulator] = []
    executor.response_observer = lambda _record, acc: seen.append(acc)

    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)
    assert len(seen) == 1
    return record, seen[0], server


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
async def test_measure_case(
    case: dict[str, Any], kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    expect = case["expect"]
    record, acc, server = await measure_case(case, kit, scripted_server, make_executor)

    assert record.error_class == (expect["error_class"] or "")
    assert record.http_status == case["status"]
    if expect.get("error_detail"):
        key = DETAIL_OVERRIDES.get(case["id"], expect["error_detail"])
        assert key in record.error_detail
    assert acc.output_text == expect["output_text"]
    if "reasoning_text" in expect:
        assert acc.reasoning_text == expect["reasoning_text"]
    assert record.content_chunks == expect["content_delta_count"]
    assert record.finish_reason == (expect["finish_reason"] or "")
    assert acc.done_seen == expect["done_seen"]

    if "output_tokens" in expect:
        assert record.output_tokens == expect["output_tokens"]
        assert not record.output_tokens_estimated
    elif acc.text_events:
        assert record.output_tokens_estimated
        assert record.output_tokens > 0
    else:
        assert record.output_tokens == 0
    if "reasoning_tokens" in expect:
        assert record.reasoning_tokens == expect["reasoning_tokens"]
    if "retry_after_s" in expect:
        assert record.retry_after_s == pytest.approx(expect["retry_after_s"])

    ttft_index = expect["ttft_chunk_index"]
    if ttft_index is None:
        assert not record.HasField("ttft_ms")
        assert record.itl_count == 0
    else:
        assert acc.first_text_ns is not None
        assert acc.first_content_ns is not None
        # The record counts from the send (closed loop): recover the send instant.
        send_ns = acc.first_text_ns - round(record.ttft_ms * 1e6)
        assert_at_chunk(acc.first_text_ns, send_ns, server, case, ttft_index)
        content_index = expect.get("ttft_content_chunk_index", ttft_index)
        assert_at_chunk(acc.first_content_ns, send_ns, server, case, content_index)
        assert record.ttft_content_ms == pytest.approx((acc.first_content_ns - send_ns) / 1e6)
        last_index = expect["last_token_chunk_index"]
        assert_at_chunk(acc.last_text_ns, send_ns, server, case, last_index)

    assert record.HasField("e2e_ms")
    assert record.e2e_ms >= record.ttfb_ms
    assert record.bytes_received > 0 or not case["chunks"]
    assert len(server.requests) == 1


def test_measure_cases_all_loaded() -> None:
    assert len(CASES) == 25
    assert len({case["id"] for case in CASES}) == 25
