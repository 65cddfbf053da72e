"""The agent process: configuration, the Agent object and its entry points.

``Agent`` handles the controller's messages (the connection calls it) and starts one
AssignmentRunner per Assignment. It stops cleanly: running assignments are cancelled
and their CANCELLED updates and last batches are sent. Then the agent waits up to
``shutdown_grace_s`` for the controller to ack them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from llmping import __version__
from llmping.agent.batches import Outbox
from llmping.agent.clock import ClockEstimator
from llmping.agent.connection import Backoff, ConnectionConfig, ControllerConnection
from llmping.agent.diagnosis import HealthMonitor
from llmping.agent.gc_tuning import tune_gc
from llmping.agent.open_files import raise_open_file_limit
from llmping.agent.runner import (
    AssignmentRunner,
    ExecutorFactory,
    RunnerContext,
    default_executor_factory,
)
from llmping.agent.tracing import AgentTracing
from llmping.tls import ClientTls
from llmping.v1 import llmping_pb2 as pb

log = logging.getLogger(__name__)

DEFAULT_CONTROLLER = "127.0.0.1:50051"
# Finished assignment ids remembered, so a repeated Assignment is not run twice.
MAX_REMEMBERED_ASSIGNMENTS = 1000


def default_agent_id() -> str:
    """Return ``<hostname>-<pid>-<4 random hex digits>``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass
class AgentConfig:
    """Everything one agent process needs to know."""

    controller: str = DEFAULT_CONTROLLER
    region: str = ""
    # Extra labels; region=<region> is added to them.
    labels: dict[str, str] = field(default_factory=dict)
    agent_id: str = field(default_factory=default_agent_id)
    # Used for providers without their own proxy_url.
    proxy_url: str | None = None
    # Kept out of repr() so that a logged config never shows it.
    token: str | None = field(default=None, repr=False)
    # TLS to the controller, also for spans sent through it; None dials in plaintext.
    tls: ClientTls | None = None
    # Advertised in Hello; 0 means no limit is advertised. The agent does not enforce it.
    max_concurrency: int = 0
    backoff: Backoff = field(default_factory=Backoff)
    shutdown_grace_s: float = 5.0
    executor_factory: ExecutorFactory = default_executor_factory
    # When False, no spans are exported, whatever the OTEL_* variables set.
    tracing: bool = True

    def all_labels(self) -> dict[str, str]:
        """Return the labels sent in Hello, including region=<region>."""
        labels = dict(self.labels)
        if self.region:
            labels["region"] = self.region
        return labels


