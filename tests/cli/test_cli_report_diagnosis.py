"""The self-diagnosis table: the column for requests that failed inside the agent."""

from __future__ import annotations

import pytest

from llmping.cli import report_data
from llmping.cli.report import render_report
from llmping.v1 import llmping_pb2 as pb


def add_local_failures(report: pb.Report, count: int) -> None:
    report.agent_diagnoses.append(
        pb.AgentDiagnosisReport(
            agent_id="agent-tk-1",
            assignment_id="a2",
            target="tokyo",
            diagnosis=pb.AgentDiagnosis(
                requests_failed_locally=count,
                verdict=f"{count} requests failed inside the agent: out of file descriptors",
            ),
        )
    )


def test_diagnosis_column_absent_without_failures(sample_report: pb.Report) -> None:
    columns = report_data.diagnosis_columns(sample_report)

    assert report_data.FAILED_LOCALLY_COLUMN not in columns
    assert all(len(row) == len(columns) for row in report_data.diagnosis_rows(sample_report))


def test_diagnosis_column_shows_failures(sample_report: pb.Report) -> None:
    add_local_failures(sample_report, 37)

    columns = report_data.diagnosis_columns(sample_report)
    rows = list(report_data.diagnosis_rows(sample_report))

    assert columns[-1] == report_data.FAILED_LOCALLY_COLUMN
    assert [row[-1] for row in rows] == ["0", "37"]
    assert all(len(row) == len(columns) for row in rows)


@pytest.mark.parametrize("report_format", ["table", "markdown", "html"])
def test_report_formats_show_failed_column(sample_report: pb.Report, report_format: str) -> None:
    plain = render_report(sample_report, report_format)
    add_local_failures(sample_report, 37)

    text = render_report(sample_report, report_format)

    assert report_data.FAILED_LOCALLY_COLUMN not in plain
    assert report_data.FAILED_LOCALLY_COLUMN in text
    if report_format != "table":
        # The terminal table wraps long verdicts, so only the other formats keep it whole.
        assert "37 requests failed inside the agent" in text
