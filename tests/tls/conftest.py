"""Fixtures for the TLS tests: real controllers on 127.0.0.1 port 0, in this process.

``start_controller`` serves a controller with the given ServerTls (None for plaintext)
and stops it after the test. ``invoke_cli`` runs an ``llmping`` command with click's
CliRunner in a worker thread, because the blocking CLI client would otherwise stall
the event loop that serves the controller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from llmping.cli.main import cli
from llmping.controller.server import Controller, ControllerConfig, serve
from llmping.tls import ServerTls, load_server_tls

# Variables from the developer's shell that would change what the commands dial.
CLEARED_ENV: dict[str, str | None] = {
    name: None
    for name in (
        "LLMPING_CONTROLLER",
        "LLMPING_TOKEN",
        "LLMPING_TLS",
        "LLMPING_TLS_CA",
        "LLMPING_TLS_CERT",
        "LLMPING_TLS_KEY",
        "LLMPING_TLS_SERVER_NAME",
        "LLMPING_CONTROLLER_TLS_CERT",
        "LLMPING_CONTROLLER_TLS_KEY",
        "LLMPING_CONTROLLER_TLS_CLIENT_CA",
    )
}

StartController = Callable[..., Awaitable[Controller]]


def run_llmping(*args: str, **env: str) -> Result:
    """Run ``llmping ARGS`` in this thread with the LLMPING_* variables cleared.

    Keyword arguments set environment variables for the command.
    """
    return CliRunner().invoke(cli, list(args), env={**CLEARED_ENV, **env})


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Return ``run_llmping`` (test modules cannot import conftest)."""
    return run_llmping


@pytest.fixture
def invoke_cli() -> Callable[..., Awaitable[Result]]:
    """Return a coroutine function that runs ``run_llmping`` in a worker thread."""

    async def invoke(*args: str, **env: str) -> Result:
        return await asyncio.to_thread(run_llmping, *args, **env)

    return invoke


@pytest.fixture
def server_tls(tls_pki: Any) -> ServerTls:
    """TLS without client certificates."""
    tls = load_server_tls(tls_pki.server_cert, tls_pki.server_key)
    assert tls is not None
    return tls


@pytest.fixture
def mutual_tls(tls_pki: Any) -> ServerTls:
    """TLS that requires a client certificate signed by the test CA."""
    tls = load_server_tls(tls_pki.server_cert, tls_pki.server_key, tls_pki.ca_cert)
    assert tls is not None
    return tls


@pytest.fixture
async def start_controller(tmp_path: Path) -> AsyncIterator[StartController]:
    started: list[Controller] = []

    async def start(
        tls: ServerTls | None, token: str = "", listen: str = "127.0.0.1:0"
    ) -> Controller:
        number = len(started)
        config = ControllerConfig(
            listen=listen,
            db_path=tmp_path / f"controller-{number}.db",
            token=token,
            tls=tls,
            shutdown_grace_s=0.5,
        )
        controller = await serve(config)
        started.append(controller)
        return controller

    yield start
    for controller in started:
        # stop() returns at once for a controller that a test stopped itself.
        await controller.stop()