class Agent:
    """One agent: the controller connection, the running assignments and their shared state."""

    def __init__(
        self,
        config: AgentConfig,
        tracing: AgentTracing | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.clock = ClockEstimator()
        self.health = HealthMonitor()
        self.outbox = Outbox()
        self.connection = ControllerConnection(
            ConnectionConfig(
                config.controller, config.token, config.agent_id, config.backoff, tls=config.tls
            ),
            self,
            self.clock,
            self.outbox,
        )
        self.runners: dict[str, AssignmentRunner] = {}
        self._runner_tasks: dict[str, asyncio.Task[None]] = {}
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._stopping = False
        self._context = RunnerContext(
            agent_id=config.agent_id,
            link=self.connection,
            clock=self.clock,
            health=self.health,
            env=os.environ if env is None else env,
            proxy_url=config.proxy_url,
            executor_factory=config.executor_factory,
            tracing=tracing,
        )

    # -- ControllerHandler ------------------------------------------------------------

    def hello(self) -> pb.Hello:
        """Build the Hello for a new stream, with the active assignment ids."""
        active = set(self.runners) | self.outbox.assignment_ids()
        return pb.Hello(
            agent_id=self.config.agent_id,
            labels=self.config.all_labels(),
            version=__version__,
            capacity=pb.AgentCapacity(
                max_concurrency=self.config.max_concurrency,
                cpu_count=os.cpu_count() or 1,
                worker_processes=1,
            ),
            hostname=socket.gethostname(),
            active_assignment_ids=sorted(active),
        )

    def on_welcome(self, welcome: pb.Welcome) -> None:
        """Cancel the assignments the controller no longer wants."""
        for assignment_id in welcome.cancelled_assignment_ids:
            runner = self.runners.get(assignment_id)
            if runner is not None:
                log.info("controller no longer wants assignment %s; cancelling it", assignment_id)
                runner.cancel("the controller no longer wants this assignment")

    def on_assignment(self, assignment: pb.Assignment) -> None:
        """Start a runner for a new assignment; ignore one that is known already."""
        assignment_id = assignment.assignment_id
        if assignment_id in self.runners or assignment_id in self._finished:
            log.info("assignment %s received again; already handled", assignment_id)
            return
        if self._stopping:
            self.connection.send_update(
                pb.AssignmentUpdate(
                    assignment_id=assignment_id,
                    state=pb.AssignmentUpdate.FAILED,
                    message=f"agent {self.config.agent_id} is shutting down",
                )
            )
            return
        runner = AssignmentRunner(assignment, self._context)
        self.runners[assignment_id] = runner
        task = asyncio.create_task(runner.run(), name=f"assignment-{assignment_id}")
        self._runner_tasks[assignment_id] = task
        task.add_done_callback(lambda _: self._forget_runner(assignment_id))

    def on_cancel(self, cancel: pb.CancelAssignment) -> None:
        """Cancel a running assignment."""
        runner = self.runners.get(cancel.assignment_id)
        if runner is None:
            log.debug("cancel for assignment %s, which is not running", cancel.assignment_id)
            return
        log.info(
            "assignment %s cancelled by the controller: %s", cancel.assignment_id, cancel.reason
        )
        runner.cancel(cancel.reason)

    def agent_load(self) -> pb.AgentLoad:
        """Return the agent's current load for a heartbeat."""
        return pb.AgentLoad(
            requests_in_flight=sum(runner.in_flight for runner in self.runners.values()),
            event_loop_lag_ms=self.health.loop_lag_ms,
            cpu_percent=self.health.cpu_percent,
        )

    def _forget_runner(self, assignment_id: str) -> None:
        self.runners.pop(assignment_id, None)
        self._runner_tasks.pop(assignment_id, None)
        self._finished[assignment_id] = None
        while len(self._finished) > MAX_REMEMBERED_ASSIGNMENTS:
            self._finished.popitem(last=False)

    # -- lifecycle --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Serve the controller until ``stop`` is set (or forever), then shut down.

        Raises AgentReplacedError when another agent with the same agent id connected.
        """
        log.info(
            "agent %s starting: controller %s over %s, labels %s",
            self.config.agent_id,
            self.config.controller,
            self.config.tls.describe() if self.config.tls else "plaintext",
            ",".join(f"{k}={v}" for k, v in sorted(self.config.all_labels().items())),
        )
        # Every request in flight uses a socket. The default in-flight cap of open-loop
        # plans is derived from the limit raised here.
        raise_open_file_limit()
        connection = asyncio.create_task(self.connection.run(), name="agent-connection")
        background = [asyncio.create_task(self.health.run(), name="agent-health"), connection]
        stop_wait = asyncio.create_task((stop or asyncio.Event()).wait(), name="agent-stop")
        try:
            await asyncio.wait({stop_wait, connection}, return_when=asyncio.FIRST_COMPLETED)
            if connection.done():
                # The connection ends by itself only with AgentReplacedError, and then
                # nothing can reach the controller any more: re-raise it at once.
                connection.result()
            await self.shutdown()
            await self.connection.close()
        finally:
            stop_wait.cancel()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            runner_tasks = list(self._runner_tasks.values())
            for task in runner_tasks:
                task.cancel()
            await asyncio.gather(*runner_tasks, return_exceptions=True)
            log.info("agent %s stopped", self.config.agent_id)

    async def shutdown(self) -> None:
        """Cancel running assignments and wait up to the grace period for acks."""
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_grace_s
        log.info(
            "agent %s stopping: cancelling %d running assignments",
            self.config.agent_id,
            len(self.runners),
        )
        for runner in list(self.runners.values()):
            runner.cancel(f"agent {self.config.agent_id} is shutting down")
        if self._runner_tasks:
            await asyncio.wait(
                list(self._runner_tasks.values()), timeout=max(0.0, deadline - loop.time())
            )

        self.connection.request_heartbeat()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.outbox.wait_empty(), max(0.0, deadline - loop.time()))
        if self.outbox.batch_count:
            log.warning(
                "agent %s stopping with %d records in %d batches not acked by the controller",
                self.config.agent_id,
                self.outbox.record_count,
                self.outbox.batch_count,
            )


async def run_agent(config: AgentConfig, stop: asyncio.Event | None = None) -> None:
    """Run one agent until ``stop`` is set (or forever).

    Raises llmping.errors.InputError when the tracing variables are invalid.
    """
    tracing = (
        AgentTracing.from_env(
            config.agent_id, config.all_labels(), config.controller, config.token, config.tls
        )
        if config.tracing
        else None
    )
    try:
        await Agent(config, tracing).run(stop)
    finally:
        if tracing is not None:
            # shutdown() exports the last spans and blocks, so keep it off the loop.
            await asyncio.get_running_loop().run_in_executor(None, tracing.shutdown)


def serve_agent(config: AgentConfig) -> None:
    """Run one agent in this process until SIGINT or SIGTERM, on uvloop when installed."""
    tune_gc()
    try:
        import uvloop
    except ImportError:
        asyncio.run(_serve_until_signal(config))
    else:
        uvloop.run(_serve_until_signal(config))


async def _serve_until_signal(config: AgentConfig) -> None:
    """Run the agent; the first signal stops it cleanly, a second one at once."""
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        if stop.is_set():
            log.warning("agent %s received %s again; stopping now", config.agent_id, name)
            if main_task is not None:
                main_task.cancel()
            return
        log.info("agent %s received %s; stopping", config.agent_id, name)
        stop.set()

    for signal_number in (signal.SIGINT, signal.SIGTERM):
        # Windows event loops have no add_signal_handler; Ctrl+C still raises there.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal_number, on_signal, signal_number.name)
    with contextlib.suppress(asyncio.CancelledError):
        await run_agent(config, stop)
