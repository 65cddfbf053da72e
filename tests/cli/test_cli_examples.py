"""Every example plan and the embedded demo plan are valid, and the simulator example runs."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmping.cli.demo_cmd import load_demo_plan
from llmping.estimate import estimate_requests
from llmping.plan import load_plan

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


def test_examples_exist() -> None:
    names = {path.name for path in EXAMPLES}
    assert {"compare-providers.yaml", "load-test.yaml", "simulator.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    plan = load_plan(path)
    assert plan.providers
    assert estimate_requests(plan).requests_total > 0


def test_compare_example_covers_the_providers() -> None:
    plan = load_plan(Path(__file__).parents[2] / "examples" / "compare-providers.yaml")
    kinds = {p.kind for p in plan.providers}
    presets = {p.preset for p in plan.providers}
    assert {"openai", "azure", "openai_compatible"} <= kinds
    assert {"openrouter", "siliconflow", "deepseek"} <= presets
    assert any(p.proxy_url for p in plan.providers)
    assert [t.name for t in plan.targets] == ["shanghai", "tokyo"]
    assert plan.request.messages[0].content == "写一篇100字的短文"
    assert plan.thresholds


def test_load_example_steps_to_500() -> None:
    plan = load_plan(Path(__file__).parents[2] / "examples" / "load-test.yaml")
    assert [s.rate_per_s for s in plan.load.stages] == [100.0, 200.0, 500.0]


def test_demo_plan_fills_url_and_duration() -> None:
    plan = load_demo_plan("http://127.0.0.1:9999", 5.0)
    assert plan.load.duration_s == 5.0
    assert all(p.base_url.startswith("http://127.0.0.1:9999/") for p in plan.providers)
    assert [t.name for t in plan.targets] == ["shanghai", "tokyo"]
    assert "${SIMULATOR_URL}" not in plan.source_yaml


# ---------------------------------------------------------------------------
# examples/simulator.yaml, run end to end as its comment describes.
# ---------------------------------------------------------------------------

SIMULATOR_EXAMPLE = Path(__file__).parents[2] / "examples" / "simulator.yaml"
EXAMPLE_SIMULATOR_URL = "http://127.0.0.1:8800"
RUN_TIMEOUT_S = 40.0


def shortened_example(simulator_url: str, folder: Path) -> Path:
    """Write the example with the test simulator's URL and a 2 s run."""
    text = SIMULATOR_EXAMPLE.read_text(encoding="utf-8")
    data = yaml.safe_load(text.replace(EXAMPLE_SIMULATOR_URL, simulator_url))
    data["load"]["duration_s"] = 2
    data["load"]["warmup_s"] = 0.5
    path = folder / "simulator-short.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), "utf-8")
    return path


def stored_outcomes(db_path: Path, run_id: str) -> list[tuple[str, str, int]]:
    """Return (provider, error_class, http_status) of every stored record of a run."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT provider, error_class, http_status FROM records WHERE run_id = ?",
            (run_id,),
        )
        return [(str(p), str(e or ""), int(s or 0)) for p, e, s in rows]
    finally:
        connection.close()


def test_simulator_example_matches_its_comment() -> None:
    text = SIMULATOR_EXAMPLE.read_text(encoding="utf-8")
    plan = load_plan(SIMULATOR_EXAMPLE)
    assert "llmping simulate --listen 127.0.0.1:8800" in text
    for provider in plan.providers:
        assert provider.base_url == f"{EXAMPLE_SIMULATOR_URL}/{provider.name}/v1"
        assert provider.model == "gpt-4o"
    assert [t.name for t in plan.targets] == ["local"]


def test_simulator_example_runs_without_errors(processes: Any) -> None:
    simulator_url = processes.simulator()
    db_path = processes.folder / "example.db"
    _, controller = processes.controller(db_path)
    processes.agent(controller, "local")
    plan_path = shortened_example(simulator_url, processes.folder)

    run = processes.start(
        "run",
        "run",
        str(plan_path),
        "--format",
        "json",
        "--no-progress",
        "--controller",
        controller,
    )
    exit_code = run.wait(RUN_TIMEOUT_S)

    assert exit_code == 0, processes.describe()
    report = json.loads(run.stdout())
    assert report["run"]["state"] == "COMPLETED"
    assert {s["provider"] for s in report["summaries"]} == {"fast-relay", "official"}
    for summary in report["summaries"]:
        assert summary["requests"] > 0, summary
        assert summary["errors"] == 0, summary
    outcomes = stored_outcomes(db_path, report["run"]["run_id"])
    assert len(outcomes) >= sum(s["requests"] for s in report["summaries"])
    assert [o for o in outcomes if o[1] or o[2] != 200] == []


README_PATHS = [Path(__file__).parents[2] / name for name in ("README.md", "README.zh-CN.md")]
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _readme_plans() -> list[tuple[str, str]]:
    plans = []
    for path in README_PATHS:
        for index, block in enumerate(_YAML_BLOCK.findall(path.read_text("utf-8"))):
            if "providers:" in block:
                plans.append((f"{path.name}-{index}", block))
    return plans


def test_readmes_show_a_plan() -> None:
    names = {name.split("-")[0] for name, _ in _readme_plans()}
    assert names == {"README.md", "README.zh"}


@pytest.mark.parametrize(
    ("name", "block"), _readme_plans(), ids=[name for name, _ in _readme_plans()]
)
def test_readme_plan_is_valid(name: str, block: str, tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(block, "utf-8")
    plan = load_plan(path)
    assert plan.providers
    assert plan.thresholds
    assert estimate_requests(plan).requests_total > 0
