"""Render a :class:`ReportResult` as CSV, a Rich table or a PNG chart (matplotlib, Agg)."""

from __future__ import annotations

import csv
import io
from typing import Any

from rich.markup import escape
from rich.table import Table

from leadflow.reports.registry import Column, ReportResult


def _cell(col: Column, value: Any) -> str:
    if value is None:
        return ""
    if col.kind == "money":
        return f"{float(value):,.2f}"
    if col.kind == "pct":
        return f"{float(value):.1f}"
    if col.kind == "days":
        return f"{float(value):.1f}"
    if col.kind == "int":
        return f"{int(value):,}"
    return str(value)


def to_csv(result: ReportResult) -> str:
    """Raw values (no thousands separators), one header row of column keys."""

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.key for c in result.columns])
    for row in result.rows:
        writer.writerow(["" if row.get(c.key) is None else row.get(c.key) for c in result.columns])
    return buf.getvalue()


def to_table(result: ReportResult) -> Table:
    table = Table(title=result.title, caption="; ".join(result.notes) or None)
    for col in result.columns:
        numeric = col.kind in ("int", "money", "pct", "days")
        table.add_column(col.label, justify="right" if numeric else "left")
    for row in result.rows:
        table.add_row(*(escape(_cell(c, row.get(c.key))) for c in result.columns))
    return table


def to_png(result: ReportResult, *, width: float = 10.0, height: float = 6.0) -> bytes:
    """The report's chart as PNG bytes."""

    import matplotlib

    matplotlib.use("Agg")  # no display: servers and CI
    import matplotlib.pyplot as plt

    chart = result.chart
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    try:
        if chart is None or not result.rows:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=14)
            ax.set_axis_off()
        else:
            rows = result.rows
            if chart.exclude_total and len(rows) > 1:
                rows = [r for r in rows if r.get(chart.x) != "total"]
            labels = {c.key: c.label for c in result.columns}
            if chart.kind == "funnel":
                _funnel(ax, result, chart.y, labels)
            else:
                xs = [str(r.get(chart.x) or "") for r in rows]
                series = [[float(r.get(k) or 0) for r in rows] for k in chart.y]
                positions = list(range(len(xs)))
                if chart.kind == "barh":
                    ax.barh(positions, series[0], color="#3b6ea5")
                    ax.set_yticks(positions, xs)
                    ax.invert_yaxis()
                    ax.set_xlabel(chart.ylabel)
                elif chart.kind == "stacked":
                    bottom = [0.0] * len(xs)
                    for key, values in zip(chart.y, series, strict=True):
                        ax.bar(positions, values, bottom=bottom, label=labels.get(key, key))
                        bottom = [a + b for a, b in zip(bottom, values, strict=True)]
                    ax.set_xticks(positions, xs, rotation=45, ha="right")
                    ax.legend()
                    ax.set_ylabel(chart.ylabel)
                elif chart.kind == "line":
                    for key, values in zip(chart.y, series, strict=True):
                        ax.plot(positions, values, marker="o", label=labels.get(key, key))
                    ax.set_xticks(positions, xs, rotation=45, ha="right")
                    ax.legend()
                else:
                    n = len(chart.y)
                    w = 0.8 / n
                    for i, (key, values) in enumerate(zip(chart.y, series, strict=True)):
                        ax.bar(
                            [x + (i - (n - 1) / 2) * w for x in positions],
                            values,
                            width=w,
                            label=labels.get(key, key),
                        )
                    ax.set_xticks(positions, xs, rotation=45, ha="right")
                    if n > 1:
                        ax.legend()
                    ax.set_ylabel(chart.ylabel)
            ax.set_title(chart.title or result.title)
        fig.tight_layout()
        out = io.BytesIO()
        fig.savefig(out, format="png")
        return out.getvalue()
    finally:
        plt.close(fig)


def _funnel(ax: Any, result: ReportResult, keys: tuple[str, ...], labels: dict[str, str]) -> None:
    """Centered horizontal bars, widest at the top, each labelled with its count and the
    conversion from the step above (from the total row)."""

    total = next((r for r in result.rows if r.get("group") == "total"), result.rows[-1])
    values = [float(total.get(k) or 0) for k in keys]
    top = max(values) or 1.0
    for i, (key, v) in enumerate(zip(keys, values, strict=True)):
        ax.barh(i, v, left=(top - v) / 2, color="#3b6ea5", height=0.8)
        conv = "" if i == 0 or not values[i - 1] else f"  ({100 * v / values[i - 1]:.1f}%)"
        ax.text(
            top / 2, i, f"{labels.get(key, key)}: {int(v):,}{conv}", ha="center", va="center", color="black"
        )
    ax.set_yticks([])
    ax.invert_yaxis()
    ax.set_xlim(0, top)
    ax.set_xticks([])
