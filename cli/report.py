"""Report formats by name, and writing a rendered report to stdout or a file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from llmping.cli import report_html, report_table, report_text
from llmping.cli.report_sanitize import printable_report
from llmping.errors import InputError
from llmping.v1 import llmping_pb2 as pb

RENDERERS: dict[str, Callable[[pb.Report], str]] = {
    "table": report_table.table_text,
    "json": report_text.to_json,
    "csv": report_text.to_csv,
    "markdown": report_text.to_markdown,
    "html": report_html.to_html,
}
FORMATS = tuple(RENDERERS)


def output_options(formats: tuple[str, ...]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Return a decorator adding --format (one of ``formats``, table first) and --output."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--output",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Write the report to this file instead of stdout.",
        )(command)
        return click.option(
            "--format",
            "report_format",
            type=click.Choice(formats),
            default="table",
            show_default=True,
            help="Report format.",
        )(command)

    return decorate


report_output_options = output_options(FORMATS)
"""Add --format and --output, the options of every command that prints a report."""


def render_report(report: pb.Report, report_format: str) -> str:
    """Render a report in one of FORMATS, with control characters taken out of its text.

    JSON keeps every string exactly, because it escapes control characters itself.
    """
    renderer = RENDERERS.get(report_format)
    if renderer is None:
        raise InputError(
            f"unknown report format {report_format!r}, use one of {', '.join(FORMATS)}"
        )
    if report_format == "json":
        return renderer(report)
    return renderer(printable_report(report))


def emit_report(
    report: pb.Report, report_format: str, output: Path | None, stdout: Console, stderr: Console
) -> None:
    """Write the report to ``output``, or print it; the table keeps its colors on a TTY."""
    if output is None and report_format == "table" and stdout.is_terminal:
        report_table.print_table(printable_report(report), stdout)
        return
    write_output(render_report(report, report_format), output, stdout, stderr)


def write_output(text: str, output: Path | None, stdout: Console, stderr: Console) -> None:
    """Write rendered text to ``output``, or to stdout as UTF-8 when it is None."""
    if output is None:
        _write_utf8(stdout, text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InputError(
            f"cannot write the report to {output}: {error.strerror}, check the path"
        ) from error
    stderr.print(f"report written to {output}", highlight=False)


def _write_utf8(console: Console, text: str) -> None:
    """Write text as UTF-8 regardless of the locale, so Chinese prompts survive a pipe."""
    stream = console.file
    stream.flush()
    binary = getattr(stream, "buffer", None)
    if binary is None:
        stream.write(text)
    else:
        binary.write(text.encode("utf-8"))
        binary.flush()
