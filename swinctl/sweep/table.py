"""A sweep's tables: its points with the live state of the runs that serve them, and a plan before submission."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from swinctl.sweep.plan import Plan


def _edges(items: list, every: bool) -> tuple[list, list]:
    from swinctl.views import edges  # (rich loads with the table, not with the sweep machinery)

    return edges(items, every)


def _counted(counts: Counter) -> str:
    return ", ".join(f"{what} {n:,}" for what, n in counts.most_common())


@dataclass(frozen=True)
class SweepRow:
    point: int
    overrides: list[str]
    signature: str
    row: Any  # status.StatusRow of the run serving the point, or None when it was never created
    shared: bool  # the run belongs to another sweep (or to no sweep)

    def to_json(self) -> dict:
        return {"point": self.point, "overrides": self.overrides, "signature": self.signature, "shared": self.shared,
                "run": None if self.row is None else self.row.to_json()}


def sweep_rows(ledger, name: str, every: bool = True) -> list[SweepRow]:
    """One row per point of sweep `name`, with the live state of the run that serves it (refreshed). `every=False`:
    the rows a summary table hides (all but the first and last) carry the ledger's record and metrics only, none
    of the run's files (progress, cost, reference log) -- what its counts and best point need."""
    from swinctl import status
    from swinctl.runs import sync

    points = ledger.sweep_points(name)
    if not points and ledger.get_sweep(name) is None:
        raise KeyError(f"no sweep named '{name}' in {ledger.path}")
    found = ledger.get_many(p.run_id for p in points if p.run_id)
    records = {p.index: found.get(p.run_id) if p.run_id else None for p in points}
    refreshed = iter(sync.refresh_all(ledger, [r for r in records.values() if r is not None]))
    first, last = _edges(points, every)
    detailed = {p.index for p in first + last}
    rows = []
    for p in points:
        record = next(refreshed) if records[p.index] is not None else None
        if record is None:
            rows.append(SweepRow(p.index, p.overrides, p.signature, None, False))
            continue
        row = (status.row(ledger, record) if p.index in detailed else
               status.StatusRow(record, None, record.metrics, status.gpu_hours(record)))
        rows.append(SweepRow(p.index, p.overrides, p.signature, row, record.sweep != name))
    return rows


def default_metric(rows: list[SweepRow]) -> str | None:
    from swinctl import results

    present = {k for r in rows if r.row is not None for k in r.row.metrics}
    return next(iter(results.task_metrics(present)), None)


def sweep_table(rows: list[SweepRow], metric: str | None = None, title: str | None = None,
                short_ids: dict[str, str] | None = None, every: bool = True):
    """point | overrides | run | state | progress | METRIC (best marked) | note, fitted to the terminal's width
    (:class:`swinctl.views.FitTable`). `short_ids`: the ids to show (`runs.select.short_ids`); full ids without.
    `every=False`: a summary (states, the best point) and the first and last rows of a long sweep."""
    from rich.text import Text

    from swinctl import views
    from swinctl.views import Col

    metric = metric or default_metric(rows)
    values = {r.point: r.row.metrics.get(metric) for r in rows if r.row is not None and metric}
    best = max((v for v in values.values() if v is not None), default=None)
    first, last = _edges(rows, every)
    summary = None
    if last:
        states = Counter("NOT CREATED" if r.row is None else r.row.record.state for r in rows)
        best_point = next((p for p, v in values.items() if v is not None and v == best), None)
        summary = (f"{len(rows):,} points: {_counted(states)}"
                   + (f"; best {metric} {best:.2f} at point {best_point}" if best_point is not None else "")
                   + f"; {len(rows) - len(first) - len(last):,} rows not shown (--all shows every row)")
    table = views.FitTable(Col("#", justify="right"), Col("overrides", wrap=True, fold=True), Col("run"),
                           Col("state"), Col("progress", wrap=True), Col(metric or "metric", wrap=True),
                           Col("note", wrap=True, fold=True, drop_empty=True),
                           title=title or f"sweep ({time.strftime('%H:%M:%S')})", caption=summary,
                           wide=short_ids is None)
    for r in first + ([None] if last else []) + last:
        if r is None:
            table.add_row("...", "", "", "", "", "", "")
            continue
        overrides = "\n".join(r.overrides)
        if r.row is None:
            table.add_row(str(r.point), overrides, "-", Text("NOT CREATED", style="red"), "-", "-",
                          "interrupted before its run was written; run the sweep again")
            continue
        rec, p = r.row.record, r.row.progress
        progress = "-" if p is None or not p.total else f"{p.iter}/{p.total} ({100 * p.iter / p.total:.0f}%)"
        value = values.get(r.point)
        shown = Text("-" if value is None else f"{value:.2f}")
        if value is not None and value == best:
            shown.append(" ★ best", style="bold green")
        notes = []
        if r.shared:
            notes.append(f"shared with {rec.id}" + (f" (sweep {rec.sweep})" if rec.sweep else ""))
        if rec.error and not rec.is_active:
            notes.append(rec.error.strip().splitlines()[0][:80])
        name = views.run_name(rec.id, (short_ids or {}).get(rec.id), rec.smoke, short_ids is None)
        table.add_row(str(r.point), overrides, name, views.state_text(rec.state), progress, shown, "\n".join(notes))
    if not rows:
        table.add_row("(no points)", "", "", "", "", "", "")
    return table


def plan_table(plan_: Plan, every: bool = True):
    """The points of a plan with their signatures and what will be done with each; `every=False`: the first and
    last rows of a long plan, under a count of what is done with the rest."""
    from rich.table import Table
    from rich.text import Text

    first, last = _edges(plan_.points, every)
    caption = None
    if last:
        notes = Counter(p.note.split(" ")[0].rstrip(":") for p in plan_.points)  # new, done, shared, failed, ...
        caption = (f"{_counted(notes)}; {len(plan_.points) - len(first) - len(last):,} rows not shown "
                   "(--all shows every row)")
    table = Table(title=f"sweep {plan_.name}: {len(plan_.points)} points, {len(plan_.to_submit)} to submit "
                  f"({plan_.executor})", title_justify="left", caption=caption, caption_justify="left")
    for column in ("#", "overrides", "signature", "action", "already ran?"):
        table.add_column(column, overflow="fold")
    for p in first + ([None] if last else []) + last:
        if p is None:
            table.add_row("...", "", "", "", "")
            continue
        action = Text(p.action, style="green" if p.action == "submit" else "dim")
        table.add_row(str(p.index), "\n".join(p.overrides), p.signature, action, p.note)
    return table


def active(rows: list[SweepRow]) -> bool:
    return any(r.row is not None and r.row.record.is_active for r in rows)
