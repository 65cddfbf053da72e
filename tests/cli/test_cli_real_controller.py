"""CLI commands against a real `llmping controller` subprocess started with a token.

NOTE: the controller checks the token of agents only, so a wrong CLI token is tested
against a scripted server in test_cli_client.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmping.cli import run_cmds

TOKEN = "cli-test-token"
PLAN = """\
name: nowhere
providers:
  - name: sim
    base_url: http://127.0.0.1:9/v1
    model: gpt-4o
request:
  prompt: hi
load:
  concurrency: 1
  request_count: 1
targets:
  - atlantis
"""


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a controller on a free port and yield its HOST:PORT."""
    workdir = tmp_path_factory.mktemp("controller")
    env = {k: v for k, v in os.environ.items() if k != "LLMPING_TOKEN"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-P",
            "-c",
            "from llmping.cli.main import main; main()",
            "controller",
            "--listen",
            "127.0.0.1:0",
            "--db",
            str(workdir / "c.db"),
            "--token",
            TOKEN,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the address is printed or it exits
        match = re.search(r"listening on (\S+)", line)
        assert match, f"controller printed {line!r}"
        yield match.group(1)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def invoke(*args: str) -> tuple[int, str, str]:
    commands = {command.name: command for command in run_cmds.COMMANDS}
    result = CliRunner().invoke(commands[args[0]], list(args[1:]))
    return result.exit_code, result.stdout, result.stderr


def test_agents_with_token_lists_none(controller: str) -> None:
    code, out, err = invoke("agents", "--controller", controller, "--token", TOKEN)
    assert code == 0, err
    assert "0 agents connected" in out


def test_run_without_matching_agent_exits_2(controller: str, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(PLAN, encoding="utf-8")
    code, _, err = invoke("run", str(plan_file), "--controller", controller, "--token", TOKEN)
    assert code == 2
    assert "target atlantis" in err
    assert "matches no connected agent" in err


def test_report_unknown_run_exits_2(controller: str) -> None:
    code, _, err = invoke("report", "no-such-run", "--controller", controller, "--token", TOKEN)
    assert code == 2
    assert "no-such-run" in err


def test_runs_empty_list(controller: str) -> None:
    code, out, err = invoke("runs", "--controller", controller, "--token", TOKEN)
    assert code == 0, err
    assert "0 runs" in out
