"""Learning curves (PNG, matplotlib's Agg canvas; imported only when plots are drawn).

One figure per recipe and metric, a line per run, with the recipe's published values as dashed lines and its
reference training log where it has one; one figure of the training loss. Smoke runs (a tiny model on demo data)
get figures of their own, titled as such and without any published value: they check the pipeline and are never
drawn against a published number. Every figure is laid out by matplotlib's constrained layout with its legend
below the axes, so titles, labels and legends never overlap, whatever the number or length of the labels.
"""

from __future__ import annotations

import io
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from swinctl import results
from swinctl.report.model import Report, ReportError, RunRow

WIDTH_IN, AXES_IN = 5.6, 3.2  # a figure is 560 px wide at DPI: two side by side in a 1280-pixel window
LEGEND_PAD_IN = 0.15  # around the legend
DPI = 100  # CSS pixels per inch: the size a page shows a figure at
SCALE = 2  # PNG pixels per CSS pixel: sharp on high-density screens and when zoomed in
LABEL_CHARS = 36  # a legend entry wraps here in two columns (one column: twice that)
PUBLISHED_STYLES = (("0.15", (0, (5, 3))), ("0.45", (0, (8, 2, 2, 2))), ("0.6", (0, (2, 2))))  # colour, dashes
SMOKE_NOTE = "smoke (not comparable)"


@dataclass
class Plot:
    """One figure: its file name (``<recipe>-<metric>.png``, ``<recipe>-loss.png``, ``<recipe>-smoke-...``), its
    recipe, what it shows in a sentence, and the matplotlib Figure."""

    name: str
    recipe: str
    caption: str
    figure: object
    smoke: bool = False

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=DPI * SCALE)
        return buf.getvalue()


@dataclass
class Drawn:
    """A plot rendered: file name, recipe, caption, PNG bytes (SCALE times the size) and the size it is shown at
    in CSS pixels."""

    name: str
    recipe: str
    caption: str
    png: bytes
    width: int
    height: int
    smoke: bool = False


def figures(report: Report, *, max_runs: int = 12) -> list[Drawn]:
    """The plots of :func:`draw` as PNGs."""
    out = []
    for plot in draw(report, max_runs=max_runs):
        width, height = (round(v * DPI) for v in plot.figure.get_size_inches())
        out.append(Drawn(plot.name, plot.recipe, plot.caption, plot.png(), width, height, plot.smoke))
    return out


def draw(report: Report, *, max_runs: int = 12) -> list[Plot]:
    """Per recipe (runs without local logs, e.g. W&B rows, are left out): a figure per metric the report shows
    for it (bbox and mask mAP, mIoU, PQ, ...) and one of the training loss, a line per run (at most `max_runs`),
    then the same for its smoke runs, if any."""
    by_recipe: dict[str, list[RunRow]] = {}
    for row in report.runs:
        if row.work_dir and row.results:
            by_recipe.setdefault(row.recipe or "imported", []).append(row)
    out: list[Plot] = []
    for recipe, rows in by_recipe.items():
        metrics = list(dict.fromkeys(res.metric for row in rows for res in row.results))
        for smoke in (False, True):
            chosen = [row for row in rows if row.smoke == smoke]
            logs = [(row, results.read_work_dir(row.work_dir)) for row in chosen[:max_runs]]
            more = len(chosen) - len(logs)
            for metric in metrics:
                plot = _metric_plot(recipe, metric, logs, more, report, smoke)
                if plot is not None:
                    out.append(plot)
            plot = _loss_plot(recipe, logs, more, smoke)
            if plot is not None:
                out.append(plot)
    return out


# ---------------------------------------------------------------------------------------------- figures


