"""Hooks that metrics and tracing code attach to the controller.

Subclass ControllerObserver, override what you need and pass instances to
``serve(config, observers=[...])``. Hooks run on the event loop, so they must be quick
and must not block. An exception in a hook is logged and counted, never propagated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from llmping.v1 import llmping_pb2 as pb

from .logcount import RepeatCounter

log = logging.getLogger(__name__)


class ControllerObserver:
    """No-op base class; each method is one event in the controller's life."""

    def agent_connected(self, agent_id: str, labels: dict[str, str]) -> None:
        """Called after an agent's Hello was accepted and the agent registered."""

    def agent_disconnected(self, agent_id: str) -> None:
        """Called after an agent's stream ended."""

    def run_started(self, run: pb.RunInfo) -> None:
        """Called after a run was stored and its assignments were sent."""

    def batch_stored(
        self, run_id: str, target: str, records: Sequence[pb.Record], store_s: float
    ) -> None:
        """Called after a result batch was stored; store_s is the time the call took."""

    def batch_duplicate(self, assignment_id: str, seq: int) -> None:
        """Called when a resent batch was already stored and is acknowledged again."""

    def run_ended(self, run: pb.RunInfo) -> None:
        """Called after a run reached COMPLETED, PARTIAL, FAILED or CANCELLED."""


class ObserverGroup:
    """Calls every observer's hook and contains their exceptions."""

    def __init__(self, observers: Sequence[ControllerObserver] = ()) -> None:
        self.observers = list(observers)
        self._failures = RepeatCounter(log, "an observer hook raised")

    def notify(self, call: Callable[[ControllerObserver], None]) -> None:
        for observer in self.observers:
            try:
                call(observer)
            except Exception as exc:
                self._failures.record(f"{type(observer).__name__}: {exc!r}")
