"""The report's tables, once for every format: which columns the runs, seeds and sweeps tables have, and what
each cell shows. The terminal table, Markdown and HTML render these; CSV has its own tidy columns (one line per
run, metric and source), listed here too.

A cell is text (lines separated by newlines) or (text, class): the class names a verdict, ``smoke`` or ``best``,
which the terminal turns into a style and HTML into a CSS class.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swinctl.report.judging import override_key, varying
from swinctl.report.model import ABOVE, BELOW, REPRODUCED, GroupRow, Reference, Report, RunRow, SweepPoint, SweepTable

Cell = str | tuple[str, str]


@dataclass(frozen=True)
class Ctx:
    report: Report
    fmt: str  # 'table', 'md' or 'html'
    wide: bool = False  # full run ids in the terminal

    @property
    def sep(self) -> str:  # between the items of a cell (overrides, notes, sources)
        return "\n" if self.fmt in ("table", "html") else "; "

    @functools.cached_property
    def runs_by_id(self) -> dict[str, RunRow]:
        return {r.id: r for r in self.report.runs}


@dataclass(frozen=True)
class Column:
    """One column of every format. `formats`: where it shows. wrap/fold/optional/drop_empty: how it gives way in
    a narrow terminal (:class:`swinctl.views.Col`); drop_empty holds in every format."""

    header: str
    cell: Callable[[Any, Ctx], Cell]
    numeric: bool = False
    formats: tuple[str, ...] = ("table", "md", "html")
    wrap: bool = False
    fold: bool = False
    optional: int = 0
    drop_empty: bool = False


def verdict_class(verdict: str) -> str:
    return re.sub(r"[^a-z]+", "-", verdict.split(" (")[0]).strip("-")


def num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def hours(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    return f"{text} {unit}".strip()


def _expected(refs: list[Reference], ctx: Ctx) -> str:
    return ctx.sep.join(f"{r.expected:g} ({r.source})" for r in refs) or "-"


def _deltas(refs: list[Reference], ctx: Ctx) -> str:
    """One delta per source, in the order of the `expected` column (the terminal's caption)."""
    return ctx.sep.join(num(r.delta, signed=True) for r in refs) or "-"


def _run_id(run_id: str, row: RunRow | None, ctx: Ctx) -> str:
    if ctx.fmt == "table" and not ctx.wide and row is not None and row.short_id:
        return row.short_id
    return run_id


# ---------------------------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunLine:
    """One line of the runs table: a run and one of its metrics."""

    row: RunRow
    res: Any  # MetricResult | None
    first: bool  # the run's first line
    overrides: list[str]  # as shown (with --diff: those that vary)


def recipes_of(report: Report) -> list[str | None]:
    """The recipes of the report's runs, in the order they first appear: each gets a runs table of its own (its
    metrics and expected values are its own)."""
    return list(dict.fromkeys(r.recipe for r in report.runs)) or [None]


def run_lines(report: Report, recipe: str | None) -> list[RunLine]:
    """One line per (run, metric) of `recipe`'s runs."""
    shown = shown_overrides(report)
    return [RunLine(row, res, i == 0, shown[row.id]) for row in report.runs if row.recipe == recipe
            for i, res in enumerate(row.results or [None])]


def _cost_unit(report: Report, recipe: str | None) -> str:
    units = {r.cost.unit for r in report.runs if r.cost is not None and r.recipe == recipe}
    return units.pop() if len(units) == 1 else "device-h"


def _per_hour(line: RunLine) -> float | None:
    cost, res = line.row.cost, line.res
    if res is None or res.value is None or cost is None or not cost.hours or line.row.smoke:
        return None
    return round(res.value / cost.hours, 4)


def _run_name(line: RunLine, ctx: Ctx) -> Cell:
    if not line.first:
        return ""
    name = _run_id(line.row.id, line.row, ctx)
    if line.row.smoke:
        return (f"{name} smoke" if ctx.fmt == "table" else f"{name} (smoke)", "smoke")
    return name


def _verdict(line: RunLine, ctx: Ctx) -> Cell:
    """The verdict; one of a run that deviates from its published setting says so (the deviations column, next
    to it, lists them); a run behind its reference log says that too."""
    verdict = line.res.verdict if line.res else line.row.verdict
    text = verdict
    if line.row.deviations and verdict in (REPRODUCED, BELOW, ABOVE):
        n = len(line.row.deviations)
        text = f"{verdict} ({n} deviation{'s' if n > 1 else ''})"
    ref = line.row.reference
    if line.first and ref and ref.get("behind"):
        text = f"{text}{ctx.sep}behind reference"
    return text, verdict_class(verdict)


def run_columns(report: Report, recipe: str | None) -> list[Column]:
    judged_last = report.pick == "last"
    return [
        Column("run", _run_name, wrap=True),
        Column("overrides", lambda ln, ctx: ctx.sep.join(ln.overrides) if ln.first else "", wrap=True, fold=True,
               drop_empty=True),
        Column("state", lambda ln, ctx: ln.row.state if ln.first else "", optional=2),  # the verdict tells most
        Column("metric", lambda ln, ctx: ln.res.metric if ln.res else "-"),
        Column("last", lambda ln, ctx: num(ln.res.last) if ln.res else "-", numeric=True,
               optional=0 if judged_last else 3),
        Column("best", lambda ln, ctx: num(ln.res.best) if ln.res else "-", numeric=True,
               optional=3 if judged_last else 0),
        Column("expected", lambda ln, ctx: _expected(ln.res.references, ctx) if ln.res else "-",
               formats=("md", "html")),
        Column("Δ", lambda ln, ctx: _deltas(ln.res.references, ctx) if ln.res else "-", numeric=True),
        Column("verdict", _verdict, wrap=True),
        # one line a deviation, those a sweep's runs share once with the sweep (the terminal lists them under the
        # table, where a sentence reads whole at any width)
        Column("deviations", lambda ln, ctx: ctx.sep.join(own_deviations(ctx.report)[ln.row.id]) if ln.first
               else "", formats=("md", "html"), drop_empty=True),
        Column("cost", lambda ln, ctx: hours(ln.row.cost.hours, ln.row.cost.unit) if ln.first and ln.row.cost
               else ("-" if ln.first else ""), numeric=True, wrap=True, optional=1, drop_empty=True),
        Column(f"per {_cost_unit(report, recipe)}", lambda ln, ctx: num(_per_hour(ln)), numeric=True, wrap=True,
               optional=4, drop_empty=True),
        Column("notes", lambda ln, ctx: ctx.sep.join(_notes(ln.row)) if ln.first else "", wrap=True, fold=True,
               drop_empty=True),
    ]


def own_deviations(report: Report) -> dict[str, list[str]]:
    """Each run's deviations less those every run of its sweep shares (the sweep lists those once)."""
    shared = {s.name: set(s.deviations) for s in report.sweeps}
    return {r.id: [d for d in r.deviations if d not in shared.get(r.sweep or "", ())] for r in report.runs}


def deviation_blocks(report: Report, recipe: str | None, ctx: Ctx) -> list[tuple[str, list[str]]]:
    """(whose, deviations) of `recipe`'s runs: a sweep's shared ones once, then each run's own."""
    rows = [r for r in report.runs if r.recipe == recipe]
    sweeps = dict.fromkeys(r.sweep for r in rows if r.sweep)
    out = [(f"sweep {s.name}, every run", s.deviations) for s in report.sweeps if s.name in sweeps and s.deviations]
    own = own_deviations(report)
    out += [(f"run {_run_id(r.id, r, ctx)}", own[r.id]) for r in rows if own[r.id]]
    return out


def _notes(row: RunRow) -> list[str]:
    ref = row.reference  # compared evaluations only: an unavailable reference log is in the JSON
    tested = [f"last: its --test-after test {row.tested_by}"] if row.tested_by else []
    return [*tested, *row.notes, *row.problems, *([ref["summary"]] if ref and ref.get("points") else [])]


def shown_overrides(report: Report) -> dict[str, list[str]]:
    """Each run's overrides as displayed: with `diff`, only the keys that vary across the report's runs."""
    if not report.diff:
        return {r.id: r.overrides for r in report.runs}
    keys = set(varying([r.overrides for r in report.runs]))
    return {r.id: [o for o in r.overrides if override_key(o) in keys] for r in report.runs}


# ---------------------------------------------------------------------------------------------- seeds


@dataclass(frozen=True)
class GroupLine:
    group: GroupRow
    res: Any  # GroupResult
    first: bool
    last: bool


def group_lines(report: Report) -> list[GroupLine]:
    return [GroupLine(g, res, i == 0, i == len(g.results) - 1) for g in report.groups
            for i, res in enumerate(g.results)]


def group_label(report: Report, group: GroupRow) -> str:
    """A seed group as displayed: recipe [sweep] and its overrides (with `diff`, those that vary between groups)."""
    shown = group.overrides
    if report.diff:
        keys = set(varying([g.overrides for g in report.groups]))
        shown = [o for o in group.overrides if override_key(o) in keys]
    head = f"{group.recipe or '?'}{' (smoke)' if group.smoke else ''}{f' [{group.sweep}]' if group.sweep else ''}"
    return f"{head} {' '.join(shown) or '(recipe defaults)' if not report.diff or shown else ''}".strip()


SEED_COLUMNS = [
    Column("runs", lambda ln, ctx: group_label(ctx.report, ln.group) if ln.first or ctx.fmt != "table" else "",
           wrap=True, fold=True),
    Column("n", lambda ln, ctx: str(ln.res.n), numeric=True),
    Column("seeds", lambda ln, ctx: ", ".join("-" if s is None else str(s) for s in ln.group.seeds)
           if ln.first or ctx.fmt != "table" else "", wrap=True, optional=1),
    Column("metric", lambda ln, ctx: ln.res.metric),
    Column("mean ± std", lambda ln, ctx: mean_std(ln.res.mean, ln.res.std), numeric=True, wrap=True),
    Column("expected", lambda ln, ctx: _expected(ln.res.references, ctx), formats=("md", "html")),
    Column("Δ", lambda ln, ctx: _deltas(ln.res.references, ctx), numeric=True),
    Column("verdict", lambda ln, ctx: (ln.res.verdict, verdict_class(ln.res.verdict)), wrap=True),
]


# ---------------------------------------------------------------------------------------------- sweeps


def point_overrides(report: Report, point: SweepPoint) -> list[str]:
    return [f"{k}={v}" for k, v in point.varying.items()] if report.diff else point.overrides


def _rank(point: SweepPoint, ctx: Ctx) -> Cell:
    if not point.best:
        return str(point.rank)
    return (f"{point.rank} **best**" if ctx.fmt == "md" else f"{point.rank} ★", "best")


def _point_runs(point: SweepPoint, ctx: Ctx) -> str:
    sep = " " if ctx.fmt == "md" else "\n"
    return sep.join(_run_id(run_id, ctx.runs_by_id.get(run_id), ctx) for run_id in point.run_ids)


def sweep_columns(sweep: SweepTable, report: Report) -> list[Column]:
    return [
        Column("#", _rank),
        Column("varying" if report.diff else "overrides",
               lambda p, ctx: (" " if ctx.fmt == "md" else "\n").join(point_overrides(ctx.report, p))
               or "(defaults)", wrap=True, fold=True),
        Column(sweep.metric, lambda p, ctx: mean_std(p.mean, p.std), numeric=True, wrap=True),
        Column("n", lambda p, ctx: str(p.n), numeric=True),
        Column("verdict", lambda p, ctx: (p.verdict, verdict_class(p.verdict)), wrap=True),
        Column("runs", _point_runs, wrap=True),
    ]


# ---------------------------------------------------------------------------------------------- tables


@dataclass
class TableData:
    """A table of one format: the columns shown and each line's cells (columns empty in every line dropped)."""

    columns: list[Column]
    rows: list[list[Cell]]
    line_of: list[Any]  # the line each row comes from
    hidden: int = 0  # lines left out after the first EDGE_ROWS (a terminal summary of a long table)


def table_data(columns: list[Column], lines: list, ctx: Ctx) -> TableData:
    columns = [c for c in columns if ctx.fmt in c.formats]
    rows = [[c.cell(line, ctx) for c in columns] for line in lines]
    keep = [i for i, c in enumerate(columns)
            if not c.drop_empty or any(text(r[i]).strip() not in ("", "-") for r in rows)]
    return TableData([columns[i] for i in keep], [[r[i] for i in keep] for r in rows], lines)


def text(cell: Cell) -> str:
    return cell[0] if isinstance(cell, tuple) else cell


def css(cell: Cell) -> str:
    return cell[1] if isinstance(cell, tuple) else ""


# ---------------------------------------------------------------------------------------------- CSV


def _csv_num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


# (column, value of a run, its metric result and one of its references (None: a metric without one))
CSV: list[tuple[str, Callable[[RunRow, Any, Reference | None], object]]] = [
    ("run_id", lambda r, m, ref: r.id),
    ("origin", lambda r, m, ref: r.origin),
    ("kind", lambda r, m, ref: r.kind),
    ("recipe", lambda r, m, ref: r.recipe or ""),
    ("sweep", lambda r, m, ref: r.sweep or ""),
    ("seed", lambda r, m, ref: "" if r.seed is None else r.seed),
    ("overrides", lambda r, m, ref: ";".join(r.overrides)),
    ("state", lambda r, m, ref: r.state),
    ("smoke", lambda r, m, ref: int(r.smoke)),
    ("metric", lambda r, m, ref: m.metric),
    ("value", lambda r, m, ref: _csv_num(m.value)),
    ("last", lambda r, m, ref: _csv_num(m.last)),
    ("best", lambda r, m, ref: _csv_num(m.best)),
    ("verdict", lambda r, m, ref: m.verdict),
    ("source", lambda r, m, ref: ref.source if ref else ""),
    ("expected", lambda r, m, ref: _csv_num(ref.expected) if ref else ""),
    ("delta", lambda r, m, ref: _csv_num(ref.delta) if ref else ""),
    ("source_verdict", lambda r, m, ref: ref.verdict if ref else ""),
    ("tolerance", lambda r, m, ref: _csv_num(m.tolerance)),
    ("gpus", lambda r, m, ref: "" if r.gpus is None else r.gpus),
    ("elapsed_s", lambda r, m, ref: _csv_num(r.elapsed_s)),
    ("gpu_hours", lambda r, m, ref: _csv_num(r.gpu_hours)),
    ("per_gpu_hour", lambda r, m, ref: _csv_num(m.per_gpu_hour)),
    ("flags", lambda r, m, ref: ";".join(r.flags)),
    ("problems", lambda r, m, ref: " | ".join(r.problems)),
    ("cost_unit", lambda r, m, ref: r.cost.unit if r.cost else ""),
    ("cost_hours", lambda r, m, ref: _csv_num(r.cost.hours) if r.cost else ""),
    ("node_hours", lambda r, m, ref: _csv_num(r.cost.node_hours) if r.cost else ""),
]
CSV_COLUMNS = tuple(name for name, _ in CSV)
