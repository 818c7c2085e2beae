"""The data-quality report as one self-contained HTML page: every space's expectation
results, column profile and joins, read from `ml.quality_results`, `ml.column_profile` and
`ml.join_report`. Inline CSS, no script and no link to anything outside the file, so it
opens the same on an air-gapped laptop as anywhere (the Great Expectations Data Docs site
loads its styles and scripts from public CDNs)."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

from pipeline.spec import Spec
from pipeline.warehouse.connection import Warehouse, table_exists
from pipeline.warehouse.sql import literal, quote

PAGE = "report.html"
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
tr.failed td, tr.error td { background: #fde2e2; }
tr.warn td { background: #fff4d6; }
tr.learned td { color: #555; }
.summary { margin: 0.3em 0; }
"""


def page_path(spec: Spec) -> Path:
    return Path(spec.artifacts) / "quality" / PAGE


def _rows(con, query: str) -> tuple[list[str], list[tuple]]:
    cursor = con.execute(query)
    return [d[0] for d in cursor.description], cursor.fetchall()


def _table(columns: list[str], rows: list[tuple], status_column: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        status = ""
        if status_column is not None:
            status = f' class="{html.escape(str(row[columns.index(status_column)]))}"'
        cells = "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        body.append(f"<tr{status}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_quality_page(spec: Spec) -> Path:
    """Write the page for every space from the warehouse's `ml` tables; returns its path."""
    warehouse = Warehouse.of(spec)
    ml = spec.output_schema
    sections = []
    with warehouse.connect(read_only=True) as con:
        present = {
            name
            for name in ("quality_results", "join_report", "column_profile")
            if table_exists(con, f"{ml}.{name}")
        }
        for space in spec.spaces:
            parts = [f'<section id="space-{html.escape(space)}"><h2>{html.escape(space)}</h2>']
            if "quality_results" in present:
                columns, rows = _rows(
                    con,
                    f'select status, expectation, "column", unexpected_count, '
                    f"round(unexpected_percent, 3) as unexpected_percent, evaluated_on, "
                    f"evaluated_rows, checked_at "
                    f"from {quote(ml)}.quality_results where space = {literal(space)} "
                    f"order by status = 'failed' desc, expectation, \"column\"",
                )
                failed = sum(r[0] == "failed" for r in rows)
                parts.append(
                    f'<p class="summary">{len(rows)} expectation(s), {failed} failed</p>'
                    if rows
                    else '<p class="summary">no expectation results yet</p>'
                )
                parts.append(_table(columns, rows, "status"))
            if "join_report" in present:
                columns, rows = _rows(
                    con,
                    f"select status, parent, child, kind, foreign_key, round(coverage, 4) as "
                    f"coverage, orphans, null_keys, message "
                    f"from {quote(ml)}.join_report where space = {literal(space)} order by child",
                )
                if rows:
                    parts.append("<h3>joins</h3>" + _table(columns, rows, "status"))
            if "column_profile" in present:
                columns, rows = _rows(
                    con,
                    f'select "column", detected_type, role, round(null_fraction, 4) as '
                    f"null_fraction, distinct_count, excluded, reason "
                    f"from {quote(ml)}.column_profile where space = {literal(space)} "
                    f'order by "column"',
                )
                if rows:
                    parts.append("<h3>columns</h3>" + _table(columns, rows))
            parts.append("</section>")
            sections.append("".join(parts))
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Data quality: {html.escape(warehouse.name)}</title>"
        f"<style>{STYLE}</style></head><body>"
        f"<h1>Data quality of {html.escape(warehouse.name)}</h1>"
        f"<p>Written {now} from {ml}.quality_results, {ml}.join_report and "
        f"{ml}.column_profile. Expectation counts evaluated on the <i>table</i> are exact (SQL "
        f"over every row); on a <i>sample</i>, they are Great Expectations' over "
        f"<code>evaluated_rows</code> sampled rows.</p>{''.join(sections)}</body></html>"
    )
    path = page_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