def _figure():
    """A figure laid out by constrained layout (sized for its legend by :func:`_finish`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, AXES_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _finish(fig, ax, title: str, ylabel: str, handles: list, labels: list[str], last_iter: int | None) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title, fontsize=11)
    ax.set(xlabel="iteration", ylabel=ylabel)
    ax.grid(alpha=0.3)
    # from 0 to the runs' last logged iteration, as in their loss figure: a validation halfway through training
    # shows as halfway, not at the right edge
    ax.set_xlim(0, max(ax.get_xlim()[1], (last_iter or 0) * 1.03))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations: no 2.5
    for handle, label in zip(handles, labels, strict=True):
        handle.set_label(label)  # the lines name themselves too (tests, and anyone who reads the figure)
    if not handles:
        return
    # below the axes, outside them: constrained layout makes room, so it covers no data, label or title. Two
    # columns where they fit the figure's width, else one with longer lines; the figure then grows by the
    # legend's measured height, so the axes keep their size however many runs there are
    renderer = fig.canvas.get_renderer()
    for columns, chars in ((2, LABEL_CHARS), (1, 2 * LABEL_CHARS)):
        legend = fig.legend(handles, [_wrap(label, chars) for label in labels], loc="outside lower center",
                            ncols=columns, fontsize=8, frameon=False)
        box = legend.get_window_extent(renderer)
        if box.width <= fig.bbox.width - 10 or columns == 1:
            break
        legend.remove()
    height = AXES_IN + box.height / fig.dpi + LEGEND_PAD_IN
    fig.set_size_inches(WIDTH_IN, round(height * DPI) / DPI)  # whole pixels: the page shows it at its size


def _metric_plot(recipe: str, metric: str, logs, more: int, report: Report, smoke: bool) -> Plot | None:
    lines, unplaced = [], []
    for i, (row, log) in enumerate(logs):
        curve, missing = _placed(log.metric_curve(metric), log)
        if curve:
            lines.append((row, i, curve))
        elif missing:
            unplaced.append(f"{_label(row)}: {missing[-1]:g} (logged without an iteration)")
    if not lines:
        return None
    # the published values and the reference log: real runs only, a smoke run is never drawn against them
    published = [] if smoke else [e for e in report.expectations.get(recipe, []) if e.metric == metric]
    reference = None if smoke else _reference_curve(metric, logs)
    fig, ax = _figure()
    handles, labels, values = [], [], []
    for row, i, curve in lines:
        xs, ys = zip(*curve, strict=True)
        (line,) = ax.plot(xs, ys, ":" if smoke else "-", marker="o", markersize=4, color=_colour(i))
        handles.append(line)
        labels.append(_run_label(row))
        values.extend(ys)
    if reference is not None:
        source, points = reference
        xs, ys = zip(*points, strict=True)
        (line,) = ax.plot(xs, ys, "--", color="0.5", marker="x", markersize=4, linewidth=1)
        handles.append(line)
        labels.append(f"reference log: {source}")
        values.extend(ys)
    for (colour, dashes), e in zip(PUBLISHED_STYLES * 4, published, strict=False):
        handles.append(ax.axhline(e.value, color=colour, linestyle=dashes, linewidth=1.2))
        labels.append(f"published {e.value:g} ({e.source})")
        values.append(e.value)
    ax.set_ylim(*y_limits(values, percent=True))
    title = f"{recipe}: {metric}" + (" (smoke runs)" if smoke else "")
    _finish(fig, ax, title, f"{metric} (%)", handles, labels, _last_iter(logs))
    name = f"{_slug(recipe)}-{'smoke-' if smoke else ''}{_slug(metric)}.png"
    return Plot(name, recipe, _metric_caption(recipe, metric, lines, more, published, reference, unplaced, smoke), fig,
                smoke)


def _loss_plot(recipe: str, logs, more: int, smoke: bool) -> Plot | None:
    lines = []
    for i, (row, log) in enumerate(logs):
        points = [(p.iter, p.loss) for p in log.train if p.loss is not None and p.iter is not None]
        if points:
            lines.append((row, i, points))
    if not lines:
        return None
    fig, ax = _figure()
    handles, labels, values = [], [], []
    for row, i, points in lines:
        xs, ys = zip(*points, strict=True)
        (line,) = ax.plot(xs, ys, ":" if smoke else "-", linewidth=1, color=_colour(i),
                          marker="o" if len(points) == 1 else None, markersize=4)
        handles.append(line)
        labels.append(_run_label(row))
        values.extend(ys)
    ax.set_ylim(*y_limits(values, percent=False))
    _finish(fig, ax, f"{recipe}: training loss" + (" (smoke runs)" if smoke else ""), "loss", handles, labels,
            _last_iter(logs))
    runs = _runs(len(lines), more, smoke)
    caption = f"{recipe}: training loss of {runs} by iteration."
    if smoke:
        caption += " Smoke runs train a tiny model on demo data to check the pipeline."
    return Plot(f"{_slug(recipe)}-{'smoke-' if smoke else ''}loss.png", recipe, caption, fig, smoke)


def _metric_caption(recipe, metric, lines, more, published, reference, unplaced, smoke) -> str:
    parts = [f"{recipe}: {metric} of {_runs(len(lines), more, smoke)} at each validation, by iteration"]
    if published:
        values = ", ".join(f"{e.value:g} ({e.source})" for e in published)
        parts.append(f"dashed: the published {values}")
    if reference is not None:
        parts.append(f"grey crosses: the reference training log ({reference[0]}), its epochs at this run's "
                     "iterations per epoch")
    if unplaced:
        parts.append("not drawn: " + "; ".join(unplaced))
    text = "; ".join(parts) + "."
    if smoke:
        text += (" Smoke runs train a tiny model on demo data to check the pipeline: their values are not "
                 "comparable with published results.")
    return text


def _runs(n: int, more: int, smoke: bool) -> str:
    kind = "smoke run" if smoke else "run"
    text = f"{n} {kind}{'s' if n != 1 else ''}"
    return f"{text} (the first {n} of {n + more})" if more else text


# ---------------------------------------------------------------------------------------------- data


def _placed(curve, log) -> tuple[list[tuple[int, float]], list[float]]:
    """(iteration, value) of each validation; a validation logged with its epoch only sits at the epoch's last
    iteration where the log tells the iterations per epoch. Also the values that have no place (no iteration)."""
    per_epoch = _per_epoch(log)
    placed, missing = [], []
    for it, epoch, value in curve:
        if it is None and epoch is not None and per_epoch:
            it = epoch * per_epoch
        (placed.append((it, value)) if it is not None else missing.append(value))
    return placed, missing


def _last_iter(logs) -> int | None:
    return max((p.iter for _, log in logs for p in (*log.train, *log.val) if p.iter is not None), default=None)


def _per_epoch(log) -> int | None:
    return next((p.iter // p.epoch for p in log.val if p.epoch and p.iter), None)


def _reference_curve(metric: str, logs) -> tuple[str, list[tuple[int, float]]] | None:
    """The recipe's reference training log (swinctl.guard.reference) for `metric`, placed at the iterations of
    the first run that has one (epoch-based points at the epochs' last iterations, so batch sizes may differ)."""
    from swinctl.guard import reference

    for row, log in logs:
        if row.smoke or not row.reference or not row.work_dir:
            continue
        found = reference.reference_curve(Path(row.work_dir).parent, metric)
        if found is None:
            continue
        source, curve = found
        per_epoch = _per_epoch(log)
        points = [((epoch * per_epoch) if epoch is not None and per_epoch else it, value)
                  for it, epoch, value in curve if (epoch is not None and per_epoch) or it is not None]
        if points:
            return source, points
    return None


def y_limits(values: list[float], *, percent: bool) -> tuple[float, float]:
    """Y limits that show every value with room around it. A single value (or values within a hair of each other)
    gets at least 2 points either side for a metric in percent, 10% of its size for a loss, instead of
    matplotlib's +-5% that turns one point at 8 into an axis from 7.6 to 8.4; percent stays within 0..100."""
    lo, hi = min(values), max(values)
    floor = 2.0 if percent else max(0.1 * max(abs(lo), abs(hi)), 0.05)
    pad = max(0.08 * (hi - lo), floor)
    lo, hi = lo - pad, hi + pad
    if percent:
        lo, hi = max(lo, 0.0), min(hi, 100.0)
    elif min(values) >= 0:
        lo = max(lo, 0.0)
    return lo, hi


def _colour(i: int) -> str:
    """Run colours: tab10 without its grey (C7), which the reference and published lines use."""
    return f"C{(0, 1, 2, 3, 4, 5, 6, 8, 9)[i % 9]}"


def _label(row: RunRow) -> str:
    return row.short_id or row.id


def _run_label(row: RunRow) -> str:
    parts = [_label(row), *row.overrides]
    if row.smoke:
        parts.append(SMOKE_NOTE)
    return " ".join(parts)


def _wrap(text: str, chars: int) -> str:
    return "\n".join(textwrap.wrap(text, chars, break_on_hyphens=False)) or text


# ---------------------------------------------------------------------------------------------- files


def check_plots_dir(out_dir: Path | str) -> Path:
    """`out_dir` as a place for the PNGs (it may not exist yet), or one ReportError; nothing is created."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"--plots {out_dir} is a file: give a directory for the PNGs")
    return out_dir


def save_plots(report: Report, out_dir: Path | str) -> list[Path]:
    """Write the learning-curve PNGs into `out_dir` (created if missing), each whole or not at all (temp name and
    rename); returns their paths."""
    from swinctl.job.checkpoints import write_atomic

    out_dir = check_plots_dir(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"--plots {out_dir}: cannot create it ({exc.strerror or exc})") from None
    paths = []
    for drawn in figures(report):
        path = out_dir / drawn.name
        try:
            write_atomic(path, drawn.png)
        except OSError as exc:
            raise ReportError(f"--plots {out_dir}: cannot write {drawn.name} ({exc.strerror or exc})") from None
        paths.append(path)
    return paths


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"
