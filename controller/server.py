"""Assemble and run the controller: store, registry, runs and the gRPC server.

The server hosts AgentService, ControlService, the standard gRPC health service
(grpc.health.v1, SERVING while up) and server reflection, so grpcurl can list and call
the services without the .proto file. With ControllerConfig.tls the port serves TLS
only, and mutual TLS when the settings name a client CA.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from llmping.errors import InputError
from llmping.protocol import MAX_MESSAGE_BYTES
from llmping.tls import ServerTls
from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc

from .agent_service import AgentService
from .control_service import ControlService
from .db_lock import DatabaseLock, lock_path_for
from .observers import ControllerObserver, ObserverGroup
from .registry import AgentRegistry
from .runs import RunManager, RunPolicy
from .store import Store, StoreWorker
from .tracing import ControllerTelemetry

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["AgentService"].full_name,
    pb.DESCRIPTOR.services_by_name["ControlService"].full_name,
)
SERVER_OPTIONS = (
    # Result batches can exceed gRPC's 4 MiB default when records carry long details.
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # gRPC sets SO_REUSEPORT by default on Linux, so a second controller could bind the
    # same port and the kernel would split connections between the two at random.
    ("grpc.so_reuseport", 0),
    # Ping idle agent streams so that connections dropped by a NAT are noticed.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    # Accept agents' own keepalive pings down to every 5 s without a GOAWAY.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
)


@dataclass(frozen=True)
class ControllerConfig:
    """Settings of one controller process."""

    listen: str = "127.0.0.1:50051"
    db_path: Path = Path("llmping.db")
    # Agents must send "authorization: Bearer <token>" when set.
    token: str = ""
    agent_grace_s: float = 10.0
    heartbeat_interval_s: float = 1.0
    start_delay_s: float = 2.0
    # Also demand the token on ControlService calls (the CLI side, `llmping run --token`).
    require_token_for_control: bool = True
    shutdown_grace_s: float = 2.0
    # Added to a run's planned time before an unfinished run ends PARTIAL.
    deadline_slack_s: float = 30.0
    # HOST:PORT of the Prometheus /metrics endpoint; empty serves none.
    metrics_listen: str = ""
    # Certificate, key and optional client CA; None serves plaintext.
    tls: ServerTls | None = None


def parse_listen_address(text: str, what: str = "listen address") -> tuple[str, int]:
    """Split ``HOST:PORT`` or ``[IPv6]:PORT`` into host and port.

    Raises InputError naming ``what`` (such as "--listen value") and the text.
    """
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise InputError(
            f"invalid {what} {text!r}, use HOST:PORT such as 127.0.0.1:50051 "
            "(port 0 picks a free port)"
        )
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Controller:
    """A running controller; ``port`` is the bound port, also when 0 was requested."""

    config: ControllerConfig
    server: grpc.aio.Server
    host: str
    port: int
    worker: StoreWorker
    registry: AgentRegistry
    runs: RunManager
    health_servicer: health.aio.HealthServicer
    telemetry: ControllerTelemetry | None = None
    db_lock: DatabaseLock | None = None
    stopped: bool = field(default=False)

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()

    async def stop(self) -> None:
        """Say goodbye to agents, stop serving and close the store. Safe to call twice."""
        if self.stopped:
            return
        self.stopped = True
        log.info("controller on %s stopping", self.address)
        await self.health_servicer.enter_graceful_shutdown()
        self.registry.close_all("controller shutting down")
        await self.runs.stop()
        await self.server.stop(self.config.shutdown_grace_s)
        if self.telemetry is not None:
            await self.telemetry.stop()
        await self.worker.close()
        if self.db_lock is not None:
            self.db_lock.release()
        log.info("controller stopped")


def _bind(server: grpc.aio.Server, listen: str, tls: ServerTls | None) -> int:
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, tls.credentials())
    except RuntimeError as exc:
        raise InputError(f"cannot listen on {listen}, {_bind_failure(listen)}") from exc
    if port == 0:
        raise InputError(f"cannot listen on {listen}, {_bind_failure(listen)}")
    return port


def _bind_failure(listen: str) -> str:
    """Return why ``listen`` cannot be bound and what to do, because gRPC's error gives neither."""
    host, port = parse_listen_address(listen)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
    except OSError:
        return f"the host {host!r} does not resolve; use an IP address or a known host name"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return (
                        "the address is in use; stop the process that listens there "
                        "(another controller?) or choose another port"
                    )
                if exc.errno == errno.EADDRNOTAVAIL:
                    return "the address is not on this host; use one of its addresses or 0.0.0.0"
                if exc.errno == errno.EACCES:
                    return "permission denied; ports below 1024 need privileges, choose another"
    return "choose a free port or another address"


