"""Opt-in retry policy."""

from __future__ import annotations

from llmping.agent.retry import RetryRule
from llmping.v1 import llmping_pb2 as pb


def test_no_policy_means_one_attempt() -> None:
    rule = RetryRule.from_pb(pb.RetryPolicy())

    assert rule.max_attempts == 1
    assert not rule.should_retry("http_503", 1)


def test_listed_classes_and_groups() -> None:
    rule = RetryRule.from_pb(
        pb.RetryPolicy(max_attempts=3, backoff_s=0.1, on_error_classes=["http_5xx", "timeout_ttft"])
    )

    assert rule.should_retry("http_502", 1)
    assert rule.should_retry("timeout_ttft", 2)
    assert not rule.should_retry("http_502", 3)
    assert not rule.should_retry("http_429", 1)
    assert not rule.should_retry("", 1)


def test_empty_class_list_retries_errors_but_not_cancelled() -> None:
    rule = RetryRule(max_attempts=2)

    assert rule.should_retry("connection_reset", 1)
    assert not rule.should_retry("cancelled", 1)


def test_backoff_doubles() -> None:
    rule = RetryRule(max_attempts=4, backoff_s=0.5)

    assert [rule.backoff_before_s(n) for n in (2, 3, 4)] == [0.5, 1.0, 2.0]
