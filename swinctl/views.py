"""Rich renderables for the CLI: recipes, run outcomes, status tables. Pure formatting, no I/O."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

STATE_STYLES = {"COMPLETED": "green", "RUNNING": "cyan", "PENDING": "yellow", "REQUEUED": "yellow",
                "FAILED": "bold red", "CANCELLED": "magenta", "TIMEOUT": "red"}
HEADLINE_METRICS = ("bbox_mAP", "segm_mAP", "mIoU", "mAcc", "aAcc")


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def metric_summary(metrics: dict[str, float]) -> str:
    shown = [(k, metrics[k]) for k in HEADLINE_METRICS if k in metrics]
    return "  ".join(f"{k} {v:.1f}" for k, v in shown) or "-"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def recipe_table(found: dict[str, Path]) -> Table:
    from swinctl import recipes

    table = Table(title="recipes", title_justify="left")
    for column in ("name", "codebase", "description", "expected", "file"):
        table.add_column(column)
    for name, path in found.items():
        try:
            recipe = recipes.load_recipe(path)
        except recipes.RecipeError as exc:
            table.add_row(name, "-", Text(f"invalid: {exc}", style="red"), "-", str(path))
            continue
        expected = ", ".join(f"{e.metric} {e.value} ({e.source})" for e in recipe.expected)
        table.add_row(name, recipe.codebase, recipe.description, expected, str(path))
    return table


def outcome(record) -> Group:
    table = Table(title=f"{record.id}{' (smoke)' if record.smoke else ''}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("state", state_text(record.state))
    table.add_row("run dir", str(record.run_dir))
    table.add_row("wall time", duration(record.elapsed_s))
    for key, value in sorted(record.metrics.items()):
        table.add_row(key, f"{value:.2f}")
    parts: list = [table]
    if record.error:
        parts.append(Text(record.error, style="red"))
    return Group(*parts)


def status_table(rows) -> Table:
    table = Table(title=f"runs ({time.strftime('%H:%M:%S')})", title_justify="left")
    for column in ("run", "state", "executor/job", "progress", "eta", "metrics", "GPU-h"):
        table.add_column(column, overflow="fold")
    for row in rows:
        r, p = row.record, row.progress
        progress = "-" if p is None or not p.total else f"{p.iter}/{p.total} ({100 * p.iter / p.total:.0f}%)"
        eta = duration(p.eta_s) if r.is_active and p is not None and p.eta_s is not None else "-"
        name = Text(r.id + (" [smoke]" if r.smoke else ""))
        if r.requeues:
            name.append(f" requeued x{r.requeues}", style="yellow")
        state = state_text(r.state)
        if r.error and not r.is_active:
            state.append("\n" + r.error.strip().splitlines()[0][:80], style="dim")
        table.add_row(name, state, f"{r.executor} {r.job_id or '-'}", progress, eta, metric_summary(row.metrics),
                      "-" if row.gpu_hours is None else f"{row.gpu_hours:.2f}")
    if not rows:
        table.add_row("(no runs)", "", "", "", "", "", "")
    return table
