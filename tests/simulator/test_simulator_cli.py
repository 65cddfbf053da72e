"""``llmping simulate`` and ``llmping simulate proxy``: flags, errors and real processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys

import aiohttp
from click.testing import CliRunner

from llmping.cli.main import cli
from llmping.simulator import default_profiles

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def test_list_prints_builtin_profiles():
    result = CliRunner().invoke(cli, ["simulate", "--list"])
    assert result.exit_code == 0
    for profile in default_profiles():
        assert f"{profile.name}:" in result.output
    assert "rate_limit_per_s=8" in result.output


def test_list_hides_api_key(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text(
        "providers:\n  - {name: a, models: [m], ttft_ms: 1, tokens_per_s: 5, api_key: sk-hidden}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["simulate", "--config", str(config), "--list"])
    assert result.exit_code == 0
    assert "api_key=required" in result.output
    assert "sk-hidden" not in result.output


def test_invalid_config_exit_2_names_field(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text(
        "providers:\n  - {name: a, models: [m], ttft_ms: soon, tokens_per_s: 5}\n", encoding="utf-8"
    )
    result = CliRunner().invoke(cli, ["simulate", "--config", str(config)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "providers[0].ttft_ms" in result.stderr


def test_missing_config_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["simulate", "--config", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2
    assert "cannot read simulator config" in result.stderr


def test_invalid_listen_exit_2():
    result = CliRunner().invoke(cli, ["simulate", "--listen", "localhost"])
    assert result.exit_code == 2
    assert "invalid --listen address" in result.stderr


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from llmping.cli.main import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    first_line = await asyncio.wait_for(process.stdout.readline(), timeout=15.0)
    match = LISTENING.search(first_line.decode())
    assert match, first_line
    return process, match.group(1)


async def _stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), timeout=10.0)


async def test_simulator_and_proxy_processes():
    simulator, simulator_url = await _start("simulate", "--listen", "127.0.0.1:0")
    proxy, proxy_url = await _start(
        "simulate", "proxy", "--listen", "127.0.0.1:0", "--delay-ms", "5"
    )
    try:
        assert simulator.stdout is not None
        provider_line = (await simulator.stdout.readline()).decode()
        assert f"{simulator_url}/fast-relay/v1" in provider_line

        async with aiohttp.ClientSession() as session:
            url = f"{simulator_url}/official/v1/models"
            async with session.get(url, proxy=proxy_url) as response:
                assert response.status == 200
                listing = await response.json()
        assert "gpt-4o" in [model["id"] for model in listing["data"]]
    finally:
        simulator_code = await _stop(simulator)
        proxy_code = await _stop(proxy)
    assert simulator_code == 0
    assert proxy_code == 0
