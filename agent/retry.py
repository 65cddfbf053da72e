"""Opt-in retries of failed requests (LoadSpec.retry), and the stop of a hopeless lane.

Every attempt is its own record with ``attempt`` = 1, 2, ...; a plan without a retry
policy sends each request once. Retries wait ``backoff_s`` before the second attempt
and twice as long before each later one. A provider's Retry-After header does not
change the wait, so the plan alone decides how hard a retrying run pushes.

Some failures repeat on every request until someone changes the plan or the
provider's settings. ``LaneBreaker`` stops a provider lane after a few of them in a
row, so that a closed loop against a provider that rejects at once does not send
thousands of (possibly billed) requests per second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmping.agent.errors import LOCAL_FAILURES, MODEL_NOT_FOUND
from llmping.v1 import llmping_pb2 as pb

# "http_4xx" and "http_5xx" in on_error_classes match every status of that group.
_HTTP_GROUP = re.compile(r"^http_([1-5])xx$")

# Error classes that retrying or sending more will not change: the provider does not
# offer the model (model_not_found, http_404) or rejects the key (http_401, http_403).
PERMANENT_ERROR_CLASSES = frozenset({MODEL_NOT_FOUND, "http_401", "http_403", "http_404"})

# A lane stops after this many records in a row with a permanent error class. More
# than one, so that a single odd response (a gateway's 404 while it reloads its routes)
# does not end the lane. Few, so that a closed loop sends a handful of requests to a
# provider that rejects them at once, not thousands per second.
STOP_AFTER_PERMANENT_FAILURES = 5


@dataclass(frozen=True)
class RetryRule:
    """When a failed attempt is sent again, and after how long."""

    max_attempts: int = 1
    backoff_s: float = 0.0
    # Empty: retry every error class except "cancelled". A request that failed inside
    # the agent is never retried, because a retry would add load to an agent that is
    # already out of file descriptors or ports.
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
        if error_class in LOCAL_FAILURES:
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


@dataclass(frozen=True)
class LaneStop:
    """Why a lane stopped: the failures in a row and what the provider returned."""

    failures: int
    # The permanent error classes of those failures, in the order they first appeared.
    error_classes: tuple[str, ...]
    # The provider's message in the last of those records, already trimmed.
    detail: str


class LaneBreaker:
    """Counts one lane's consecutive permanent failures and stops the lane for good.

    The runner passes every stored record's error class; the drivers read ``stop``
    and send nothing more once it is set. A record of any other class, success
    included, resets the count before the threshold. Nothing resets it after.
    """

    def __init__(self, threshold: int = STOP_AFTER_PERMANENT_FAILURES) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {threshold}")
        self.threshold = threshold
        self.stop: LaneStop | None = None
        self._consecutive = 0
        # dict keys keep the order in which the classes appeared.
        self._classes: dict[str, None] = {}

    @property
    def stopped(self) -> bool:
        """Whether the lane has stopped."""
        return self.stop is not None

    def add(self, error_class: str, detail: str) -> bool:
        """Count one record; return True only for the record that stops the lane."""
        if self.stop is not None:
            return False
        if error_class not in PERMANENT_ERROR_CLASSES:
            self._consecutive = 0
            self._classes.clear()
            return False
        self._consecutive += 1
        self._classes[error_class] = None
        if self._consecutive < self.threshold:
            return False
        self.stop = LaneStop(self._consecutive, tuple(self._classes), detail)
        return True
