"""The ``llmping controller`` command: flag errors and a real process lifecycle."""

from __future__ import annotations

import asyncio
import re
import signal
import sys

import grpc
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmping.cli.controller_cmd import controller

# Runs the command module directly, so this test does not depend on other commands.
COMMAND = [sys.executable, "-c", "from llmping.cli.controller_cmd import controller; controller()"]


def test_controller_cli_bad_listen(tmp_path):
    result = CliRunner().invoke(
        controller, ["--listen", "localhost", "--db", str(tmp_path / "x.db")]
    )

    assert result.exit_code == 2
    assert "error: invalid --listen value 'localhost'" in result.stderr
    assert "HOST:PORT" in result.stderr


def test_controller_cli_bad_port(tmp_path):
    result = CliRunner().invoke(
        controller, ["--listen", "127.0.0.1:99999", "--db", str(tmp_path / "x.db")]
    )

    assert result.exit_code == 2
    assert "127.0.0.1:99999" in result.stderr


def test_controller_cli_missing_db_directory(tmp_path):
    db_path = tmp_path / "missing" / "llmping.db"

    result = CliRunner().invoke(controller, ["--listen", "127.0.0.1:0", "--db", str(db_path)])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid --db value")
    assert "does not exist" in result.stderr


def test_controller_cli_db_is_directory(tmp_path):
    result = CliRunner().invoke(controller, ["--listen", "127.0.0.1:0", "--db", str(tmp_path)])

    assert result.exit_code == 2
    assert "is a directory" in result.stderr


async def test_controller_cli_serves_until_sigterm(tmp_path):
    db_path = tmp_path / "cli.db"
    process = await asyncio.create_subprocess_exec(
        *COMMAND,
        "--listen",
        "127.0.0.1:0",
        "--db",
        str(db_path),
        "--log-level",
        "WARNING",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), 15)).decode()
        match = re.fullmatch(r"llmping controller listening on 127\.0\.0\.1:(\d+)\n", line)
        assert match, line
        async with grpc.aio.insecure_channel(f"127.0.0.1:{match.group(1)}") as channel:
            health = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()
            )
        process.send_signal(signal.SIGTERM)
        return_code = await asyncio.wait_for(process.wait(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert int(match.group(1)) > 0
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert return_code == 0
    assert db_path.exists()
