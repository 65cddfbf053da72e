"""Plan validation through `llmping run --dry-run`: every bad input exits 2 with a fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmping.cli import run_cmds
from llmping.errors import InputError, PlanError
from llmping.estimate import estimate_requests
from llmping.plan import load_plan, plan_from_text
from llmping.presets import PRESETS
from llmping.v1 import llmping_pb2 as pb

GOOD_PLAN = """\
name: smoke
providers:
  - name: sim
    kind: openai_compatible
    base_url: http://127.0.0.1:8800/v1
    model: gpt-4o
request:
  prompt: 写一篇100字的短文
load:
  mode: closed
  concurrency: 2
  request_count: 10
targets:
  - shanghai
"""


def dry_run(tmp_path: Path, text: str) -> tuple[int, str]:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(textwrap.dedent(text), encoding="utf-8")
    result = CliRunner().invoke(run_cmds.run, [str(plan_file), "--dry-run"])
    return result.exit_code, result.stderr


def replace(old: str, new: str) -> str:
    assert old in GOOD_PLAN
    return GOOD_PLAN.replace(old, new)


def test_good_plan_dry_run_prints_estimate(tmp_path: Path) -> None:
    code, err = dry_run(tmp_path, GOOD_PLAN)
    assert code == 0, err
    assert "estimate: 10 requests" in err
    assert "nothing submitted" in err


def test_unknown_key_suggests_spelling(tmp_path: Path) -> None:
    code, err = dry_run(tmp_path, replace("    model: gpt-4o", "    modle: gpt-4o"))
    assert code == 2
    assert "error: invalid plan" in err
    assert "providers[0].modle" in err
    assert "unknown key 'modle'" in err
    assert "did you mean model?" in err


def test_unknown_top_level_key(tmp_path: Path) -> None:
    code, err = dry_run(tmp_path, GOOD_PLAN + "colour: blue\n")
    assert code == 2
    assert "field colour (line 15): unknown key 'colour'" in err


def test_missing_model(tmp_path: Path) -> None:
    code, err = dry_run(tmp_path, replace("    model: gpt-4o\n", ""))
    assert code == 2
    assert "providers[0].model" in err
    assert "missing model" in err
    assert "model: gpt-4o" in err  # the fix


def test_bad_base_url_names_line(tmp_path: Path) -> None:
    code, err = dry_run(tmp_path, replace("http://127.0.0.1:8800/v1", "ftp://relay"))
    assert code == 2
    assert "providers[0].base_url (line 5)" in err
    assert "invalid base_url 'ftp://relay'" in err
    assert "http:// or https://" in err


def test_key_like_api_key_env_is_not_echoed(tmp_path: Path) -> None:
    secret = "sk-proj-abcdefghijklmnop0123456789"
    code, err = dry_run(
        tmp_path, replace("    model: gpt-4o\n", f"    model: gpt-4o\n    api_key_env: {secret}\n")
    )
    assert code == 2
    assert "providers[0].api_key_env" in err
    assert "looks like an API key" in err
    assert "environment variable" in err
    assert secret not in err


def test_invalid_env_name_is_rejected(tmp_path: Path) -> None:
    code, err = dry_run(
        tmp_path, replace("    model: gpt-4o\n", "    model: gpt-4o\n    api_key_env: my-key\n")
    )
    assert code == 2
    assert "not a valid environment variable name" in err


def test_azure_without_api_version(tmp_path: Path) -> None:
    text = replace("    kind: openai_compatible\n", "    kind: azure\n    deployment: gpt4o-prod\n")
    code, err = dry_run(tmp_path, text)
    assert code == 2
    assert "providers[0].api_version" in err
    assert "missing api_version for kind azure" in err
    assert 'api_version: "2024-10-21"' in err


def test_closed_without_concurrency(tmp_path: Path) -> None:
    code, err = dry_run(tmp_path, replace("  concurrency: 2\n", ""))
    assert code == 2
    assert "load.concurrency" in err
    assert "mode closed needs concurrency" in err


def test_constant_without_rate(tmp_path: Path) -> None:
    code, err = dry_run(
        tmp_path, replace("  mode: closed\n  concurrency: 2\n", "  mode: constant\n")
    )
    assert code == 2
    assert "load.rate_per_s" in err
    assert "mode constant needs rate_per_s or stages" in err


def test_plan_without_end(tmp_path: Path) -> None:
    code, err = dry_run(tmp_path, replace("  request_count: 10\n", ""))
    assert code == 2
    assert "the run has no end" in err
    assert "set duration_s, request_count or stages" in err


def test_non_positive_duration(tmp_path: Path) -> None:
    code, err = dry_run(tmp_path, replace("  request_count: 10\n", "  duration_s: 0\n"))
    assert code == 2
    assert "load.duration_s" in err
    assert "greater than 0" in err


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    code, err = dry_run(tmp_path, replace("    model: gpt-4o", "   model: gpt-4o"))
    assert code == 2
    assert "invalid YAML" in err
    assert "line 6, column 4" in err


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    code, err = dry_run(
        tmp_path, replace("    model: gpt-4o\n", "    model: gpt-4o\n    model: gpt-4o-mini\n")
    )
    assert code == 2
    assert "duplicate key 'model'" in err
    assert "line 7" in err


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = CliRunner().invoke(run_cmds.run, [str(missing), "--dry-run"])
    assert result.exit_code == 2
    assert f"error: plan file not found, {missing}, check the path" in result.stderr


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    code, err = dry_run(tmp_path, "")
    assert code == 2
    assert "is empty" in err
    code, err = dry_run(tmp_path, "- a\n- b\n")
    assert code == 2
    assert "must be a YAML mapping" in err


def test_all_errors_listed(tmp_path: Path) -> None:
    text = replace("http://127.0.0.1:8800/v1", "relay.example.com").replace(
        "  concurrency: 2\n", "  concurrency: -1\n"
    )
    code, err = dry_run(tmp_path, text + "extra: 1\n")
    assert code == 2
    assert "3 problems" in err
    assert "providers[0].base_url" in err
    assert "load.concurrency" in err
    assert "field extra" in err


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("    model: gpt-4o\n", "    model: gpt-4o\n    proxy: ftp://p:1\n", "invalid proxy"),
        (
            "    model: gpt-4o\n",
            "    model: gpt-4o\n    headers: {Authorization: Bearer x}\n",
            "would put a credential into the plan",
        ),
        (
            "  prompt: 写一篇100字的短文\n",
            "  prompt: a\n  messages: []\n",
            "both prompt and messages",
        ),
        (
            "  prompt: 写一篇100字的短文\n",
            "  messages: [{role: robot, content: hi}]\n",
            "request.messages[0].role",
        ),
        ("  request_count: 10\n", "  duration_s: 5\n  warmup_s: 5\n", "covers the whole 5 s run"),
        ("  - shanghai\n", "  - shanghai\n  - shanghai\n", "duplicate target name"),
        (
            "  - shanghai\n",
            "  - shanghai\nthresholds:\n  - ttft_p95: '< 5'\n",
            "did you mean ttft_p95_ms?",
        ),
        (
            "  - shanghai\n",
            "  - shanghai\nthresholds:\n  - ttft_p95_ms: 'about 5'\n",
            "invalid comparison",
        ),
        (
            "  - shanghai\n",
            "  - shanghai\nthresholds:\n  ttft_p95_ms: '< 5'\n",
            "expected a list, got a mapping; write each entry as a list item starting with "
            "'- ', for example '- ttft_p95_ms: ...'",
        ),
        (
            "  - shanghai\n",
            "  - shanghai\nthresholds:\n  - {error_rate: '< 1%', provider: nobody}\n",
            "no provider named 'nobody'",
        ),
        ("  request_count: 10\n", "  request_count: 10\n  max_requests: 5\n", "over the cap of 5"),
        (
            "    kind: openai_compatible\n",
            "    kind: openai_compatible\n    api_version: '2024-10-21'\n",
            "apply to kind azure only",
        ),
    ],
)
def test_more_invalid_plans(tmp_path: Path, old: str, new: str, expected: str) -> None:
    code, err = dry_run(tmp_path, replace(old, new))
    assert code == 2
    assert expected in err


def test_errors_are_plan_errors() -> None:
    with pytest.raises(PlanError) as caught:
        plan_from_text(GOOD_PLAN.replace("  concurrency: 2\n", ""), "inline")
    assert caught.value.path == "load.concurrency"
    assert caught.value.hint
    with pytest.raises(InputError):
        plan_from_text("a: [", "inline")


ROUND_TRIP_PLAN = """\
name: 对比
providers:
  - name: OpenRouter
    preset: openrouter
    model: openai/gpt-4o
    extra_body: {provider: {order: [OpenAI]}, top_p: 0.9}
    headers: {X-Title: llmping}
  - name: Azure
    kind: azure
    base_url: https://res.openai.azure.com/
    deployment: gpt4o-prod
    api_version: "2024-10-21"
  - name: Relay
    base_url: https://relay.example.com/v1
    model: gpt-4o
    api_key_env: RELAY_KEY
    proxy: socks5://127.0.0.1:1080
