"""Several agent processes on one host (``llmping agent --processes N``).

One event loop parses responses on one core. To use more cores, the parent starts N
worker processes, and each one is a full agent with its own controller stream, its
own id ``<agent-id>-p<i>`` and the same labels. The controller then splits the target's
load over them like over any agents of the target. The parent sends nothing itself.
On SIGINT or SIGTERM it sends SIGTERM to the workers and waits for them.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from multiprocessing.process import BaseProcess
from types import FrameType

from llmping.agent.app import AgentConfig, serve_agent
from llmping.agent.connection import AgentReplacedError
from llmping.errors import InputError
from llmping.logs import configure_logging

log = logging.getLogger(__name__)

# A worker that has not stopped this long after SIGTERM is killed.
STOP_TIMEOUT_S = 20.0


def worker_main(config: AgentConfig, log_level: str) -> None:
    """Entry point of one worker process (spawned, so logging is configured again)."""
    # A process group of its own keeps a terminal's Ctrl-C away from the worker, so it
    # gets exactly one signal, the SIGTERM that the parent forwards.
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    configure_logging(log_level)
    try:
        serve_agent(config)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except AgentReplacedError:
        # The connection has logged the error with the fix.
        sys.exit(1)


def serve_agent_processes(config: AgentConfig, count: int, log_level: str) -> int:
    """Run ``count`` worker agents until they stop; return 0 if all exited with 0, else 1."""
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(
            target=worker_main,
            args=(replace(config, agent_id=f"{config.agent_id}-p{index}"), log_level),
            name=f"llmping-agent-p{index}",
        )
        for index in range(count)
    ]
    stop_requested_at: list[float] = []

    def forward_stop(signal_number: int, frame: FrameType | None) -> None:
        if not stop_requested_at:
            stop_requested_at.append(time.monotonic())
            name = signal.Signals(signal_number).name
            log.info("received %s; stopping %d agent processes", name, count)
        _terminate_running(workers)

    signal.signal(signal.SIGTERM, forward_stop)
    signal.signal(signal.SIGINT, forward_stop)
    for worker in workers:
        worker.start()
    log.info("started %d agent processes %s-p0..p%d", count, config.agent_id, count - 1)
    if stop_requested_at:
        # The signal came while workers were starting, so the later ones missed it.
        _terminate_running(workers)

    while any(worker.is_alive() for worker in workers):
        for worker in workers:
            worker.join(timeout=0.5)
        if stop_requested_at and time.monotonic() - stop_requested_at[0] > STOP_TIMEOUT_S:
            _kill_running(workers)
    return 0 if all(worker.exitcode == 0 for worker in workers) else 1


def _terminate_running(workers: Sequence[BaseProcess]) -> None:
    for worker in workers:
        if worker.pid is not None and worker.is_alive():
            worker.terminate()


def _kill_running(workers: Sequence[BaseProcess]) -> None:
    for worker in workers:
        if worker.pid is not None and worker.is_alive():
            log.warning(
                "agent process %s did not stop within %.0f s of SIGTERM; killing it",
                worker.name,
                STOP_TIMEOUT_S,
            )
            worker.kill()
