"""The container health check script: argument parsing and its verdict for each role."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from llmping.v1 import llmping_pb2 as pb
from llmping.v1 import llmping_pb2_grpc as pb_grpc


@pytest.fixture(scope="module")
def healthcheck(repo: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "llmping_healthcheck", repo / "docker" / "healthcheck.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_after_console_script(healthcheck: ModuleType) -> None:
    cmdline = b"/opt/llmping/bin/python\0/opt/llmping/bin/llmping\0agent\0--region\0tokyo\0"
    assert healthcheck.llmping_arguments(cmdline) == ["agent", "--region", "tokyo"]
    assert healthcheck.llmping_arguments(b"llmping\0controller\0") == ["controller"]
    assert healthcheck.llmping_arguments(b"/bin/sh\0-c\0sleep 1\0") == []


def test_option_forms(healthcheck: ModuleType) -> None:
    arguments = ["controller", "--listen", "0.0.0.0:50051", "--db=/data/x.db"]
    assert healthcheck.option(arguments, "--listen") == "0.0.0.0:50051"
    assert healthcheck.option(arguments, "--db") == "/data/x.db"
    assert healthcheck.option(arguments, "--token") is None
    assert healthcheck.local_address("0.0.0.0:50051") == "127.0.0.1:50051"
    assert healthcheck.local_address("[::]:8000") == "127.0.0.1:8000"
    assert healthcheck.local_address("10.1.2.3:9") == "10.1.2.3:9"


def _run(repo: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(repo / "docker" / "healthcheck.py"), *arguments],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_unhealthy_when_nothing_listens(repo: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    for role, flag in (
        ("controller", "--listen"),
        ("simulate", "--listen"),
        ("agent", "--controller"),
    ):
        result = _run(repo, role, flag, closed)
        assert result.returncode == 1, role
        assert result.stderr.startswith("unhealthy: "), result.stderr


def test_simulator_port_open_is_healthy(repo: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        result = _run(repo, "simulate", "--listen", f"127.0.0.1:{server.getsockname()[1]}")
    assert result.returncode == 0, result.stderr


def test_other_roles_are_healthy(repo: Path) -> None:
    assert _run(repo, "run", "plan.yaml").returncode == 0


class OneAgentControl(pb_grpc.ControlServiceServicer):
    """ListAgents returns one agent on this host, as the controller would once it connected."""

    def ListAgents(self, request: pb.ListAgentsRequest, context: Any) -> pb.ListAgentsResponse:
        agent = pb.AgentInfo(agent_id="healthy", hostname=socket.gethostname())
        return pb.ListAgentsResponse(agents=[agent])


@contextlib.contextmanager
def tls_server(pki: Any, client_ca: bool) -> Iterator[str]:
    """Serve the health service and OneAgentControl over TLS on a free loopback port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    pb_grpc.add_ControlServiceServicer_to_server(OneAgentControl(), server)
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca_cert.read_bytes() if client_ca else None,
        require_client_auth=client_ca,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def test_tls_controller_checked_by_handshake(repo: Path, tls_pki: Any) -> None:
    with tls_server(tls_pki, client_ca=True) as address:
        result = _run(repo, "controller", "--listen", address, "--tls-cert", "any.crt")
    assert result.returncode == 0, result.stderr


def test_plaintext_port_fails_tls_controller_check(repo: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        # The listener never replies to the ClientHello, so the check times out.
        result = _run(repo, "controller", "--listen", address, "--tls-cert", "any.crt")
    assert result.returncode == 1
    assert "does not complete a TLS handshake" in result.stderr


def test_agent_check_over_mutual_tls(repo: Path, tls_pki: Any) -> None:
    client_flags = ["--tls-ca", str(tls_pki.ca_cert)]
    client_flags += ["--tls-cert", str(tls_pki.client_cert), "--tls-key", str(tls_pki.client_key)]
    with tls_server(tls_pki, client_ca=True) as address:
        with_certificate = _run(repo, "agent", "--controller", address, *client_flags)
        without_certificate = _run(
            repo, "agent", "--controller", address, "--tls-ca", str(tls_pki.ca_cert)
        )
    assert with_certificate.returncode == 0, with_certificate.stderr
    assert without_certificate.returncode == 1
    assert without_certificate.stderr.startswith("unhealthy: agent health check failed")
