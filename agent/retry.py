"""Opt-in retries of failed requests (LoadSpec.retry).

Every attempt is its own record with ``attempt`` = 1, 2, ...; a plan without a retry
policy sends each request once. Retries wait ``backoff_s`` before the second attempt
and twice as long before each later one. A provider's Retry-After header does not
change the wait, so the plan alone decides how hard a retrying run pushes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmping.v1 import llmping_pb2 as pb

# "http_4xx" and "http_5xx" in on_error_classes match every status of that group.
_HTTP_GROUP = re.compile(r"^http_([1-5])xx$")


@dataclass(frozen=True)
class RetryRule:
    """When a failed attempt is sent again, and after how long."""

    max_attempts: int = 1
    backoff_s: float = 0.0
    # Empty: retry every error class except "cancelled".
    on_error_classes: frozenset[str] = frozenset()

    @classmethod
    def from_pb(cls, policy: pb.RetryPolicy) -> RetryRule:
        """Build the rule from the plan; a missing policy means one attempt."""
        return cls(
            max_attempts=max(1, policy.max_attempts),
            backoff_s=max(0.0, policy.backoff_s),
            on_error_classes=frozenset(policy.on_error_classes),
        )

    def should_retry(self, error_class: str, attempt: int) -> bool:
        """Return whether attempt number ``attempt`` failing with ``error_class`` is retried."""
        if attempt >= self.max_attempts or not error_class or error_class == "cancelled":
            return False
        if not self.on_error_classes:
            return True
        return error_class in self.on_error_classes or self._matches_group(error_class)

    def backoff_before_s(self, next_attempt: int) -> float:
        """Return the wait in seconds before attempt number ``next_attempt`` (2 or more)."""
        return self.backoff_s * 2 ** max(0, next_attempt - 2)

    def _matches_group(self, error_class: str) -> bool:
        for pattern in self.on_error_classes:
            group = _HTTP_GROUP.match(pattern)
            if group and re.fullmatch(rf"http_{group.group(1)}\d\d", error_class):
                return True
        return False
