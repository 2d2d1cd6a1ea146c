"""Rendering a report: the terminal's rich tables, Markdown and HTML (Jinja2 templates), CSV and JSON."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from pathlib import Path

from swinctl.report import columns as cols
from swinctl.report.columns import Ctx, TableData
from swinctl.report.model import FORMATS, Report, ReportError

TEMPLATES = Path(__file__).parent / "templates"
STYLES = {"reproduced": "bold green", "below": "bold red", "above": "bold cyan", "smoke": "dim", "running": "yellow",
          "diverged": "bold red",
          "incomplete": "magenta", "no-metrics": "dim", "no-reference": "", "best": "bold"}


def _sections(report: Report, ctx: Ctx, every: bool = True) -> list[tuple[str, TableData]]:
    """(heading, table) of every table of the report, in the order every format shows them; `every=False` (the
    terminal): a long table's first and last lines only (`TableData.hidden` counts the rest)."""
    from swinctl.views import edges

    def data(columns: list, lines: list) -> TableData:
        first, last = edges(lines, every)
        made = cols.table_data(columns, first + last, ctx)
        made.hidden = len(lines) - len(first) - len(last)
        return made

    out = []
    for sweep in report.sweeps:
        out.append((f"sweep {sweep.name}: {sweep.metric}", data(cols.sweep_columns(sweep, report), sweep.points)))
    if report.groups:
        out.append(("seeds", data(cols.SEED_COLUMNS, cols.group_lines(report))))
    for recipe in cols.recipes_of(report):
        out.append((f"runs of {recipe or 'no recipe'}" if recipe or report.runs else "runs",
                    data(cols.run_columns(report, recipe), cols.run_lines(report, recipe))))
    return out


def expected_caption(report: Report, recipe: str | None) -> str:
    """'Δ vs expected: bbox_mAP 42.6 (seed README ...) / 42.7 (MMDet 3.x metafile); segm_mAP ...' of a recipe."""
    expectations = report.expectations.get(recipe or "", [])
    parts = []
    for metric in dict.fromkeys(e.metric for e in expectations):
        values = " / ".join(f"{e.value:g} ({e.source})" for e in expectations if e.metric == metric)
        parts.append(f"{metric} {values}")
    return ("Δ vs expected: " + "; ".join(parts)) if parts else ""


# ---------------------------------------------------------------------------------------------- terminal


def rich_tables(report: Report, *, wide: bool = False, every: bool = True) -> list:
    """The report as rich renderables (sweeps, seed groups, runs, problems), for `console.print(*...)`. Each
    table fits the width it is printed at (:class:`swinctl.views.FitTable`); short run ids unless `wide`.
    `every=False`: a long table shows its first and last rows (a sweep's best and worst points) and says how many
    it leaves out."""
    from rich.text import Text

    from swinctl.views import EDGE_ROWS, Col, FitTable

    ctx = Ctx(report, "table", wide=wide)
    out: list = []
    for heading, data in _sections(report, ctx, every):
        if heading.startswith("runs"):
            title = f"{heading} ({'best' if report.pick == 'best' else 'last'} value judged)"
            caption = expected_caption(report, heading.removeprefix("runs of ")) or None
        else:
            title, caption = f"{heading} ({report.pick})", None
        if data.hidden:
            rows_of = "points" if heading.startswith("sweep") else "rows"
            left_out = (f"{len(data.rows) + data.hidden:,} {rows_of}, {data.hidden:,} not shown (--all shows "
                        "every row; --format csv, md, json or html writes them)")
            caption = f"{caption}\n{left_out}" if caption else left_out
        table = FitTable(*[Col(c.header, justify="right" if c.numeric else "left", wrap=c.wrap, fold=c.fold,
                               optional=c.optional) for c in data.columns], title=title, caption=caption, wide=wide)
        for i, (cells, line) in enumerate(zip(data.rows, data.line_of, strict=True)):
            if data.hidden and i == EDGE_ROWS:
                table.add_row("...", *[""] * (len(data.columns) - 1), end_section=True)
            following = data.line_of[i + 1] if i + 1 < len(data.line_of) else None
            table.add_row(*[Text(cols.text(c), style=STYLES.get(cols.css(c), "")) for c in cells],
                          end_section=_ends_section(line, following))
        if not data.rows:
            table.add_row("(no runs)", *[""] * (len(data.columns) - 1))
        out.append(table)
        if heading.startswith("runs"):
            out += _deviations(report, heading.removeprefix("runs of "), ctx)
    for problem in report.problems:
        out.append(Text(problem, style="yellow"))
    return out


