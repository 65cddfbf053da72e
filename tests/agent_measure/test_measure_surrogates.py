"""Lone surrogates: valid as JSON escapes, invalid in protobuf strings.

A provider that sends one in a response id, model, finish reason or error message
must still produce a record, with the surrogate replaced, instead of an exception.
"""

from __future__ import annotations

import time
from typing import Any

from llmping.v1 import llmping_pb2 as pb

SURROGATE = "\\ud800"  # as it appears on the wire, inside a JSON string


def stream_body() -> bytes:
    events = [
        '{"id":"id-' + SURROGATE + '","model":"m-' + SURROGATE + '",'
        '"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}',
        '{"choices":[{"delta":{},"finish_reason":"stop-' + SURROGATE + '"}]}',
    ]
    text = "".join(f"data: {event}\n\n" for event in events) + "data: [DONE]\n\n"
    return text.encode()


async def test_surrogates_in_stream_fields(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    server = await scripted_server([kit.ScriptedResponse(chunks=[stream_body()], delays_ms=[0])])
    executor = await make_executor(kit.provider_for("openai", server.url))
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)

    assert record.error_class == ""
    assert record.response_id.startswith("id-")
    assert record.response_model.startswith("m-")
    assert record.finish_reason.startswith("stop-")
    assert record.SerializeToString()


async def test_surrogates_in_error_message(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    body = ('{"error":{"message":"bad ' + SURROGATE + '","type":"invalid_request_error"}}').encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    server = await scripted_server(
        [kit.ScriptedResponse(status=400, headers=headers, chunks=[body], delays_ms=[0])]
    )
    executor = await make_executor(kit.provider_for("openai", server.url))
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)

    assert record.error_class == "http_400"
    assert "bad" in record.error_detail
    assert record.SerializeToString()
