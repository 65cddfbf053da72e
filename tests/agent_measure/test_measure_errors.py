"""Error classification of answers: error bodies of every shape, Retry-After, and
non-JSON or unexpected bodies with any status, end to end through the executor."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

import pytest

from llmping.agent.errors import (
    MODEL_NOT_FOUND,
    classify_http_error,
    describe_body,
    trim_detail,
)
from llmping.agent.ratelimit import parse_duration_s, rate_limit_headers, retry_after_s
from llmping.v1 import llmping_pb2 as pb

NOW_S = 1_700_000_000.0


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (
            404,
            b'{"error": {"message": "The model `gpt-9` does not exist or you do not have'
            b' access to it.", "type": "invalid_request_error", "code": "model_not_found"}}',
        ),
        (404, b'{"error": {"message": "The model `x` does not exist"}}'),
        (404, b'{"type": "error", "error": {"type": "not_found_error", "message": "model: c-9"}}'),
        (400, b'{"code": 20012, "message": "Model does not exist. Please check it carefully."}'),
        (400, b'{"error": {"message": "foo/bar is not a valid model ID", "code": 400}}'),
        (400, b'{"error": {"message": "Model Not Exist", "type": "invalid_request_error"}}'),
    ],
)
def test_errors_model_not_found(status: int, body: bytes) -> None:
    assert classify_http_error(status, {}, body).error_class == MODEL_NOT_FOUND


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b'{"error": {"message": "This model\'s maximum context length is 8192 tokens"}}'),
        (404, b'{"error": {"code": "DeploymentNotFound", "message": "The API deployment'
         b' for this resource does not exist."}}'),
        (500, b'{"error": {"message": "The model `x` does not exist"}}'),
        (404, b"Not Found"),
    ],
)  # fmt: skip
def test_errors_not_model_not_found(status: int, body: bytes) -> None:
    assert classify_http_error(status, {}, body).error_class == f"http_{status}"


@pytest.mark.parametrize(
    ("headers", "body", "detail"),
    [
        ({}, b"", "empty body"),
        ({}, b"upstream connect error or disconnect/reset before headers", "upstream connect"),
        ({}, b'[{"error": {"code": 429, "message": "Quota exceeded"}}]', "429: Quota exceeded"),
        ({}, b'{"detail": "Not authenticated"}', "Not authenticated"),
        ({}, b'{"error": "invalid api key"}', "invalid api key"),
        (
            {"Server": "nginx"},
            b"<html><head><title>504 Gateway Time-out</title></head></html>",
            "html error page (nginx): 504 Gateway Time-out",
        ),
        (
            {"CF-RAY": "x"},
            b"<!DOCTYPE html><html><title>Just a moment...</title></html>",
            "html error page (cloudflare): Just a moment...",
        ),
        ({}, b"  <!doctype html><body>oops</body>", "html error page (unknown server)"),
    ],
)
def test_errors_describe_body(headers: dict[str, str], body: bytes, detail: str) -> None:
    assert detail in describe_body(headers, body)


def test_errors_detail_trimmed() -> None:
    detail = classify_http_error(500, {}, b'{"error": {"message": "' + b"x" * 5000 + b'"}}').detail
    assert len(detail) == 300
    assert detail.endswith("…")
    assert trim_detail("a \n\t b") == "a b"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"Retry-After": formatdate(NOW_S + 30, usegmt=True)}, 30.0),
        ({"Retry-After": formatdate(NOW_S - 30, usegmt=True)}, 0.0),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        (
            {
                "x-ratelimit-remaining-requests": "499",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-requests": "120ms",
                "x-ratelimit-reset-tokens": "6m0s",
            },
            360.0,
        ),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2m59.56s"}, 179.56),
        (
            {
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": "2023-11-14T22:13:40Z",
            },
            20.0,
        ),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_errors_retry_after(headers: dict[str, str], expected: float | None) -> None:
    value = retry_after_s(headers, NOW_S)
    if expected is None:
        assert value is None
    else:
        assert value == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("120ms", 0.12), ("1s", 1.0), ("7.66s", 7.66), ("6m0s", 360.0), ("1h2m3s", 3723.0)],
)
def test_errors_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5x", "1s2"])
def test_errors_parse_duration_invalid(text: str) -> None:
    assert parse_duration_s(text) is None


def test_errors_rate_limit_headers_kept() -> None:
    kept = rate_limit_headers(
        {
            "X-RateLimit-Remaining-Tokens": "0",
            "anthropic-ratelimit-requests-limit": "50",
            "Retry-After": "3",
            "Content-Type": "application/json",
        }
    )
    assert kept == {
        "x-ratelimit-remaining-tokens": "0",
        "anthropic-ratelimit-requests-limit": "50",
        "retry-after": "3",
    }


# End to end: an answer of each status and body shape, through a real server.
_NON_JSON_ANSWERS = [
    (200, "text/plain", b"Service is up", False, "malformed_response", "invalid JSON body"),
    (200, "application/json", b"<html><title>Login</title></html>", False, "malformed_response",
     "HTML where JSON was expected"),
    (200, "text/html", b"<html><title>Captive portal</title></html>", True, "malformed_response",
     "html error page"),
    (200, "application/json", b"", False, "empty_response", ""),
    (200, "application/json", b'{"error": {"message": "quota", "type": "insufficient_quota"}}',
     True, "provider_error", "insufficient_quota: quota"),
    (200, "text/event-stream", b'{"error": {"message": "bad key", "code": "invalid_api_key"}}',
     True, "provider_error", "invalid_api_key: bad key"),
    (200, "text/event-stream", b"<!DOCTYPE html><html><title>Blocked</title></html>", True,
     "malformed_response", "Blocked"),
    (200, "text/event-stream", b"Internal error\n", True, "malformed_response", "Internal error"),
    (200, "application/json", b"data: {\"choices\": [{\"delta\": {\"content\": \"Hi\"}}]}\n\n"
     b"data: [DONE]\n\n", False, "", ""),
    (200, "", b'{"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}', True,
     "", ""),
    (401, "text/plain", b"Unauthorized", True, "http_401", "Unauthorized"),
    (403, "text/html", b"<html><head><title>403 Forbidden</title></head></html>", True, "http_403",
     "403 Forbidden"),
    (500, "application/json", b"", True, "http_500", "empty body"),
    (502, "text/plain", b"Bad Gateway", False, "http_502", "Bad Gateway"),
    (503, "application/json", b"not json {", True, "http_503", "not json {"),
    (301, "text/html", b"<html><title>Moved</title></html>", True, "http_301", "Moved"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "content_type", "body", "stream", "error_class", "detail"), _NON_JSON_ANSWERS
)
async def test_errors_any_status_any_body(
    status: int,
    content_type: str,
    body: bytes,
    stream: bool,
    error_class: str,
    detail: str,
    kit: Any,
    scripted_server: Any,
    make_executor: Any,
) -> None:
    headers = [("Content-Length", str(len(body))), ("Retry-After", "7")]
    if content_type:
        headers.append(("Content-Type", content_type))
    server = await scripted_server(
        [kit.ScriptedResponse(status=status, headers=headers, chunks=[body], delays_ms=[0])]
    )
    executor = await make_executor(
        kit.provider_for("openai", server.url), kit.request_spec(stream=stream)
    )
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)

    assert record.error_class == error_class
    assert detail in record.error_detail
    assert record.http_status == status
    if status >= 300:
        assert record.retry_after_s == 7.0
        assert record.error_phase == "headers"


async def test_errors_429_keeps_rate_limit_headers(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    body = b'{"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}}'
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("x-ratelimit-remaining-requests", "0"),
        ("x-ratelimit-reset-requests", "1s"),
        ("x-request-id", "req_1"),
    ]
    server = await scripted_server(
        [kit.ScriptedResponse(status=429, headers=headers, chunks=[body], delays_ms=[0])]
    )
    executor = await make_executor(kit.provider_for("openai", server.url))
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)

    assert record.error_class == "http_429"
    assert record.retry_after_s == 1.0
    assert dict(record.rate_limit_headers) == {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
    }


async def run_404(kit: Any, scripted_server: Any, make_executor: Any, kind: str) -> pb.Record:
    body = b"404: Not Found"
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    server = await scripted_server(
        [kit.ScriptedResponse(status=404, headers=headers, chunks=[body], delays_ms=[0])]
    )
    # A base_url without /v1, the usual mistake behind a 404.
    executor = await make_executor(kit.provider_for(kind, server.url + "/api"))
    record = pb.Record()
    await executor.execute(record, time.perf_counter_ns(), False)
    return record


async def test_errors_404_names_path_and_base_url(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    record = await run_404(kit, scripted_server, make_executor, "openai")

    assert record.error_class == "http_404"
    assert record.error_detail == (
        "404: Not Found, for POST /api/chat/completions; check the provider's base_url "
        "(for this API it looks like https://api.openai.com/v1)"
    )


async def test_errors_404_detail_leaves_out_query(
    kit: Any, scripted_server: Any, make_executor: Any
) -> None:
    # Azure puts api-version in the query string, where other APIs may put a key.
    record = await run_404(kit, scripted_server, make_executor, "azure")

    assert record.error_class == "http_404"
    assert "POST /api/openai/deployments/test-deployment/chat/completions;" in record.error_detail
    assert "?" not in record.error_detail
    assert "api-version" not in record.error_detail


def test_errors_404_model_not_found_has_no_hint() -> None:
    body = b'{"error": {"message": "The model `x` does not exist"}}'

    error = classify_http_error(404, {}, body, "/v1/chat/completions", "https://x/v1")

    assert error.error_class == MODEL_NOT_FOUND
    assert "base_url" not in error.detail