request:
  messages:
    - {role: system, content: 你是作家}
    - {role: user, content: 写一篇100字的短文}
  max_tokens: 300
  temperature: 0.5
  include_usage: false
load:
  mode: poisson
  stages:
    - {rate_per_s: 10, duration_s: 10}
    - {rate_per_s: 20, duration_s: 10, ramp_s: 4}
  warmup_s: 2
  max_in_flight: 50
  overflow: drop
  retry: {max_attempts: 3, on_error_classes: [http_429, timeout_ttft]}
targets:
  - shanghai
  - {name: eu, selector: {region: frankfurt, isp: dtag}}
timeouts: {connect_s: 3, total_s: 60}
thresholds:
  - ttft_p95_ms: "<= 800"
  - {error_rate: "< 1%", target: eu}
  - {metric: e2e_p99_ms, op: "<", value: 5000, provider: Relay}
"""


def test_round_trip_to_pb() -> None:
    plan = plan_from_text(ROUND_TRIP_PLAN, "inline")
    openrouter, azure, relay = plan.providers
    assert openrouter.kind == "openai_compatible"
    assert openrouter.base_url == "https://openrouter.ai/api/v1"
    assert openrouter.api_key_env == "OPENROUTER_API_KEY"
    assert openrouter.preset == "openrouter"
    assert openrouter.headers["X-Title"] == "llmping"
    assert openrouter.extra_body["provider"]["order"][0] == "OpenAI"
    assert openrouter.extra_body["top_p"] == pytest.approx(0.9)
    assert azure.kind == "azure"
    assert azure.base_url == "https://res.openai.azure.com"
    assert azure.model == "gpt4o-prod"  # defaults to the deployment
    assert azure.api_version == "2024-10-21"
    assert azure.api_key_env == "AZURE_OPENAI_API_KEY"
    assert relay.kind == "openai_compatible"
    assert relay.proxy_url == "socks5://127.0.0.1:1080"
    assert relay.api_key_env == "RELAY_KEY"

    assert [(m.role, m.content) for m in plan.request.messages] == [
        ("system", "你是作家"),
        ("user", "写一篇100字的短文"),
    ]
    assert plan.request.stream is True
    assert plan.request.include_usage is False
    assert plan.request.HasField("temperature")

    assert plan.load.mode == pb.LoadSpec.POISSON
    assert plan.load.duration_s == 20.0  # the stages' sum
    assert [s.rate_per_s for s in plan.load.stages] == [10.0, 20.0]
    assert plan.load.stages[1].ramp_s == 4.0
    assert plan.load.overflow == "drop"
    assert plan.load.retry.max_attempts == 3
    assert list(plan.load.retry.on_error_classes) == ["http_429", "timeout_ttft"]

    assert dict(plan.targets[0].selector) == {"region": "shanghai"}
    assert dict(plan.targets[1].selector) == {"region": "frankfurt", "isp": "dtag"}
    assert plan.timeouts.connect_s == 3.0
    assert plan.timeouts.ttft_s == 60.0  # default
    first, second, third = plan.thresholds
    assert (first.metric, first.op, first.value) == ("ttft_p95_ms", "le", 800.0)
    assert (second.metric, second.op, second.target) == ("error_rate", "lt", "eu")
    assert second.value == pytest.approx(0.01)
    assert (third.op, third.provider) == ("lt", "Relay")
    assert plan.source_yaml == ROUND_TRIP_PLAN


def test_estimate_counts_every_pair_and_ramp() -> None:
    plan = plan_from_text(ROUND_TRIP_PLAN, "inline")
    estimate = estimate_requests(plan)
    # 10/s for 10 s, then a 4 s ramp from 10 to 20/s (60) and 6 s at 20/s (120).
    assert estimate.requests_per_cell == 280
    assert estimate.cells == 6
    assert estimate.requests_total == 1680
    assert estimate.output_tokens_max == 1680 * 300
    assert any("retries" in note for note in estimate.notes)


def test_load_plan_reads_file(tmp_path: Path) -> None:
    plan_file = tmp_path / "p.yaml"
    plan_file.write_text(GOOD_PLAN, encoding="utf-8")
    assert load_plan(plan_file).name == "smoke"


def test_request_cap_names_estimate_and_fix(tmp_path: Path) -> None:
    # Closed loop, 2 workers for 30 s at the assumed 1 s per request: 60 requests.
    text = replace("  request_count: 10\n", "  duration_s: 30\n  max_requests: 50\n")

    code, err = dry_run(tmp_path, text)

    assert code == 2
    assert "load.max_requests (line 13)" in err
    assert "about 60 requests" in err
    assert "60 per provider per target x 1 pairs" in err
    assert "over the cap of 50" in err
    assert "shorten load.duration_s" in err
    assert "raise load.max_requests" in err


def test_request_cap_and_seed_reach_pb() -> None:
    text = replace("  request_count: 10\n", "  request_count: 10\n  max_requests: 10\n  seed: 7\n")

    plan = plan_from_text(text, "inline")
    default = plan_from_text(GOOD_PLAN, "inline")

    assert plan.load.max_requests == 10
    assert plan.load.seed == 7
    assert default.load.max_requests == 0
    assert default.load.seed == 0


def test_seed_zero_is_rejected(tmp_path: Path) -> None:
    code, err = dry_run(
        tmp_path, replace("  request_count: 10\n", "  request_count: 10\n  seed: 0\n")
    )
    assert code == 2
    assert "load.seed" in err
    assert "invalid seed 0" in err
    assert "remove seed for a random one" in err


def test_unknown_preset_suggests_spelling(tmp_path: Path) -> None:
    text = replace("    kind: openai_compatible\n", "    preset: openroutr\n")

    code, err = dry_run(tmp_path, text)

    assert code == 2
    assert "providers[0].preset" in err
    assert "unknown preset 'openroutr'" in err
    assert "did you mean openrouter?" in err


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_fills_provider_defaults(name: str) -> None:
    text = replace(
        "    kind: openai_compatible\n    base_url: http://127.0.0.1:8800/v1\n",
        f"    preset: {name}\n",
    )

    provider = plan_from_text(text, "inline").providers[0]

    preset = PRESETS[name]
    assert provider.preset == name
    assert provider.kind == preset.kind
    assert provider.base_url == preset.base_url
    assert provider.api_key_env == preset.api_key_env
