"""Learning curves (PNG, matplotlib's Agg canvas; imported only when plots are drawn)."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

from swinctl import results
from swinctl.report.model import Report, ReportError, RunRow

PANELS_PER_ROW = 3
PANEL_ROW_INCHES = 4.2


def figures(report: Report, *, max_runs: int = 12) -> list[tuple[str, bytes]]:
    """PNG learning curves, one figure per recipe (see :func:`draw`): (name, PNG bytes) pairs, each named after
    the recipe and its first metric."""
    out = []
    for name, fig in draw(report, max_runs=max_runs):
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        out.append((name, buf.getvalue()))
    return out


def draw(report: Report, *, max_runs: int = 12) -> list:
    """One matplotlib Figure per recipe: a panel per metric the report shows for it (bbox and mask mAP, mIoU, PQ,
    ... with the expected values as dashed lines) and one of the training loss, a line per run (at most
    `max_runs`; smoke runs dotted), three panels a row. Runs without local logs (W&B rows) are left out. Returns
    (name, Figure) pairs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_recipe: dict[str, list[RunRow]] = {}
    for row in report.runs:
        if row.work_dir and row.results:
            by_recipe.setdefault(row.recipe or "imported", []).append(row)
    out = []
    for recipe, rows in by_recipe.items():
        metrics = list(dict.fromkeys(res.metric for row in rows for res in row.results))
        logs = [(row, results.read_work_dir(row.work_dir)) for row in rows[:max_runs]]
        if not any(log.val or log.train for _, log in logs):
            continue
        panels = len(metrics) + 1
        ncols = min(panels, PANELS_PER_ROW)
        nrows = math.ceil(panels / ncols)
        fig = Figure(figsize=(11, PANEL_ROW_INCHES * nrows), dpi=100)
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
        for ax, metric in zip(axes, metrics, strict=False):
            _metric_panel(ax, recipe, metric, logs, report)
        _loss_panel(axes[len(metrics)], recipe, logs)
        for ax in axes[panels:]:
            fig.delaxes(ax)
        if len(rows) > max_runs:
            fig.suptitle(f"first {max_runs} of {len(rows)} runs", fontsize=8)
        fig.tight_layout()
        out.append((f"{_slug(recipe)}-{metrics[0]}.png", fig))
    return out


def _metric_panel(ax, recipe: str, metric: str, logs, report: Report) -> None:
    for row, log in logs:
        curve = [(it, v) for it, _, v in log.metric_curve(metric) if it is not None]
        if curve:
            ax.plot(*zip(*curve, strict=True), ":" if row.smoke else "-", marker="o", markersize=3,
                    label=_label(row))
    _reference_curves(ax, metric, logs)
    for i, e in enumerate(e for e in report.expectations.get(recipe, []) if e.metric == metric):
        ax.axhline(e.value, linestyle="--", linewidth=1, color=f"C{(i + 7) % 10}",
                   label=f"expected {e.value:g} ({e.source})")
    ax.set(title=f"{recipe}: {metric}", xlabel="iteration", ylabel=f"{metric} (%)")
    _finish(ax)


def _reference_curves(ax, metric: str, logs) -> None:
    """The recipe's reference training log (swinctl.guard.reference), once per log, dashed grey. Epoch-based
    points sit at the epochs' last iterations of the run they are drawn with, so batch sizes may differ."""
    from swinctl.guard import reference

    drawn: set[str] = set()
    for row, log in logs:
        if row.smoke or not row.reference or row.reference["url"] in drawn or not row.work_dir:
            continue
        found = reference.reference_curve(Path(row.work_dir).parent, metric)
        if found is None:
            continue
        source, curve = found
        per_epoch = next((p.iter // p.epoch for p in log.val if p.epoch and p.iter), None)
        points = [((epoch * per_epoch) if epoch is not None and per_epoch else it, value)
                  for it, epoch, value in curve if (epoch is not None and per_epoch) or it is not None]
        if points:
            drawn.add(row.reference["url"])
            ax.plot(*zip(*points, strict=True), "--", color="0.45", marker="x", markersize=3,
                    label=f"reference: {source}")


def _loss_panel(ax, recipe: str, logs) -> None:
    for row, log in logs:
        points = [(p.iter, p.loss) for p in log.train if p.loss is not None]
        if points:
            ax.plot(*zip(*points, strict=True), ":" if row.smoke else "-", linewidth=0.8, label=_label(row))
    ax.set(title=f"{recipe}: training loss", xlabel="iteration", ylabel="loss")
    _finish(ax)


def _finish(ax) -> None:
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def check_plots_dir(out_dir: Path | str) -> Path:
    """`out_dir` as a place for the PNGs (it may not exist yet), or one ReportError; nothing is created."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"--plots {out_dir} is a file: give a directory for the PNGs")
    return out_dir


def save_plots(report: Report, out_dir: Path | str) -> list[Path]:
    """Write the learning-curve PNGs into `out_dir` (created if missing); returns their paths."""
    out_dir = check_plots_dir(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"--plots {out_dir}: cannot create it ({exc.strerror or exc})") from None
    paths = []
    for name, png in figures(report):
        path = out_dir / name
        path.write_bytes(png)
        paths.append(path)
    return paths


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _label(row: RunRow) -> str:
    return row.short_id or row.id
