"""``llmping agent``: flag validation, and the real command as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llmping.cli.main import cli
from llmping.controller.server import ControllerConfig, serve

LLMPING = str(Path(sys.executable).parent / "llmping")


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(cli, ["agent", *args], env={"LLMPING_CONTROLLER": None})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--region", "tokyo", "--label", "x"],
            "error: invalid --label value 'x', expected KEY=VALUE",
        ),
        (
            ["--region", "tokyo", "--label", "=v"],
            "error: invalid --label value '=v', expected KEY=VALUE",
        ),
        (
            ["--region", "tokyo", "--label", "region=osaka"],
            "error: invalid --label value 'region=osaka', it contradicts --region tokyo",
        ),
        (
            ["--region", "tokyo", "--proxy", "ftp://proxy.example:21"],
            "error: invalid --proxy value 'ftp://proxy.example:21', expected an http://, "
            "https:// or socks5:// URL",
        ),
        (
            ["--region", "tokyo", "--proxy", "socks5://127.0.0.1:notaport"],
            "error: invalid --proxy value 'socks5://127.0.0.1:notaport'",
        ),
        (
            ["--region", "tokyo", "--controller", "localhost"],
            "error: invalid --controller value 'localhost', expected HOST:PORT",
        ),
        (
            ["--region", "tokyo", "--controller", "127.0.0.1:70000"],
            "error: invalid --controller value '127.0.0.1:70000'",
        ),
        (["--region", "two words"], "error: invalid --region value 'two words'"),
        (["--region", "tokyo", "--agent-id", "a b"], "error: invalid --agent-id value 'a b'"),
    ],
)
def test_invalid_flag_exits_2(args: list[str], message: str) -> None:
    result = run_cli(*args)

    assert result.exit_code == 2
    assert result.stderr.startswith(message), result.stderr


def test_proxy_password_not_echoed() -> None:
    result = run_cli("--region", "tokyo", "--proxy", "ftp://user:hunter2@proxy:21")

    assert result.exit_code == 2
    assert "hunter2" not in result.stderr
    assert "'ftp://***@proxy:21'" in result.stderr


def test_region_is_required() -> None:
    result = run_cli()

    assert result.exit_code == 2
    assert "--region" in result.stderr


def test_processes_must_be_positive() -> None:
    result = run_cli("--region", "tokyo", "--processes", "0")

    assert result.exit_code == 2


@contextlib.asynccontextmanager
async def agent_process(log_path: Path, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``llmping agent`` with stderr in ``log_path``.

    A file, not a pipe, takes stderr because asyncio's Process.wait() also waits until
    every process holding the pipe has closed it, and worker processes inherit it.
    """
    env = {**os.environ, "OTEL_SDK_DISABLED": "true"}
    env.pop("LLMPING_CONTROLLER", None)
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            LLMPING,
            "agent",
            *args,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log_file,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), 5)


async def test_agent_process_registers_and_stops_on_sigterm(
    peer: Any, waiter: Any, tmp_path: Path
) -> None:
    log_path = tmp_path / "agent.log"
    args = ["--controller", peer.address, "--region", "tokyo", "--label", "isp=telecom"]
    async with agent_process(log_path, *args, "--agent-id", "cli-agent") as process:
        await waiter(lambda: peer.controller.of_kind("hello"), timeout_s=15, what="Hello")

        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), 10)

    stderr = log_path.read_text()
    hello = peer.controller.of_kind("hello")[0]
    assert hello.agent_id == "cli-agent"
    assert dict(hello.labels) == {"region": "tokyo", "isp": "telecom"}
    assert returncode == 0
    assert "agent cli-agent starting" in stderr
    assert "received SIGTERM; stopping" in stderr
    assert "agent cli-agent stopped" in stderr


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_agent_processes_flag_starts_workers(
    peer: Any, waiter: Any, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    log_path = tmp_path / "agent.log"
    args = ["--controller", peer.address, "--region", "tokyo", "--agent-id", "multi"]
    async with agent_process(log_path, *args, "--processes", "2") as process:
        await waiter(
            lambda: len(peer.controller.of_kind("hello")) == 2, timeout_s=20, what="two Hellos"
        )

        process.send_signal(stop_signal)
        returncode = await asyncio.wait_for(process.wait(), 15)

    assert sorted(h.agent_id for h in peer.controller.of_kind("hello")) == ["multi-p0", "multi-p1"]
    assert returncode == 0, log_path.read_text()
    # Both workers ended their streams before the parent exited.
    assert all(stream.closed for stream in peer.controller.streams)
    assert log_path.read_text().count("stopped") == 2


async def test_duplicate_agent_id_exits_1(tmp_path: Path, waiter: Any) -> None:
    controller = await serve(
        ControllerConfig(listen="127.0.0.1:0", db_path=tmp_path / "llmping.db")
    )
    args = ["--controller", controller.address, "--region", "t", "--agent-id", "dup"]
    try:
        async with agent_process(tmp_path / "first.log", *args) as first:
            await waiter(
                lambda: [s.agent_id for s in controller.registry.sessions()] == ["dup"],
                timeout_s=15,
                what="the first agent",
            )
            async with agent_process(tmp_path / "second.log", *args) as second:
                returncode = await asyncio.wait_for(first.wait(), 20)
                assert second.returncode is None
    finally:
        await controller.stop()

    assert returncode == 1
    assert "give each agent a unique --agent-id" in (tmp_path / "first.log").read_text()
