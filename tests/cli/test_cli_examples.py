"""Every example plan and the embedded demo plan are valid."""

from __future__ import annotations

from pathlib import Path

import pytest

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
