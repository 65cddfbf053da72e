"""Terminal report: provider rows x target columns, like the comparison tables users share.

Every cell is a rich Text, never a str, because rich would read a str as markup: a
provider message such as "[/x]" would raise MarkupError and "[bold]" would style it.
"""

from __future__ import annotations

import io

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from llmping.cli import report_data as data
from llmping.v1 import llmping_pb2 as pb

TABLE_WIDTH = 140


def comparison_table(report: pb.Report) -> Table:
    """Build the provider x target grid; each cell lists its figures with their n."""
    grid = data.summary_grid(report)
    marks = data.fastest_marks(report)
    table = Table(title="Latency by provider and target", show_lines=True, title_justify="left")
    table.add_column("provider", style="bold")
    for target in data.target_names(report):
        table.add_column(target)
    for provider in data.provider_names(report):
        label = Text(provider)
        model = data.model_of(report, provider)
        if model:
            label.append(f"\n{model}", style="dim")
        cells: list[RenderableType] = [label]
        for target in data.target_names(report):
            key = (provider, target)
            lines = data.cell_lines(grid.get(key), marks.get(key, ""))
            cells.append(_cell_text(lines))
        table.add_row(*cells)
    return table


def _cell_text(lines: list[str]) -> Text:
    text = Text("\n".join(lines))
    if lines == [data.NOT_AVAILABLE]:
        text.stylize("yellow")
    text.highlight_regex(r"[★]+", "yellow")
    return text


def _not_available_section(report: pb.Report) -> list[RenderableType]:
    notes = data.not_available_notes(report)
    if not notes:
        return []
    return [Text("N/A: the provider does not offer the model", style="bold"), *map(Text, notes)]


def _noise_section(report: pb.Report) -> list[RenderableType]:
    notes = data.noise_notes(report)
    if not notes:
        return []
    lines: list[RenderableType] = [
        Text("Differences within noise (95% confidence intervals of mean E2E overlap)", "bold")
    ]
    for note in notes:
        lines.append(
            Text(
                f"{note.target}: {note.faster} {data.format_ms(note.faster_mean_ms)} ms vs "
                f"{note.slower} {data.format_ms(note.slower_mean_ms)} ms"
            )
        )
    return lines


def _errors_section(report: pb.Report) -> list[RenderableType]:
    summaries = data.summaries_with_errors(report)
    if not summaries:
        return []
    table = Table(title="Errors", title_justify="left")
    for column in ("provider", "target", "errors", *data.ERROR_GROUPS):
        table.add_column(column)
    # The message wraps at spaces, and fold splits only a word longer than the column.
    table.add_column("sample message", ratio=1, overflow="fold")
    for summary in summaries:
        grouped = data.group_error_classes(summary.error_classes)
        groups = [", ".join(f"{name} x{count}" for name, count in grouped[g]) for g in grouped]
        sample = data.sample_error_message(summary)
        cells = [summary.provider, summary.target, f"{summary.errors}/{summary.requests}"]
        table.add_row(*map(Text, [*cells, *groups, sample]))
    return [table]


def _thresholds_section(report: pb.Report) -> list[RenderableType]:
    if not report.threshold_results:
        return []
    table = Table(title="Thresholds", title_justify="left")
    for column in ("rule", "provider @ target", "observed", "result"):
        table.add_column(column)
    for result in report.threshold_results:
        verdict = Text("pass", "green") if result.passed else Text("FAIL", "bold red")
        table.add_row(
            Text(data.describe_threshold(result.threshold)),
            Text(data.threshold_scope(result)),
            Text(f"{result.observed:g}"),
            verdict,
        )
    return [table]


def _diagnosis_section(report: pb.Report) -> list[RenderableType]:
    if not report.agent_diagnoses:
        return []
    table = Table(title="Agent self-diagnosis", title_justify="left")
    for column in data.diagnosis_columns(report):
        table.add_column(column)
    for row in data.diagnosis_rows(report):
        table.add_row(*map(Text, row))
    return [table]


def render(report: pb.Report) -> Group:
    """Build every section of the terminal report."""
    parts: list[RenderableType] = [Text("\n".join(data.header_lines(report)))]
    parts.append(comparison_table(report))
    parts.append(Text(data.LEGEND, style="dim"))
    parts += _not_available_section(report)
    parts += _noise_section(report)
    parts += _errors_section(report)
    parts += _thresholds_section(report)
    parts += _diagnosis_section(report)
    return Group(*parts)


def print_table(report: pb.Report, console: Console) -> None:
    console.print(render(report))


def table_text(report: pb.Report, width: int = TABLE_WIDTH) -> str:
    """Render the terminal report as plain text, for files and pipes."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None)
    console.print(render(report))
    return buffer.getvalue()
