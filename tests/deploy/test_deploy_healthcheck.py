"""The container health check script: argument parsing and its verdict for each role."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest


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
