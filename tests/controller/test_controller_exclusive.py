"""One controller per port and per database file, and no open port without a token."""

from __future__ import annotations

import logging
import os
import re
import socket
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


@pytest.fixture
def busy_address() -> Iterator[str]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def file_names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


async def test_failed_start_removes_new_files(tmp_path, busy_address):
    db_path = tmp_path / "new.db"

    with pytest.raises(InputError):
        await serve(ControllerConfig(listen=busy_address, db_path=db_path))

    assert file_names(tmp_path) == []


async def test_failed_start_keeps_existing_database(tmp_path, busy_address):
    db_path = tmp_path / "kept.db"
    first = await serve(ControllerConfig(listen="127.0.0.1:0", db_path=db_path))
    await first.stop()
    size_before = db_path.stat().st_size

    with pytest.raises(InputError):
        await serve(ControllerConfig(listen=busy_address, db_path=db_path))

    assert db_path.stat().st_size == size_before
    assert size_before > 0
    assert file_names(tmp_path) == ["kept.db", "kept.db.lock"]


# The first characters of a gRPC C-core log line, such as
# "E1204 23:35:36.781686    1957 add_port.cc:83] Failed to add port".
C_CORE_LOG_LINE = re.compile(r"^[DIWEF]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\]", re.MULTILINE)
MAIN_COMMAND = [sys.executable, "-m", "llmping.cli.main"]


def run_main_controller(
    address: str, db_path: Path, grpc_verbosity: str | None
) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "GRPC_VERBOSITY"}
    if grpc_verbosity is not None:
        env["GRPC_VERBOSITY"] = grpc_verbosity
    return subprocess.run(
        [*MAIN_COMMAND, "controller", "--listen", address, "--db", str(db_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_cli_port_in_use_hides_grpc_log(tmp_path, busy_address):
    db_path = tmp_path / "second.db"

    result = run_main_controller(busy_address, db_path, None)

    assert result.returncode == 2, result.stderr
    assert f"error: cannot listen on {busy_address}, the address is in use" in result.stderr
    assert C_CORE_LOG_LINE.search(result.stderr) is None, result.stderr
    assert not db_path.exists()
    assert not Path(f"{db_path}.lock").exists()


def test_cli_grpc_verbosity_set_shows_grpc_log(tmp_path, busy_address):
    result = run_main_controller(busy_address, tmp_path / "second.db", "ERROR")

    assert result.returncode == 2, result.stderr
    assert C_CORE_LOG_LINE.search(result.stderr) is not None, result.stderr
