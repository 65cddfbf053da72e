"""Log a repeated error once and then as counts, so a failure loop cannot flood the log."""

from __future__ import annotations

import logging
import time

SUMMARY_INTERVAL_S = 10.0


class RepeatCounter:
    """Logs the first occurrence of an error, then one summary line per interval.

    The summary gives how many occurrences there were since the previous line and the
    latest detail.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        level: int = logging.WARNING,
        interval_s: float = SUMMARY_INTERVAL_S,
    ) -> None:
        self._logger = logger
        self._what = what
        self._level = level
        self._interval_ns = int(interval_s * 1e9)
        self._pending = 0
        self._last_logged_ns: int | None = None
        self.total = 0

    def record(self, detail: str) -> None:
        self.total += 1
        now = time.perf_counter_ns()
        if self._last_logged_ns is None:
            self._logger.log(self._level, "%s: %s", self._what, detail)
            self._last_logged_ns = now
            return
        self._pending += 1
        if now - self._last_logged_ns >= self._interval_ns:
            self._logger.log(
                self._level,
                "%s %d more times in the last %.0f s; latest: %s",
                self._what,
                self._pending,
                (now - self._last_logged_ns) / 1e9,
                detail,
            )
            self._pending = 0
            self._last_logged_ns = now
