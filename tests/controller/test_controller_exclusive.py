"""One controller per port and per database file, and no open port without a token."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmping.cli.controller_cmd import check_exposure, controller
from llmping.controller.db_lock import DatabaseInUseError
from llmping.controller.server import ControllerConfig, serve
from llmping.errors import InputError

COMMAND = [sys.executable, "-c", "from llmping.cli.controller_cmd import controller; controller()"]


async def test_second_controller_same_port_fails(harness, tmp_path):
    first = await harness.start()

    with pytest.raises(InputError) as caught:
        await serve(ControllerConfig(listen=first.address, db_path=tmp_path / "other.db"))

    assert str(caught.value).startswith(f"cannot listen on {first.address}, the address is in use")


def lock_file_pid(db_path: Path) -> str:
    return Path(f"{db_path}.lock").read_text().strip()


async def test_second_controller_same_database_fails(harness):
    first = await harness.start()

    with pytest.raises(DatabaseInUseError) as caught:
        await serve(ControllerConfig(listen="127.0.0.1:0", db_path=harness.db_path))

    assert str(caught.value).startswith(
        f"database {harness.db_path} is in use by another controller (pid {os.getpid()})"
    )
    assert lock_file_pid(harness.db_path) == str(os.getpid())
    await first.stop()
    # The lock goes with the controller that held it.
    second = await harness.start()
    assert second.port > 0


@pytest.fixture
def running_controller(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    db_path = tmp_path / "first.db"
    process = subprocess.Popen(
        [*COMMAND, "--listen", "127.0.0.1:0", "--db", str(db_path), "--log-level", "ERROR"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    try:
        line = process.stdout.readline()
        match = re.fullmatch(r"llmping controller listening on (127\.0\.0\.1:\d+)\n", line)
        assert match, line
        yield process, match.group(1), db_path
    finally:
        process.terminate()
        process.wait(timeout=15)


def run_second(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=30)


def test_cli_port_in_use_exits_2(running_controller, tmp_path):
    _, address, _ = running_controller

    result = run_second("--listen", address, "--db", str(tmp_path / "second.db"))

    assert result.returncode == 2, result.stderr
    assert f"error: cannot listen on {address}, the address is in use" in result.stderr


def test_cli_database_in_use_exits_2(running_controller):
    process, _, db_path = running_controller

    result = run_second("--listen", "127.0.0.1:0", "--db", str(db_path))

    assert result.returncode == 2, result.stderr
    expected = f"error: database {db_path} is in use by another controller (pid {process.pid})"
    assert expected in result.stderr


@pytest.mark.parametrize("listen", ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051"])
def test_cli_open_listen_needs_token(tmp_path, listen):
    result = CliRunner().invoke(
        controller,
        ["--listen", listen, "--db", str(tmp_path / "x.db")],
        env={"LLMPING_TOKEN": None},
    )

    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --listen {listen} accepts connections from other")
    assert "set --token (or LLMPING_TOKEN)" in result.stderr
    assert "--insecure-no-token" in result.stderr


@pytest.mark.parametrize(
    ("token", "insecure"), [("s3cret-token", False), ("", True)], ids=["token", "insecure"]
)
def test_open_listen_warns_without_tls(caplog, token, insecure):
    caplog.set_level(logging.WARNING)

    check_exposure("0.0.0.0:50051", token, insecure)

    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    assert "without TLS" in warning.getMessage()


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.8.0.1:50051", "[::1]:0", "localhost:0"])
def test_loopback_listen_needs_no_token(caplog, listen):
    caplog.set_level(logging.WARNING)

    check_exposure(listen, "", False)

    assert caplog.records == []