def _deviations(report: Report, recipe: str, ctx: Ctx) -> list:
    """Under a runs table: its runs' deviations from the published setting, one line each (a sentence wraps whole
    at the terminal's width, hanging; with --wide, not at all), a sweep's shared ones once."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    blocks = cols.deviation_blocks(report, None if recipe in ("runs", "no recipe") else recipe, ctx)
    if not blocks:
        return []
    out: list = [Text("deviations from the published setting", style="bold yellow")]
    for whose, found in blocks:
        out.append(Text(f"  {whose}:", style="bold"))
        if ctx.wide:
            out += [Text(f"    {item}", no_wrap=True, overflow="ignore") for item in found]
            continue
        grid = Table.grid()
        grid.add_column(width=4, no_wrap=True)
        grid.add_column(overflow="fold")
        for item in found:
            grid.add_row("", item)
        out.append(grid)
    return [Group(*out)]


def _ends_section(line, following) -> bool:
    if following is None:
        return False
    if isinstance(line, cols.GroupLine):  # a gap between seed groups
        return line.last
    return False


def _rich_text(report: Report, width: int = 200, wide: bool = True) -> str:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, legacy_windows=False)
    for renderable in rich_tables(report, wide=wide):
        console.print(renderable, crop=False)  # wide tables are wider than `width`: whole, never cut
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- templates


def _environment(fmt: str):
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=fmt == "html",
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["md"] = lambda value: str(value).replace("|", "\\|").replace("\n", "<br>")
    return env


def _template_tables(report: Report, fmt: str) -> list[dict]:
    tables = []
    for heading, data in _sections(report, Ctx(report, fmt)):
        rows = [{"cells": [{"text": cols.text(c), "cls": " ".join(x for x in (cols.css(c), "num" if col.numeric
                                                                              else "") if x)}
                           for c, col in zip(cells, data.columns, strict=True)],
                 "cls": "best" if any(cols.css(c) == "best" for c in cells) else ""}
                for cells in data.rows]
        kind = heading.split()[0]
        sweep = next((s for s in report.sweeps if kind == "sweep" and heading.startswith(f"sweep {s.name}:")), None)
        tables.append({"kind": kind, "title": heading[:1].upper() + heading[1:], "rows": rows,
                       "headers": [c.header for c in data.columns],  # an `expected` column: no caption needed
                       "deviations": sweep.deviations if sweep else []})  # once for every run of the sweep
    return tables


def _markdown(report: Report) -> str:
    return _environment("md").get_template("report.md.j2").render(
        report=report, tables=_template_tables(report, "md"))


def _html(report: Report) -> str:
    from swinctl.report.plots import figures

    plots: dict[str, list[dict]] = {}  # per recipe, in the order drawn
    for drawn in figures(report):
        plots.setdefault(drawn.recipe, []).append(
            {"name": drawn.name, "caption": drawn.caption, "width": drawn.width, "height": drawn.height,
             "smoke": drawn.smoke, "data": base64.b64encode(drawn.png).decode("ascii")})
    return _environment("html").get_template("report.html.j2").render(
        report=report, tables=_template_tables(report, "html"), plots=plots)


def _csv(report: Report) -> str:
    """Tidy CSV: one line per run, metric and expected-value source (one line with empty source columns when the
    metric has no reference). Overrides are joined with ';'."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols.CSV_COLUMNS)
    for row in report.runs:
        for res in row.results:
            for ref in res.references or [None]:
                writer.writerow([value(row, res, ref) for _, value in cols.CSV])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- render


def check_out(out: Path | str, fmt: str = "table") -> Path:
    """`out` as a file the report can be written to, or one ReportError that says what is wrong and what to do;
    nothing is written or created."""
    path = Path(out)
    suffix = {"table": "txt"}.get(fmt, fmt)
    if path.is_dir():
        raise ReportError(f"--out {path} is a directory: give a file in it, e.g. --out {path / f'report.{suffix}'}")
    parent = path.parent
    if not parent.exists():
        raise ReportError(f"--out {path}: the directory {parent} does not exist; create it first (mkdir -p "
                          f"{parent}) or write elsewhere")
    if not parent.is_dir():
        raise ReportError(f"--out {path}: {parent} is a file, not a directory; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        where = path if path.exists() else parent
        raise ReportError(f"--out {path}: {where} is not writable by you; choose a path you can write to")
    return path


def render(report: Report, fmt: str = "table", out: Path | str | None = None) -> str | Path:
    """The report as text in `fmt` (table, md, csv, json, html); written to `out` (and its path returned) if given.

    'table' is the rich tables as plain text with full run ids (the CLI prints `rich_tables(report)` to the
    terminal instead); 'html' is one self-contained file with the tables and the learning curves embedded as PNG.
    `out` is checked (:func:`check_out`) before anything is rendered.
    """
    if fmt not in FORMATS:
        raise ReportError(f"unknown format '{fmt}': choose one of {', '.join(FORMATS)}")
    path = None if out is None else check_out(out, fmt)
    if fmt == "table":
        text = _rich_text(report)
    elif fmt == "md":
        text = _markdown(report)
    elif fmt == "csv":
        text = _csv(report)
    elif fmt == "json":
        text = json.dumps(report.to_dict(), indent=2) + "\n"
    else:
        text = _html(report)
    if path is None:
        return text
    from swinctl.job.checkpoints import write_atomic

    try:  # a temporary name, renamed: an interrupted write never leaves a half report (or half of the old one)
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise ReportError(f"--out {path}: cannot write it ({exc.strerror or exc})") from None
    return path
