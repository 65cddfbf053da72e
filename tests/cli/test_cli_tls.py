"""A whole run over mutual TLS, with every role as its own process.

The simulator, a controller that requires client certificates and a token, and an
agent with two worker processes run as `llmping` subprocesses on 127.0.0.1. The
workers are spawned from the parent's configuration, so their registering shows that
the TLS settings reach them. `llmping run` then submits a plan over mutual TLS and
must print the report of a completed run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from llmping.cli.client import ClientConfig, ControlClient
from llmping.errors import LlmpingError
from llmping.tls import ClientTlsOptions

TOKEN = "tls-e2e-token"
REQUEST_COUNT = 4
CONNECT_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 60.0


def write_plan(folder: Path, simulator_url: str) -> Path:
    plan = {
        "name": "mutual-tls",
        "providers": [
            {
                "name": "fast-relay",
                "kind": "openai_compatible",
                "base_url": f"{simulator_url}/fast-relay/v1",
                "model": "gpt-4o",
            }
        ],
        "request": {"prompt": "hi", "max_tokens": 20},
        "load": {"mode": "closed", "concurrency": 2, "request_count": REQUEST_COUNT},
        "targets": ["tokyo"],
    }
    path = folder / "mutual-tls.yaml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    return path


def connected_agents(client: ControlClient) -> set[str]:
    try:
        return {agent.agent_id for agent in client.list_agents()}
    except LlmpingError:
        return set()


def test_run_over_mutual_tls(processes: Any, tls_pki: Any) -> None:
    client_flags = ["--tls-ca", str(tls_pki.ca_cert)]
    client_flags += ["--tls-cert", str(tls_pki.client_cert), "--tls-key", str(tls_pki.client_key)]
    server_flags = ["--tls-cert", str(tls_pki.server_cert), "--tls-key", str(tls_pki.server_key)]
    server_flags += ["--tls-client-ca", str(tls_pki.ca_cert), "--token", TOKEN]
    simulator_url = processes.simulator()
    _, address = processes.controller(processes.folder / "tls.db", extra_args=server_flags)
    agent_args = ["agent", "--controller", address, "--region", "tokyo"]
    agent_args += ["--agent-id", "tls-tokyo", "--processes", "2", "--token", TOKEN]
    processes.start("agent-tokyo", *agent_args, *client_flags)

    tls = ClientTlsOptions(
        ca_path=tls_pki.ca_cert, cert_path=tls_pki.client_cert, key_path=tls_pki.client_key
    ).load()
    expected = {"tls-tokyo-p0", "tls-tokyo-p1"}
    with ControlClient(ClientConfig(address, TOKEN, tls)) as client:
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while connected_agents(client) != expected:
            assert time.monotonic() < deadline, f"workers did not connect\n{processes.describe()}"
            time.sleep(0.1)

    plan_path = write_plan(processes.folder, simulator_url)
    run_args = ["run", str(plan_path), "--format", "json", "--no-progress"]
    run_args += ["--controller", address, "--token", TOKEN]
    run = processes.start("run", *run_args, *client_flags)
    exit_code = run.wait(RUN_TIMEOUT_S)

    assert exit_code == 0, processes.describe()
    report = json.loads(run.stdout())
    assert report["run"]["state"] == "COMPLETED"
    (summary,) = report["summaries"]
    assert summary["target"] == "tokyo"
    assert summary["requests"] == REQUEST_COUNT
    assert summary.get("errors", 0) == 0
