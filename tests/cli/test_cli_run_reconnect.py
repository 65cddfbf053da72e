"""`llmping run` keeps following its run while the controller restarts.

A real simulator, controller and agent run as subprocesses. The controller is killed
right after the run is submitted, then started again on the same address and database.
The CLI must reconnect and print the report of the completed run.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import yaml

RUN_TIMEOUT_S = 40.0
SUBMITTED = re.compile(r"run (\S+) submitted to")
LOST = re.compile(r"lost the controller at \S+, retrying")


def write_plan(folder: Path, simulator_url: str) -> Path:
    plan = {
        "name": "restart",
        "providers": [
            {
                "name": "fast-relay",
                "kind": "openai_compatible",
                "base_url": f"{simulator_url}/fast-relay/v1",
                "model": "gpt-4o",
            }
        ],
        "request": {"prompt": "hi", "max_tokens": 20},
        "load": {"mode": "closed", "concurrency": 1, "duration_s": 3},
        "targets": ["local"],
    }
    path = folder / "restart.yaml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    return path


def test_run_follows_through_controller_restart(processes: Any) -> None:
    simulator_url = processes.simulator()
    db_path = processes.folder / "restart.db"
    controller, address = processes.controller(db_path)
    processes.agent(address, "local")
    plan_path = write_plan(processes.folder, simulator_url)

    run = processes.start(
        "run", "run", str(plan_path), "--format", "json", "--no-progress", "--controller", address
    )
    run_id = run.wait_for(SUBMITTED).group(1)
    controller.stop(signal.SIGKILL)
    run.wait_for(LOST)
    processes.controller(db_path, listen=address)
    exit_code = run.wait(RUN_TIMEOUT_S)

    assert exit_code == 0, processes.describe()
    assert f"lost the controller at {address}" in run.stderr()
    assert f"run {run_id} is still running there" in run.stderr()
    assert f"reconnected to the controller at {address}" in run.stderr()
    report = json.loads(run.stdout())
    assert report["run"]["run_id"] == run_id
    assert report["run"]["state"] == "COMPLETED"
    assert report["summaries"][0]["requests"] > 0
