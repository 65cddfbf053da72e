"""The compare command: baseline run against candidate run, per provider x target.

Exit status:
  0  compared; with --fail-on-regression, no regression beyond the noise
  1  --fail-on-regression and a regression beyond the noise
  2  invalid input: unknown run id, missing or invalid report file, no group in common
  3  controller unreachable or its TLS handshake failed
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from google.protobuf.json_format import ParseDict, ParseError

from llmping.cli import compare_data, compare_render
from llmping.cli.client import ClientConfig, ControlClient
from llmping.cli.report import output_options, write_output
from llmping.cli.run_cmds import controller_options, exit_on_error, stderr_console, stdout_console
from llmping.errors import InputError
from llmping.tls import ClientTlsOptions
from llmping.v1 import llmping_pb2 as pb

SAVE_HINT = "save one with `llmping report RUN_ID --format json --output FILE`"


def looks_like_path(value: str) -> bool:
    """Return whether a value that names no file was meant as one, not as a run id.

    Run ids such as ``20250101-120000-3fa2c1`` never contain a path separator or ``.json``.
    """
    return "/" in value or "\\" in value or value.lower().endswith(".json")


def read_report_file(role: str, path: Path) -> pb.Report:
    """Parse a report saved with `llmping report --format json`; raise InputError if invalid."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(
            f"cannot read the {role} report file {path}: {error}, check the path"
        ) from error
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"the {role} file {path} is not JSON ({error.msg} at line {error.lineno}), {SAVE_HINT}"
        ) from error
    # Every saved report has these keys, because the JSON format writes default values too.
    if not isinstance(document, dict) or not {"run", "summaries"} <= document.keys():
        raise InputError(
            f"the {role} file {path} is not an llmping report (no run and summaries), {SAVE_HINT}"
        )
    try:
        # Fields added by a newer llmping are skipped rather than rejected.
        return ParseDict(document, pb.Report(), ignore_unknown_fields=True)
    except ParseError as error:
        raise InputError(f"the {role} file {path} is not a valid report: {error}") from error


class ReportSource:
    """Fetch reports from report files, or from the controller, opened only when needed."""

    def __init__(self, controller: str, token: str | None, tls: ClientTlsOptions) -> None:
        self._controller = controller
        self._token = token
        self._tls = tls
        self._client: ControlClient | None = None

    def __enter__(self) -> ReportSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._client is not None:
            self._client.close()

    def load(self, role: str, value: str) -> pb.Report:
        """Return the report named by ``value``: an existing file, or else a run id."""
        path = Path(value)
        if path.is_file():
            return read_report_file(role, path)
        if path.exists():
            raise InputError(f"the {role} {value} is not a file, pass a report file or a run id")
        if looks_like_path(value):
            raise InputError(f"the {role} report file {value} was not found, {SAVE_HINT}")
        return self._fetch(role, value)

    def _fetch(self, role: str, run_id: str) -> pb.Report:
        if self._client is None:
            tls = self._tls.load()
            config = ClientConfig(address=self._controller, token=self._token or None, tls=tls)
            self._client = ControlClient(config)
        try:
            return self._client.get_report(run_id)
        except InputError as error:
            # The controller's message names the run and the command that lists runs.
            raise InputError(
                f"cannot get the {role} report: {error}; a report file also works"
            ) from error


def check_common_groups(comparison: compare_data.RunComparison, values: tuple[str, str]) -> None:
    if comparison.compared_groups():
        return
    raise InputError(
        f"runs {values[0]} and {values[1]} have no provider x target in common, "
        "compare runs of plans that share at least one provider and target"
    )


@click.command("compare")
@click.argument("baseline")
@click.argument("candidate")
@output_options(compare_render.COMPARE_FORMATS)
@click.option(
    "--fail-on-regression",
    is_flag=True,
    help="Exit 1 when TTFT or E2E is slower, or the error rate higher, beyond the noise.",
)
@click.option(
    "--max-slowdown-pct",
    type=click.FloatRange(min=0.0),
    default=None,
    help="With --fail-on-regression, accept a slower mean TTFT or E2E when its change "
    "is at most this percentage of the baseline mean.",
)
@controller_options
@exit_on_error
def compare(
    baseline: str,
    candidate: str,
    report_format: str,
    output: Path | None,
    fail_on_regression: bool,
    max_slowdown_pct: float | None,
    controller: str,
    token: str | None,
    tls: ClientTlsOptions,
) -> None:
    """Compare run CANDIDATE against run BASELINE, per provider and target.

    Each of BASELINE and CANDIDATE is a report file saved with `llmping report
    --format json`, or else a run id on the controller. A change is within noise when
    the 95% confidence interval of the difference contains 0.
    """
    stderr = stderr_console()
    with ReportSource(controller, token, tls) as source:
        baseline_report = source.load("baseline", baseline)
        candidate_report = source.load("candidate", candidate)

    comparison = compare_data.compare_reports(baseline_report, candidate_report)
    check_common_groups(comparison, (baseline, candidate))

    stdout = stdout_console()
    if output is None and report_format == "table" and stdout.is_terminal:
        stdout.print(compare_render.render_table(compare_render.printable_comparison(comparison)))
    else:
        text = compare_render.render_comparison(comparison, report_format, max_slowdown_pct)
        write_output(text, output, stdout, stderr)

    if fail_on_regression:
        found = compare_data.regressions(comparison, max_slowdown_pct)
        for regression in found:
            stderr.print(f"error: regression: {regression}")
        if found:
            raise SystemExit(1)