async def serve(
    config: ControllerConfig,
    observers: Sequence[ControllerObserver] = (),
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> Controller:
    """Open the store, start the gRPC server and return the running Controller.

    ``observers`` receive lifecycle events (metrics, tracing); ``interceptors`` wrap
    every gRPC call. Raises InputError for a listen address that cannot be bound, and
    StoreError for a database that cannot be opened or that another controller has
    locked (DatabaseInUseError).
    """
    host, _ = parse_listen_address(config.listen)
    new_files = [path for path in _database_files(config.db_path) if not path.exists()]
    db_lock = DatabaseLock(config.db_path)
    db_lock.acquire()
    try:
        return await _serve_locked(config, host, db_lock, observers, interceptors)
    except BaseException:
        # A controller that never started leaves no files behind, so a retry with
        # another port does not find a stray database. Files that existed are kept.
        _remove_files(new_files)
        db_lock.release()
        raise


def _database_files(db_path: Path) -> list[Path]:
    """Return the database, its SQLite WAL and shared-memory files and its lock file."""
    sidecars = [db_path.with_name(db_path.name + suffix) for suffix in ("-wal", "-shm")]
    return [db_path, *sidecars, lock_path_for(db_path)]


def _remove_files(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove %s after the failed start: %s", path, exc.strerror)


async def _serve_locked(
    config: ControllerConfig,
    host: str,
    db_lock: DatabaseLock,
    observers: Sequence[ControllerObserver],
    interceptors: Sequence[grpc.aio.ServerInterceptor],
) -> Controller:
    telemetry = ControllerTelemetry.from_config(config.token, config.metrics_listen)
    store = Store(config.db_path)
    worker = StoreWorker(store)
    registry = AgentRegistry(config.heartbeat_interval_s)
    group = ObserverGroup([*observers, *telemetry.observers])
    policy = RunPolicy(
        agent_grace_s=config.agent_grace_s,
        start_delay_s=config.start_delay_s,
        deadline_slack_s=config.deadline_slack_s,
    )
    runs = RunManager(worker, registry, policy, group, telemetry.tracing.start_run)

    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=list(interceptors))
    health_servicer = await _add_services(server, config, registry, runs, group)
    telemetry.add_services(server)
    try:
        port = _bind(server, config.listen, config.tls)
        # Runs left open by a previous process are reloaded before agents can connect.
        await runs.start()
        await server.start()
        await telemetry.start()
    except BaseException:
        await runs.stop()
        await telemetry.stop()
        await worker.close()
        raise

    controller = Controller(
        config, server, host, port, worker, registry, runs, health_servicer, telemetry, db_lock
    )
    log.info(
        "controller listening on %s (%s, database %s, token %s, agent grace %.0f s)",
        controller.address,
        config.tls.describe() if config.tls else "plaintext",
        config.db_path,
        "required" if config.token else "not required",
        config.agent_grace_s,
    )
    return controller


async def _add_services(
    server: grpc.aio.Server,
    config: ControllerConfig,
    registry: AgentRegistry,
    runs: RunManager,
    observers: ObserverGroup,
) -> health.aio.HealthServicer:
    pb_grpc.add_AgentServiceServicer_to_server(
        AgentService(registry, runs, config.token, observers), server
    )
    control = ControlService(
        runs, registry, config.db_path, config.token, config.require_token_for_control
    )
    pb_grpc.add_ControlServiceServicer_to_server(control, server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return health_servicer
