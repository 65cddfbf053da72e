"""Self-contained HTML report: inline CSS and inline SVG, no scripts, fonts or CDNs."""

from __future__ import annotations

from html import escape

from llmping.cli import report_data as data
from llmping.cli import report_svg as svg
from llmping.v1 import llmping_pb2 as pb

# System fonts only; the CJK fallbacks let Chinese prompts and names render.
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", "PingFang SC", "Microsoft YaHei",
       "Noto Sans CJK SC", sans-serif; margin: 2rem; color: #111; max-width: 1200px; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #d1d5db; padding: 0.35rem 0.6rem; vertical-align: top;
         text-align: left; font-size: 0.9rem; }
th { background: #f3f4f6; }
td.na { color: #b45309; font-weight: bold; }
.model { color: #6b7280; font-size: 0.8rem; }
.stars { color: #ca8a04; }
.fail { color: #b91c1c; font-weight: bold; } .pass { color: #047857; }
.meta { color: #374151; margin: 0.1rem 0; }
svg.plot { display: block; margin: 0.5rem 0 1.5rem; font-size: 11px; }
svg .grid { stroke: #e5e7eb; } svg .tick { fill: #6b7280; } svg .label { fill: #111; }
svg .plot-title { font-weight: bold; font-size: 13px; }
pre { background: #f9fafb; padding: 0.8rem; overflow-x: auto; }
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    """Build a table; header cells are escaped here, row cells must already be HTML."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(text: str, css_class: str = "") -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<td{attribute}>{escape(text)}</td>"


def _grid_section(report: pb.Report) -> str:
    grid = data.summary_grid(report)
    marks = data.fastest_marks(report)
    targets = data.target_names(report)
    rows = []
    for provider in data.provider_names(report):
        model = data.model_of(report, provider)
        label = f"<th>{escape(provider)}<div class='model'>{escape(model)}</div></th>"
        cells = [label]
        for target in targets:
            key = (provider, target)
            lines = data.cell_lines(grid.get(key), marks.get(key, ""))
            css_class = "na" if lines == [data.NOT_AVAILABLE] else ""
            html_lines = [_html_line(line) for line in lines]
            attribute = f' class="{css_class}"' if css_class else ""
            cells.append(f"<td{attribute}>{'<br>'.join(html_lines)}</td>")
        rows.append(cells)
    legend = f"<p class='meta'>{escape(data.LEGEND)}</p>"
    return "<h2>Latency by provider and target</h2>" + _table(["provider", *targets], rows) + legend


def _html_line(line: str) -> str:
    if "★" in line or "☆" in line:
        return f"<span class='stars'>{escape(line)}</span>"
    return escape(line)


def _notes_section(report: pb.Report) -> str:
    parts = []
    notes = data.not_available_notes(report)
    if notes:
        items = "".join(f"<li>{escape(note)}</li>" for note in notes)
        parts.append(f"<p><b>N/A</b>: the provider does not offer the model.</p><ul>{items}</ul>")
    noise = data.noise_notes(report)
    if noise:
        items = "".join(
            f"<li>{escape(n.target)}: {escape(n.faster)} {data.format_ms(n.faster_mean_ms)} ms vs "
            f"{escape(n.slower)} {data.format_ms(n.slower_mean_ms)} ms</li>"
            for n in noise
        )
        parts.append(
            "<p><b>Within noise</b>: the 95% confidence intervals of mean E2E overlap.</p>"
            f"<ul>{items}</ul>"
        )
    return "".join(parts)


def _series_label(provider: str, target: str) -> str:
    return f"{provider} @ {target}"


def _provider_colors(report: pb.Report) -> dict[str, str]:
    """Give each provider one color in every plot."""
    return {name: svg.color_for(i) for i, name in enumerate(data.provider_names(report))}


def _target_dashes(report: pb.Report) -> dict[str, str]:
    """Give each target one line style in the timelines: solid, dashed, dotted, ..."""
    return {name: svg.dash_for(i) for i, name in enumerate(data.target_names(report))}


def _measured_summaries(report: pb.Report) -> list[pb.Summary]:
    grid = data.summary_grid(report)
    return [
        grid[(p, t)]
        for p in data.provider_names(report)
        for t in data.target_names(report)
        if (p, t) in grid and not grid[(p, t)].not_available
    ]


def _distribution_section(report: pb.Report) -> str:
    colors = _provider_colors(report)
    plots = []
    for metric, title in (("e2e_ms", "E2E latency"), ("ttft_ms", "Time to first token")):
        rows = [
            svg.DistributionRow(
                _series_label(s.provider, s.target), getattr(s, metric), colors[s.provider]
            )
            for s in _measured_summaries(report)
        ]
        plots.append(
            svg.distribution_plot(rows, f"{title}: min-max line, p50-p95 bar, mean with 95% CI")
        )
    return "<h2>Latency distribution</h2>" + "".join(plots)


def _timeline_series(report: pb.Report, value: str) -> list[svg.Series]:
    """Group timeline buckets by provider @ target; value is rps or e2e_p50_ms.

    Providers that do not offer the model are left out: their instant errors would
    set the scale and flatten every other line.
    """
    measured = {(s.provider, s.target) for s in _measured_summaries(report)}
    buckets = [b for b in report.timeline if (b.provider, b.target) in measured]
    if not buckets:
        return []
    start_ns = min(b.bucket_start_unix_ns for b in buckets)
    points: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for bucket in sorted(buckets, key=lambda b: b.bucket_start_unix_ns):
        key = (bucket.provider, bucket.target)
        offset_s = (bucket.bucket_start_unix_ns - start_ns) / 1e9
        if value == "rps":
            figure = bucket.requests / bucket.bucket_s if bucket.bucket_s else 0.0
        else:
            if bucket.requests == bucket.errors:
                continue  # no successful request, so no latency in this bucket
            figure = bucket.e2e_p50_ms
        points.setdefault(key, []).append((offset_s, figure))
    colors = _provider_colors(report)
    dashes = _target_dashes(report)
    return [
        svg.Series(_series_label(provider, target), series, colors[provider], dashes[target])
        for (provider, target), series in points.items()
    ]


def _timeline_section(report: pb.Report) -> str:
    if not report.timeline:
        return ""
    return (
        "<h2>Timeline</h2>"
        + svg.line_plot(_timeline_series(report, "rps"), "Requests per second", "requests/s")
        + svg.line_plot(_timeline_series(report, "e2e"), "E2E p50 over time", "ms")
    )


def _errors_section(report: pb.Report) -> str:
    summaries = data.summaries_with_errors(report)
    if not summaries:
        return "<h2>Errors</h2><p>No errors.</p>"
    rows = []
    plot_rows = []
    for summary in summaries:
        grouped = data.group_error_classes(summary.error_classes)
        rows.append(
            [
                _td(summary.provider),
                _td(summary.target),
                _td(f"{summary.errors}/{summary.requests}"),
                *[_td(", ".join(f"{n} x{c}" for n, c in grouped[g])) for g in data.ERROR_GROUPS],
                _td("\n".join(summary.sample_error_details[:3])),
            ]
        )
        counts = {g: sum(c for _, c in grouped[g]) for g in data.ERROR_GROUPS}
        plot_rows.append(
            svg.ErrorRow(_series_label(summary.provider, summary.target), summary.requests, counts)
        )
    header = ["provider", "target", "errors", *data.ERROR_GROUPS, "sample messages"]
    return (
        "<h2>Errors</h2>" + svg.error_plot(plot_rows, "Error rate by group") + _table(header, rows)
    )


def _thresholds_section(report: pb.Report) -> str:
    if not report.threshold_results:
        return ""
    rows = [
        [
            _td(data.describe_threshold(r.threshold)),
            _td(data.threshold_scope(r)),
            _td(f"{r.observed:g}"),
            _td("pass", "pass") if r.passed else _td("FAIL", "fail"),
        ]
        for r in report.threshold_results
    ]
    return "<h2>Thresholds</h2>" + _table(["rule", "scope", "observed", "result"], rows)


def _diagnosis_section(report: pb.Report) -> str:
    if not report.agent_diagnoses:
        return ""
    rows = [[_td(cell) for cell in row] for row in data.diagnosis_rows(report)]
    return "<h2>Agent self-diagnosis</h2>" + _table(data.diagnosis_columns(report), rows)


def _plan_section(report: pb.Report) -> str:
    if not report.plan.source_yaml:
        return ""
    source = escape(report.plan.source_yaml)
    return f"<h2>Plan</h2><details><summary>YAML</summary><pre>{source}</pre></details>"


def to_html(report: pb.Report) -> str:
    """Render a whole report as one HTML page that opens offline."""
    title = f"llmping report: {report.plan.name or report.run.plan_name}"
    meta = "".join(f"<p class='meta'>{escape(line)}</p>" for line in data.header_lines(report))
    body = [
        f"<h1>{escape(title)}</h1>",
        meta,
        _grid_section(report),
        _notes_section(report),
        _distribution_section(report),
        _timeline_section(report),
        _errors_section(report),
        _thresholds_section(report),
        _diagnosis_section(report),
        _plan_section(report),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body>\n</html>\n"
    )
