"""Provider text with terminal escapes, markup and HTML renders inert in every format.

The hand-made report carries an OSC title change, a color change, a C1 CSI, rich
markup and an HTML tag in the strings that providers and agents control.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from llmping.cli import report_data, report_table, run_cmds
from llmping.cli.progress import progress_line, progress_table
from llmping.cli.report import FORMATS, emit_report, render_report
from llmping.cli.report_sanitize import clean_text, printable_report
from llmping.v1 import llmping_pb2 as pb

ESCAPES = "\u001b]0;TITLE\u0007\u001b[31m"
HOSTILE_ERROR = f"{ESCAPES}red [/x] [bold]<script>alert(1)</script>\r\nnext line\u009b2J"
HOSTILE_PROVIDER = "relay\u001b[2J"
HOSTILE_MODEL = "gpt-4o\u009b31m"
HOSTILE_DETAIL = "no such model\u001b]8;;http://example.invalid\u0007link"
# Every C0 character, DEL and every C1 character.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def hostile_report(report: pb.Report) -> pb.Report:
    """Put hostile strings where providers and agents supply text."""
    report.plan.providers[1].name = HOSTILE_PROVIDER
    report.plan.providers[1].model = HOSTILE_MODEL
    for summary in report.summaries:
        if summary.provider == "中转站 A":
            summary.provider = HOSTILE_PROVIDER
            summary.model = HOSTILE_MODEL
        summary.sample_error_details[:] = [HOSTILE_ERROR]
        if summary.not_available:
            summary.not_available_detail = HOSTILE_DETAIL
    report.summaries[3].error_classes["http_5\u001b[0m"] = 1
    report.run.reason = f"agent lost {ESCAPES}\nnext line"
    report.threshold_results[1].passed = False
    report.threshold_results[1].provider = HOSTILE_PROVIDER
    report.agent_diagnoses[0].diagnosis.verdict = f"slow {ESCAPES}"
    report.agent_diagnoses[0].agent_id = "agent\u0007"
    for bucket in report.timeline:
        if bucket.provider == "中转站 A":
            bucket.provider = HOSTILE_PROVIDER
    return report


@pytest.fixture
def report(sample_report: pb.Report) -> pb.Report:
    return hostile_report(sample_report)


def control_characters(text: str) -> list[str]:
    """Return the control characters in text, line breaks of the layout excepted."""
    return [char for char in CONTROL.findall(text) if char != "\n"]


def test_clean_text_replaces_controls() -> None:
    assert clean_text("a\u001b[31mb") == "a\\x1b[31mb"
    assert clean_text("a\nb\tc\r\nd") == "a b c  d"
    assert clean_text("x\u009by\u007fz") == "x\\x9by\\x7fz"
    assert clean_text("写一篇 ★ ok") == "写一篇 ★ ok"


def test_clean_text_keeps_lines_when_asked() -> None:
    assert clean_text("a: 1\n\tb\u001b", keep_lines=True) == "a: 1\n\tb\\x1b"


@pytest.mark.parametrize("report_format", [f for f in FORMATS if f != "json"])
def test_rendered_report_has_no_controls(report: pb.Report, report_format: str) -> None:
    text = render_report(report, report_format)
    assert control_characters(text) == []


def test_table_shows_escapes_visibly(report: pb.Report) -> None:
    text = render_report(report, "table")
    assert "\\x1b]0;TITLE\\x07" in text
    assert "relay\\x1b[2J" in text
    assert "gpt-4o\\x9b31m" in text
    assert "[/x]" in text  # rich markup printed as text, not applied
    assert "[bold]" in text


def test_table_on_terminal_has_no_provider_escapes(report: pb.Report) -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200, color_system="standard")
    emit_report(report, "table", None, console, console)
    text = buffer.getvalue()
    assert "\u001b]" not in text  # rich itself only sends CSI color sequences
    assert "\u0007" not in text
    assert "\u009b" not in text
    assert "\u001b[2J" not in text
    assert "TITLE" in text


def test_html_is_escaped(report: pb.Report) -> None:
    html = render_report(report, "html")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "relay\\x1b[2J" in html
    assert control_characters(html) == []


def test_markdown_and_csv_keep_one_line_per_row(report: pb.Report) -> None:
    markdown = render_report(report, "markdown")
    assert "next line" in markdown
    assert not any(line.startswith("next line") for line in markdown.splitlines())
    rows = render_report(report, "csv").splitlines()
    assert len(rows) == 1 + len(report.summaries)


def test_json_keeps_text_exactly_but_escaped(report: pb.Report) -> None:
    text = render_report(report, "json")
    assert CONTROL.findall(text.replace("\n", "")) == []
    document = json.loads(text)
    assert document["summaries"][0]["sample_error_details"] == [HOSTILE_ERROR]
    assert document["plan"]["providers"][1]["model"] == HOSTILE_MODEL


def test_plan_yaml_keeps_its_lines(report: pb.Report) -> None:
    report.plan.source_yaml = "name: x\nload:\n\tconcurrency: 2\u001b\n"
    cleaned = printable_report(report)
    assert cleaned.plan.source_yaml == "name: x\nload:\n\tconcurrency: 2\\x1b\n"
    assert cleaned.summaries[0].sample_error_details[0].startswith("\\x1b]0;TITLE")
    assert report.summaries[0].sample_error_details[0] == HOSTILE_ERROR  # the input is kept


def test_failure_reasons_are_clean(report: pb.Report) -> None:
    report.run.state = pb.PARTIAL
    reasons = report_data.failure_reasons(report)
    assert len(reasons) == 2
    for reason in reasons:
        assert control_characters(reason) == []
    assert "relay\\x1b[2J" in reasons[1]


def test_runs_and_agents_tables_are_clean() -> None:
    runs = [pb.RunInfo(run_id="r1", plan_name="p\u001b[2J", reason=f"[/x] {ESCAPES}")]
    agents = [
        pb.AgentInfo(
            agent_id="a\u001b[1m",
            labels={"region": "sh\u009b2J"},
            hostname="[bold]host\u0007",
            version="1\u001b]0;x\u0007",
        )
    ]
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None)
    console.print(run_cmds.runs_table(runs))
    console.print(run_cmds.agents_table(agents))
    text = buffer.getvalue()
    assert control_characters(text) == []
    assert "[/x]" in text
    assert "[bold]host" in text


def test_progress_is_clean() -> None:
    progress = pb.RunProgress(
        run=pb.RunInfo(run_id="r1", state=pb.RUNNING),
        targets=[pb.TargetProgress(target="t\u001b[2J[/x]", requests_done=1)],
    )
    assert control_characters(progress_line(progress)) == []
    buffer = io.StringIO()
    Console(file=buffer, width=120, color_system=None).print(progress_table(progress))
    assert control_characters(buffer.getvalue()) == []
    assert "[/x]" in buffer.getvalue()


def test_report_table_builds_with_markup_like_text(report: pb.Report) -> None:
    group = report_table.render(printable_report(report))
    buffer = io.StringIO()
    Console(file=buffer, width=160, color_system=None).print(group)
    assert "[/x]" in buffer.getvalue()
    assert "[bold]" in buffer.getvalue()


def test_printable_report_cleans_maps_and_structs() -> None:
    report = pb.Report()
    provider = report.plan.providers.add(name="a", headers={"k\u001b": "v\u0007"})
    provider.extra_body.update({"x\u001b": "y\u009b", "list": ["z\u0007", {"q\u001b": 2}]})
    report.summaries.add(provider="a", error_classes={"e\u001b": 3, "f": 1})

    cleaned = printable_report(report)

    assert dict(cleaned.plan.providers[0].headers) == {"k\\x1b": "v\\x07"}
    body = cleaned.plan.providers[0].extra_body
    assert body["x\\x1b"] == "y\\x9b"
    assert body["list"][0] == "z\\x07"
    assert body["list"][1]["q\\x1b"] == 2
    assert dict(cleaned.summaries[0].error_classes) == {"e\\x1b": 3, "f": 1}
