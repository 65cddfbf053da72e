"""Report formats rendered from a hand-made report."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from google.protobuf.json_format import ParseDict

from llmping.cli import report_data
from llmping.cli.report import FORMATS, render_report
from llmping.errors import InputError
from llmping.v1 import llmping_pb2 as pb


def test_table_has_grid_na_and_stars(sample_report: pb.Report) -> None:
    text = render_report(sample_report, "table")
    for name in ("OpenAI", "中转站 A", "SiliconFlow", "shanghai", "tokyo"):
        assert name in text
    assert "N/A" in text
    assert "model gpt-4o does not exist" in text
    assert "★★★★☆ 4.2" in text
    assert "avg 1450 ms" in text
    assert "(n=98)" in text
    assert "loss 12.0% (12/100)" in text


def test_table_marks_overlap_as_noise(sample_report: pb.Report) -> None:
    text = render_report(sample_report, "table")
    # shanghai: 1440 +-35 and 1450 +-40 overlap; tokyo: 610 +-20 and 820 +-30 do not.
    assert "≈ 中转站 A, within noise" in text
    assert "shanghai: 中转站 A 1440 ms vs OpenAI 1450 ms" in text
    assert "tokyo: 中转站 A" not in text


def test_table_sections(sample_report: pb.Report) -> None:
    text = render_report(sample_report, "table")
    assert "http_502 x7" in text  # 5xx group
    assert "http_429 x4" in text  # 4xx group
    assert "connection_reset x1" in text  # other
    assert "ttft_p95_ms < 400" in text
    assert "FAIL" in text
    assert "pass" in text
    assert "ok: the agent was not the bottleneck" in text


def test_error_groups() -> None:
    grouped = report_data.group_error_classes(
        {"http_502": 2, "http_429": 5, "http_404": 1, "dns": 1}
    )
    assert grouped["4xx"] == [("http_429", 5), ("http_404", 1)]
    assert grouped["5xx"] == [("http_502", 2)]
    assert grouped["other"] == [("dns", 1)]


def test_stars() -> None:
    assert report_data.stars(4.6) == "★★★★★ 4.6"
    assert report_data.stars(1.2) == "★☆☆☆☆ 1.2"
    assert report_data.stars(0.0) == "score n/a"


def test_json_parses_back(sample_report: pb.Report) -> None:
    text = render_report(sample_report, "json")
    document = json.loads(text)
    assert document["run"]["run_id"] == "run-0001"
    assert document["summaries"][2]["provider"] == "中转站 A"
    assert "中转站 A" in text  # not escaped as \\u sequences
    assert list(document) == sorted(document)
    # Default-valued fields are present, so keys are the same in every report.
    assert document["summaries"][0]["warmup_requests"] == 0
    again = ParseDict(document, pb.Report())
    assert again == sample_report


def test_csv_parses(sample_report: pb.Report) -> None:
    rows = list(csv.DictReader(io.StringIO(render_report(sample_report, "csv"))))
    assert len(rows) == 5
    first = rows[0]
    assert (first["provider"], first["target"]) == ("OpenAI", "shanghai")
    assert float(first["e2e_mean_ms"]) == pytest.approx(1450.0)
    assert first["e2e_count"] == "98"
    relay_tokyo = rows[3]
    assert relay_tokyo["provider"] == "中转站 A"
    assert relay_tokyo["error_classes"] == "connection_reset=1;http_429=4;http_502=7"
    assert rows[4]["not_available"] == "True"


def test_markdown_table(sample_report: pb.Report) -> None:
    text = render_report(sample_report, "markdown")
    lines = text.splitlines()
    assert "| provider | shanghai | tokyo |" in lines
    assert "|---|---|---|" in lines
    openai_row = next(line for line in lines if line.startswith("| **OpenAI**"))
    assert openai_row.count(" | ") == 2  # three cells
    assert "avg 1450 ms" in openai_row
    assert "★★★★☆ 4.2" in openai_row
    assert "| **SiliconFlow**<br>gpt-4o | N/A | - |" in lines
    assert "## Thresholds" in lines
    assert "**FAIL**" in text


def test_markdown_escapes_pipes(sample_report: pb.Report) -> None:
    sample_report.plan.providers[0].name = "a|b"
    sample_report.summaries[0].provider = "a|b"
    text = render_report(sample_report, "markdown")
    assert "**a\\|b**" in text


def test_html_is_self_contained(sample_report: pb.Report, tmp_path: Path) -> None:
    text = render_report(sample_report, "html")
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in text
    assert "<svg" in text
    assert text.count("<svg") >= 4  # two distributions, two timelines, errors
    assert "中转站 A" in text
    assert "N/A" in text
    # Nothing is loaded from elsewhere: no src/href/url()/@import pointing at a URL.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text, re.IGNORECASE)
    assert "@import" not in text
    assert "<script" not in text
    assert "<link" not in text
    (tmp_path / "r.html").write_text(text, encoding="utf-8")


def test_html_escapes_names(sample_report: pb.Report) -> None:
    sample_report.plan.providers[0].name = "<b>x</b>"
    sample_report.summaries[0].provider = "<b>x</b>"
    text = render_report(sample_report, "html")
    assert "<b>x</b>" not in text
    assert "&lt;b&gt;x&lt;/b&gt;" in text


def test_empty_report_renders_in_every_format() -> None:
    report = pb.Report(run=pb.RunInfo(run_id="r", state=pb.RUNNING))
    for report_format in FORMATS:
        assert render_report(report, report_format)


def test_unknown_format() -> None:
    with pytest.raises(InputError, match="unknown report format 'pdf'"):
        render_report(pb.Report(), "pdf")


def test_failure_reasons(sample_report: pb.Report) -> None:
    reasons = report_data.failure_reasons(sample_report)
    assert len(reasons) == 1
    assert "threshold failed: ttft_p95_ms < 400 for OpenAI @ shanghai, observed 471.2" in reasons[0]
    sample_report.run.state = pb.PARTIAL
    sample_report.run.reason = "agent demo-tokyo lost"
    reasons = report_data.failure_reasons(sample_report)
    assert reasons[0] == "run run-0001 ended PARTIAL: agent demo-tokyo lost"


def test_run_ended_before_start_not_negative() -> None:
    run = pb.RunInfo(
        created_unix_ns=1_000_000_000_000,
        start_at_unix_ns=1_002_000_000_000,
        ended_unix_ns=1_000_500_000_000,
    )
    started, took_s = report_data.run_timing(run)
    assert started == run.created_unix_ns
    assert took_s == pytest.approx(0.5)


def test_run_still_running_has_no_duration() -> None:
    run = pb.RunInfo(created_unix_ns=1_000_000_000_000, start_at_unix_ns=1_002_000_000_000)
    assert report_data.run_timing(run) == (run.start_at_unix_ns, None)


def test_failed_assignment_verdict_not_ok() -> None:
    report = pb.Report()
    report.run.assignments.add(
        assignment_id="a1",
        state=pb.AssignmentUpdate.FAILED,
        message="environment variable OPENAI_API_KEY is not set",
    )
    report.agent_diagnoses.add(agent_id="agent-1", assignment_id="a1", target="tokyo")
    report.agent_diagnoses.add(agent_id="agent-2", assignment_id="a2", target="tokyo")
    rows = list(report_data.diagnosis_rows(report))
    assert rows[0][2] == "assignment failed: environment variable OPENAI_API_KEY is not set"
    assert rows[1][2] == "ok"


PROXY_ERROR = (
    "proxy: ClientProxyConnectionError: Cannot connect to host 127.0.0.1:7890 ssl:default "
    "[Connect call failed ('127.0.0.1', 7890)]"
)
RATE_LIMIT_ERROR = (
    "rate_limit_exceeded (requests): Rate limit reached for provider 'limitrelay-gpt-4o' "
    "in organization org-abc on requests per min (RPM): Limit 3, Used 3, Requested 1. "
    "Please try again in 20s. Visit https://platform.example/account/rate-limits to learn "
    "more about rate limits, quotas and how to request a higher limit for this organization."
)


def error_summary(detail: str) -> pb.Summary:
    return pb.Summary(sample_error_details=[detail])


def test_sample_error_message_short_kept_whole() -> None:
    assert report_data.sample_error_message(error_summary(PROXY_ERROR)) == PROXY_ERROR
    assert report_data.sample_error_message(pb.Summary()) == ""


def test_sample_error_message_cuts_at_space() -> None:
    message = report_data.sample_error_message(error_summary(RATE_LIMIT_ERROR), 120)

    assert len(message) <= 120
    assert message.endswith("…")
    assert RATE_LIMIT_ERROR.startswith(message.removesuffix("…"))
    # The cut falls between words: the next character of the detail is the space.
    assert RATE_LIMIT_ERROR[len(message) - 1] == " "


def test_sample_error_message_without_spaces_is_cut() -> None:
    message = report_data.sample_error_message(error_summary("x" * 300), 50)

    assert message == "x" * 49 + "…"


def test_table_errors_keep_address_and_words(sample_report: pb.Report) -> None:
    sample_report.summaries[0].sample_error_details[:] = [PROXY_ERROR]
    sample_report.summaries[1].sample_error_details[:] = [RATE_LIMIT_ERROR]

    text = render_report(sample_report, "table")

    assert "127.0.0.1:7890" in text
    assert "7890)]" in text
    assert "'limitrelay-gpt-4o'" in text
    assert "Please try again in 20s." in text


def test_markdown_shows_sample_message_escaped(sample_report: pb.Report) -> None:
    sample_report.summaries[0].sample_error_details[:] = ["bad *key* <b>x</b> a|b"]

    text = render_report(sample_report, "markdown")

    assert "| provider | target | errors | classes | sample message |" in text.splitlines()
    assert "rate limited: 请稍后再试" in text
    assert "bad \\*key\\* \\<b\\>x\\</b\\> a\\|b" in text
    assert "<b>" not in text


def test_sample_error_message_keeps_last_whole_word() -> None:
    # "three" ends exactly where the cut falls, so it stays.
    message = report_data.sample_error_message(error_summary("one two three four"), 14)

    assert message == "one two three…"
