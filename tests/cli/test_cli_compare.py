"""`llmping compare`: the interval statistics, the formats and the exit statuses.

Most tests compare two reports written to JSON files in the test. The last one makes
two small runs on a real controller, agent and simulator and compares them by run id.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from llmping.cli import compare_cmd, compare_data
from llmping.cli.main import cli
from llmping.cli.report import render_report
from llmping.stats import (
    proportion_diff_ci95,
    t_quantile_975,
    welch_diff_ci95,
    wilson_ci95,
)
from llmping.v1 import llmping_pb2 as pb

# ---------------------------------------------------------------------------
# Reports built in the test.
# ---------------------------------------------------------------------------


def distribution(mean: float, stddev: float, count: int) -> pb.Distribution:
    return pb.Distribution(
        count=count,
        mean=mean,
        stddev=stddev,
        p50=mean * 0.9,
        p95=mean * 1.4,
        mean_ci95_low=mean - 1.96 * stddev / max(count, 1) ** 0.5,
        mean_ci95_high=mean + 1.96 * stddev / max(count, 1) ** 0.5,
    )


def summary(
    provider: str,
    target: str,
    e2e: tuple[float, float, int] = (1000.0, 100.0, 100),
    ttft: tuple[float, float, int] = (300.0, 30.0, 100),
    errors: int = 0,
    requests: int = 100,
    **extra: Any,
) -> pb.Summary:
    return pb.Summary(
        provider=provider,
        target=target,
        model="gpt-4o",
        requests=requests,
        errors=errors,
        successes=requests - errors,
        error_rate=errors / requests if requests else 0.0,
        e2e_ms=distribution(*e2e),
        ttft_ms=distribution(*ttft),
        **extra,
    )


def report(run_id: str, summaries: list[pb.Summary]) -> pb.Report:
    providers = list(dict.fromkeys(s.provider for s in summaries))
    targets = list(dict.fromkeys(s.target for s in summaries))
    plan = pb.Plan(
        name="weekly",
        providers=[pb.Provider(name=name, model="gpt-4o") for name in providers],
        targets=[pb.Target(name=name, selector={"region": name}) for name in targets],
    )
    run = pb.RunInfo(run_id=run_id, plan_name="weekly", state=pb.COMPLETED)
    return pb.Report(run=run, plan=plan, summaries=summaries)


def save(report_message: pb.Report, path: Path) -> str:
    path.write_text(render_report(report_message, "json"), encoding="utf-8")
    return str(path)


def compare(*args: str) -> Result:
    return CliRunner().invoke(cli, ["compare", *args])


@pytest.fixture
def week_files(tmp_path: Path) -> tuple[str, str]:
    """Save two runs whose groups differ in every way the comparison reports.

    OpenAI @ shanghai: E2E 1000 -> 1200 ms (slower), TTFT 300 -> 305 ms (within noise).
    OpenAI @ tokyo: E2E 800 -> 700 ms (faster), errors 1% -> 15% (more errors).
    relay @ shanghai: available in the baseline, not available in the candidate.
    relay @ tokyo: baseline only; SiliconFlow @ shanghai: candidate only.
    """
    baseline = report(
        "run-old",
        [
            summary("OpenAI", "shanghai"),
            summary("OpenAI", "tokyo", e2e=(800.0, 80.0, 100), errors=1),
            summary("relay", "shanghai"),
            summary("relay", "tokyo"),
        ],
    )
    candidate = report(
        "run-new",
        [
            summary("OpenAI", "shanghai", e2e=(1200.0, 100.0, 100), ttft=(305.0, 30.0, 100)),
            summary("OpenAI", "tokyo", e2e=(700.0, 80.0, 100), errors=15),
            summary(
                "relay",
                "shanghai",
                e2e=(0.0, 0.0, 0),
                ttft=(0.0, 0.0, 0),
                errors=3,
                requests=3,
                not_available=True,
                not_available_detail="model gpt-4o does not exist",
            ),
            summary("SiliconFlow", "shanghai"),
        ],
    )
    return save(baseline, tmp_path / "old.json"), save(candidate, tmp_path / "new.json")


def pair_files(tmp_path: Path, baseline: pb.Summary, candidate: pb.Summary) -> tuple[str, str]:
    return (
        save(report("run-a", [baseline]), tmp_path / "a.json"),
        save(report("run-b", [candidate]), tmp_path / "b.json"),
    )


# ---------------------------------------------------------------------------
# Statistics.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.7062), (2, 4.3027), (5, 2.5706), (10, 2.2281), (30, 2.0423), (1e6, 1.9600)],
)
def test_t_quantile_matches_tables(df: float, expected: float) -> None:
    assert t_quantile_975(df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_rejects_zero_df() -> None:
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile_975(0)


def test_welch_interval_excludes_zero() -> None:
    low, high = welch_diff_ci95((1000.0, 100.0, 100), (1100.0, 100.0, 100))
    # Equal variances and sizes: df = 198, t = 1.97202, standard error = 100 * sqrt(2/100).
    half_width = 1.97202 * 100.0 * (2 / 100) ** 0.5
    assert low == pytest.approx(100.0 - half_width, abs=0.01)
    assert high == pytest.approx(100.0 + half_width, abs=0.01)
    assert low > 0


def test_welch_interval_includes_zero() -> None:
    low, high = welch_diff_ci95((1000.0, 100.0, 10), (1030.0, 100.0, 10))
    half_width = 2.10092 * 100.0 * (2 / 10) ** 0.5  # df = 18
    assert low == pytest.approx(30.0 - half_width, abs=0.01)
    assert high == pytest.approx(30.0 + half_width, abs=0.01)
    assert low < 0 < high


def test_welch_unequal_variances() -> None:
    # v1 = 10^2/20 = 5, v2 = 12^2/25 = 5.76; df = 10.76^2 / (5^2/19 + 5.76^2/24) = 42.9.
    low, high = welch_diff_ci95((100.0, 10.0, 20), (110.0, 12.0, 25))
    assert (low + high) / 2 == pytest.approx(10.0)
    assert (high - low) / 2 == pytest.approx(2.0167 * 10.76**0.5, abs=0.01)


def test_welch_zero_spread_is_the_difference() -> None:
    assert welch_diff_ci95((100.0, 0.0, 5), (120.0, 0.0, 5)) == (20.0, 20.0)


def test_welch_needs_two_values() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        welch_diff_ci95((100.0, 0.0, 1), (120.0, 10.0, 50))


def test_proportion_interval_matches_newcombe() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, method 10: 56/70 - 48/80.
    low, high = proportion_diff_ci95((48, 80), (56, 70))
    assert low == pytest.approx(0.0524, abs=1e-4)
    assert high == pytest.approx(0.3339, abs=1e-4)
    low, high = proportion_diff_ci95((3, 10), (9, 10))
    assert low == pytest.approx(0.1705, abs=1e-4)
    assert high == pytest.approx(0.8090, abs=1e-4)


def test_proportion_interval_with_no_errors() -> None:
    low, high = proportion_diff_ci95((0, 100), (0, 100))
    assert low < 0 < high
    assert low == pytest.approx(-high)
    assert wilson_ci95(0, 100)[0] == pytest.approx(0.0, abs=1e-12)


def test_latency_not_enough_data() -> None:
    result = compare_data.compare_latency(
        "e2e_ms", distribution(1000.0, 0.0, 1), distribution(2000.0, 100.0, 50)
    )
    assert result.verdict == compare_data.NOT_ENOUGH_DATA
    assert result.ci95_ms is None
    assert result.change_ms == 1000.0


def test_error_rate_not_enough_data() -> None:
    baseline = summary("OpenAI", "tokyo", requests=0)
    result = compare_data.compare_error_rate(baseline, summary("OpenAI", "tokyo"))
    assert result.verdict == compare_data.NOT_ENOUGH_DATA
    assert result.ci95 is None


def test_verdicts_of_each_group(week_files: tuple[str, str]) -> None:
    result = compare(*week_files, "--format", "json")
    assert result.exit_code == 0, result.stderr
    groups = {(g["provider"], g["target"]): g for g in json.loads(result.stdout)["groups"]}
    shanghai = groups[("OpenAI", "shanghai")]
    assert shanghai["e2e_ms"]["result"] == "slower"
    assert shanghai["e2e_ms"]["change_ms"] == pytest.approx(200.0)
    assert shanghai["e2e_ms"]["change_pct"] == pytest.approx(20.0)
    assert shanghai["ttft_ms"]["result"] == "within noise"
    assert shanghai["error_rate"]["result"] == "within noise"
    tokyo = groups[("OpenAI", "tokyo")]
    assert tokyo["e2e_ms"]["result"] == "faster"
    assert tokyo["error_rate"]["result"] == "more errors"
    assert tokyo["error_rate"]["change"] == pytest.approx(0.14)


# ---------------------------------------------------------------------------
# Formats.
# ---------------------------------------------------------------------------


def test_table_lists_every_group(week_files: tuple[str, str]) -> None:
    result = compare(*week_files)
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "baseline: run run-old, plan weekly, COMPLETED" in text
    assert "candidate: run run-new" in text
    for verdict in ("slower", "faster", "within noise", "more errors"):
        assert verdict in text
    assert "only in baseline" in text
    assert "only in candidate" in text
    assert "not available in candidate" in text
    assert "relay @ shanghai in the candidate: model gpt-4o does not exist" in text
    assert "mean +200 ms (+20.0%)" in text
    assert "mean 1000 ms (n=100)" in text


def test_json_groups_and_statuses(week_files: tuple[str, str]) -> None:
    result = compare(*week_files, "--format", "json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["baseline"]["run_id"] == "run-old"
    assert document["candidate"]["run_id"] == "run-new"
    statuses = {(g["provider"], g["target"]): g["status"] for g in document["groups"]}
    assert statuses == {
        ("OpenAI", "shanghai"): "compared",
        ("OpenAI", "tokyo"): "compared",
        ("relay", "shanghai"): "compared",
        ("relay", "tokyo"): "only in baseline",
        ("SiliconFlow", "shanghai"): "only in candidate",
    }
    relay = document["groups"][2]
    assert relay["provider"] == "relay"
    assert relay["candidate_not_available"] == "model gpt-4o does not exist"
    assert "e2e_ms" not in relay
    assert relay["error_rate"]["result"] == "more errors"
    shanghai = document["groups"][0]
    low, high = shanghai["e2e_ms"]["ci95_ms"]
    assert 0 < low < 200 < high
    assert len(document["regressions"]) == 3


def test_markdown_table(week_files: tuple[str, str]) -> None:
    result = compare(*week_files, "--format", "markdown")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "# llmping comparison"
    header = "| provider | target | metric | baseline | candidate | change | 95% CI | result |"
    assert header in lines
    rows = [line for line in lines if line.startswith("| OpenAI | shanghai |")]
    assert len(rows) == 3  # TTFT, E2E, errors
    assert "| E2E |" in rows[1]
    assert rows[1].endswith("| slower |")
    assert "| relay | tokyo | - | - | - | - | - | only in baseline |" in lines
    assert "| relay | shanghai | latency | - | N/A | - | - | not available in candidate |" in lines
    assert "- relay @ shanghai in the candidate: model gpt-4o does not exist" in lines


def test_output_writes_file(week_files: tuple[str, str], tmp_path: Path) -> None:
    output = tmp_path / "comparison.md"
    result = compare(*week_files, "--format", "markdown", "--output", str(output))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert output.read_text(encoding="utf-8").startswith("# llmping comparison")
    assert f"report written to {output}" in result.stderr


def test_csv_format_rejected(week_files: tuple[str, str]) -> None:
    result = compare(*week_files, "--format", "csv")
    assert result.exit_code == 2
    assert "'csv' is not one of" in result.stderr


def test_control_characters_cleaned(tmp_path: Path) -> None:
    files = pair_files(tmp_path, summary("evil\x1b[2J", "tokyo"), summary("evil\x1b[2J", "tokyo"))
    table = compare(*files)
    assert "\x1b" not in table.stdout
    assert "evil\\x1b[2J" in table.stdout
    document = json.loads(compare(*files, "--format", "json").stdout)
    assert document["groups"][0]["provider"] == "evil\x1b[2J"


# ---------------------------------------------------------------------------
# Exit statuses.
# ---------------------------------------------------------------------------


def test_regression_fails_gate(week_files: tuple[str, str]) -> None:
    result = compare(*week_files, "--fail-on-regression")
    assert result.exit_code == 1
    assert "error: regression: OpenAI @ shanghai: mean E2E slower by +200 ms (+20.0%)" in (
        result.stderr
    )
    assert "error: regression: OpenAI @ tokyo: error rate up by +14.0 pp" in result.stderr
    assert "relay @ shanghai: error rate up" in result.stderr


def test_regression_without_flag_exits_0(week_files: tuple[str, str]) -> None:
    assert compare(*week_files).exit_code == 0


def test_within_noise_passes_gate(tmp_path: Path) -> None:
    files = pair_files(
        tmp_path,
        summary("OpenAI", "tokyo", e2e=(1000.0, 300.0, 20), errors=1),
        summary("OpenAI", "tokyo", e2e=(1050.0, 300.0, 20), errors=2),
    )
    result = compare(*files, "--fail-on-regression", "--format", "json")
    assert result.exit_code == 0, result.stderr
    group = json.loads(result.stdout)["groups"][0]
    assert group["e2e_ms"]["result"] == "within noise"
    assert group["error_rate"]["result"] == "within noise"


def test_max_slowdown_pct_tolerates(tmp_path: Path) -> None:
    # E2E 1000 -> 1100 ms with 1000 requests each side: slower beyond the noise, +10%.
    files = pair_files(
        tmp_path,
        summary("OpenAI", "tokyo", e2e=(1000.0, 100.0, 1000)),
        summary("OpenAI", "tokyo", e2e=(1100.0, 100.0, 1000)),
    )
    assert compare(*files, "--fail-on-regression").exit_code == 1
    assert compare(*files, "--fail-on-regression", "--max-slowdown-pct", "15").exit_code == 0
    assert compare(*files, "--fail-on-regression", "--max-slowdown-pct", "10").exit_code == 0
    strict = compare(*files, "--fail-on-regression", "--max-slowdown-pct", "5")
    assert strict.exit_code == 1
    assert "mean E2E slower by +100 ms (+10.0%)" in strict.stderr


def test_not_enough_data_passes_gate(tmp_path: Path) -> None:
    files = pair_files(
        tmp_path,
        summary("OpenAI", "tokyo", e2e=(1000.0, 0.0, 1), ttft=(300.0, 0.0, 1)),
        summary("OpenAI", "tokyo", e2e=(5000.0, 0.0, 1), ttft=(900.0, 0.0, 1)),
    )
    result = compare(*files, "--fail-on-regression")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("not enough data") == 2


def test_missing_file_exits_2(week_files: tuple[str, str], tmp_path: Path) -> None:
    missing = str(tmp_path / "last-week.json")
    result = compare(missing, week_files[1])
    assert result.exit_code == 2
    assert f"error: the baseline report file {missing} was not found" in result.stderr
    assert "llmping report RUN_ID --format json" in result.stderr


def test_invalid_json_exits_2(week_files: tuple[str, str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    result = compare(week_files[0], str(broken))
    assert result.exit_code == 2
    assert f"the candidate file {broken} is not JSON" in result.stderr


@pytest.mark.parametrize("document", [[{"run_id": "x"}], {"name": "a plan"}])
def test_other_json_exits_2(week_files: tuple[str, str], tmp_path: Path, document: object) -> None:
    other = tmp_path / "runs.json"
    other.write_text(json.dumps(document), encoding="utf-8")
    result = compare(str(other), week_files[1])
    assert result.exit_code == 2
    assert f"the baseline file {other} is not an llmping report" in result.stderr


def test_invalid_report_field_exits_2(week_files: tuple[str, str], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"run": {}, "summaries": "many"}), encoding="utf-8")
    result = compare(week_files[0], str(wrong))
    assert result.exit_code == 2
    assert f"the candidate file {wrong} is not a valid report" in result.stderr


def test_directory_exits_2(week_files: tuple[str, str], tmp_path: Path) -> None:
    result = compare(str(tmp_path), week_files[1])
    assert result.exit_code == 2
    assert "is not a file" in result.stderr


def test_no_common_group_exits_2(tmp_path: Path) -> None:
    files = pair_files(tmp_path, summary("OpenAI", "tokyo"), summary("OpenAI", "shanghai"))
    result = compare(*files)
    assert result.exit_code == 2
    assert f"runs {files[0]} and {files[1]} have no provider x target in common" in (result.stderr)


def test_unreachable_controller_exits_3(week_files: tuple[str, str], unused_port: int) -> None:
    result = compare(
        week_files[0], "20250101-120000-3fa2c1", "--controller", f"127.0.0.1:{unused_port}"
    )
    assert result.exit_code == 3
    assert f"cannot reach the controller at 127.0.0.1:{unused_port}" in result.stderr


def test_files_need_no_controller(week_files: tuple[str, str], unused_port: int) -> None:
    result = compare(*week_files, "--controller", f"127.0.0.1:{unused_port}")
    assert result.exit_code == 0, result.stderr


def test_path_like_values() -> None:
    assert compare_cmd.looks_like_path("reports/last.json")
    assert compare_cmd.looks_like_path("last.JSON")
    assert not compare_cmd.looks_like_path("20250101-120000-3fa2c1")


# ---------------------------------------------------------------------------
# A real controller, agent and simulator.
# ---------------------------------------------------------------------------

RUN_TIMEOUT_S = 40.0


def write_plan(folder: Path, simulator_url: str) -> Path:
    plan = {
        "name": "compare-e2e",
        "providers": [
            {
                "name": "fast-relay",
                "kind": "openai_compatible",
                "base_url": f"{simulator_url}/fast-relay/v1",
                "model": "gpt-4o",
            }
        ],
        "request": {"prompt": "hi", "max_tokens": 5},
        "load": {"mode": "closed", "concurrency": 2, "request_count": 6},
        "targets": ["local"],
    }
    path = folder / "compare.yaml"
    path.write_text(yaml.safe_dump(plan), encoding="utf-8")
    return path


def run_plans(processes: Any, plan_path: Path, controller: str) -> list[str]:
    """Run the plan twice at once with `llmping run` and return the two run ids.

    The runs overlap because the controller delays every start by 2 s.
    """
    runs = [
        processes.start(
            "run",
            "run",
            str(plan_path),
            "--format",
            "json",
            "--no-progress",
            "--controller",
            controller,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.wait(RUN_TIMEOUT_S) == 0, processes.describe()
    return [str(json.loads(run.stdout())["run"]["run_id"]) for run in runs]


def test_compare_runs_on_controller(processes: Any) -> None:
    simulator_url = processes.simulator()
    _, controller = processes.controller(processes.folder / "compare.db")
    processes.agent(controller, "local")
    plan_path = write_plan(processes.folder, simulator_url)
    first, second = run_plans(processes, plan_path, controller)

    by_id = compare(first, second, "--format", "json", "--controller", controller)
    assert by_id.exit_code == 0, by_id.stderr
    document = json.loads(by_id.stdout)
    assert document["baseline"]["run_id"] == first
    assert document["candidate"]["run_id"] == second
    [group] = document["groups"]
    assert (group["provider"], group["target"], group["status"]) == (
        "fast-relay",
        "local",
        "compared",
    )
    assert group["e2e_ms"]["baseline"]["count"] == 6
    assert group["e2e_ms"]["candidate"]["count"] == 6
    assert group["error_rate"]["result"] == "within noise"

    saved = processes.folder / "first.json"
    saved_report = CliRunner().invoke(
        cli,
        ["report", first, "--format", "json", "--output", str(saved), "--controller", controller],
    )
    assert saved_report.exit_code == 0, saved_report.stderr
    mixed = compare(str(saved), second, "--controller", controller)
    assert mixed.exit_code == 0, mixed.stderr
    assert re.search(rf"baseline: run {first}, plan compare-e2e, COMPLETED", mixed.stdout)

    unknown = compare(first, "20000101-000000-000000", "--controller", controller)
    assert unknown.exit_code == 2
    assert "cannot get the candidate report: run '20000101-000000-000000' not found" in (
        unknown.stderr
    )
