"""Rich renderables for the CLI: recipes, run outcomes, status tables. Pure formatting, no I/O.

Tables that list runs are :class:`FitTable`: they decide when they are rendered, for the width they get, how wide
each column is, so that headers, run ids, states and numbers never break; only free text (overrides, notes) folds,
and what still does not fit (columns marked optional) is left out with a caption saying so. With --wide every
column shows at its widest line, wider than the terminal if need be (printed uncropped: the terminal folds it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Group
from rich.table import Table
from rich.text import Text

from swinctl import published, results
from swinctl.job.files import State

STATE_STYLES = {State.COMPLETED: "green", State.RUNNING: "cyan", State.PENDING: "yellow", State.REQUEUED: "yellow",
                State.FAILED: "bold red", State.CANCELLED: "magenta", State.TIMEOUT: "red", "IMPORTED": "blue"}
EMPTY = ("", "-")  # cells that show nothing
EDGE_ROWS = 5  # a long table in the terminal shows its first and last rows under a summary; `--all`: every row


def edges(items: list, every: bool) -> tuple[list, list]:
    """(the first rows, the last rows) a terminal table shows: every row (none last), or the first and last
    EDGE_ROWS of a longer one (a 10,000-point sweep is read from its summary, its best and worst points)."""
    if every or len(items) <= 2 * EDGE_ROWS + 1:
        return list(items), []
    return list(items[:EDGE_ROWS]), list(items[-EDGE_ROWS:])


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def metric_summary(metrics: dict[str, float], sep: str = "  ") -> str:
    """The metrics that tell a run's result, by the task its metrics show (PQ for panoptic, box and mask mAP for
    instance segmentation, mIoU for semantic)."""
    return sep.join(f"{k} {metrics[k]:.1f}" for k in results.task_metrics(set(metrics))) or "-"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# ---------------------------------------------------------------------------------------------- fitted tables


@dataclass(frozen=True)
class Col:
    """How a column of a :class:`FitTable` may give way when the table is too wide for the terminal.

    wrap: its cells may wrap between words (never inside one). fold: free text that may also fold inside a word
    (overrides, notes, paths), as the last thing before columns are left out. optional: may be left out when even
    that does not fit; the higher, the sooner. drop_empty: left out when no row has anything in it. min_width: the
    narrowest a wrapping column may get before optional columns are left out (what still reads well).
    """

    header: str
    justify: str = "left"
    wrap: bool = False
    fold: bool = False
    optional: int = 0
    drop_empty: bool = False
    style: str = ""
    min_width: int = 0


def _lines(cell) -> list[str]:
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return text.splitlines() or [""]


def _max_len(cells: Sequence) -> int:
    return max((cell_len(line) for cell in cells for line in _lines(cell)), default=0)


def _max_word(cells: Sequence) -> int:
    return max((cell_len(word) for cell in cells for line in _lines(cell) for word in line.split()), default=0)


class FitTable(Table):
    """A rich Table of :class:`Col` columns that fits itself to the width it is rendered at.

    Widths are chosen before rich lays the table out: every column gets its widest line when that fits; otherwise
    wrapping columns give way, widest first, down to their longest word; then free-text columns fold; then optional
    columns are left out (named in the caption). A column that is empty in every row (``drop_empty``) never shows.
    ``wide``: every column at its widest line, however wide the terminal (print it with ``crop=False``).
    ``add_row`` takes the cells of every column, shown or not.
    """

    GAP = 2  # between columns: SIMPLE_HEAD without edges, collapsed padding

    def __init__(self, *columns: Col, title: str | None = None, caption: str | None = None, wide: bool = False):
        super().__init__(title=title, caption=caption, title_justify="left", caption_justify="left",
                         box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        self.specs = columns
        self.wide = wide  # never leave columns out
        for spec in columns:
            self.add_column(spec.header, justify=spec.justify, no_wrap=not spec.wrap, style=spec.style)

    def plan(self, width: int) -> tuple[list[int], list[int], list[str]]:
        """(indexes of the columns shown, their content widths, headers of the optional columns left out).
        `wide`: every column at its widest line, whatever `width` is."""
        cells = [[column.header, *column.cells] for column in self.columns]
        shown = [i for i, spec in enumerate(self.specs)
                 if not (spec.drop_empty and all(_plain(c).strip() in EMPTY for c in cells[i][1:]))]
        if self.wide:
            return shown, [_max_len(cells[i]) for i in shown], []
        hidden: list[str] = []
        for fold in (False, True):  # leave optional columns out before folding a word
            while True:
                widths = self._fit(shown, cells, width, fold)
                optional = [i for i in shown if self.specs[i].optional]
                if widths is not None or not optional:
                    break
                drop = max(optional, key=lambda i: (self.specs[i].optional, i))
                shown.remove(drop)
                hidden.insert(0, self.specs[drop].header)
            if widths is not None:
                return shown, widths, hidden
        return shown, [_max_len(cells[i]) for i in shown], hidden  # nothing more to give: rich squeezes the rest

    def _fit(self, shown: list[int], cells: list[list], width: int, fold: bool) -> list[int] | None:
        """Widths for `shown` within `width`, wrapping columns giving way widest first; None when they cannot."""
        room = width - self.GAP * (len(shown) - 1)
        widths = {i: _max_len(cells[i]) for i in shown}
        floors = {i: min(widths[i], max(_max_word(cells[i]), self.specs[i].min_width)) if self.specs[i].wrap
                  else widths[i] for i in shown}
        if fold:
            floors = {i: min(floors[i], max(10, cell_len(self.specs[i].header))) if self.specs[i].fold else floors[i]
                      for i in shown}
        while sum(widths.values()) > room:
            give = [i for i in shown if widths[i] > floors[i]]
            if not give:
                return None
            widths[max(give, key=lambda i: widths[i])] -= 1
        return [widths[i] for i in shown]

    def _wide_width(self) -> int:
        """The width of the `wide` table: every column at its widest line."""
        shown, widths, _ = self.plan(0)
        return sum(widths) + self.GAP * max(len(shown) - 1, 0)

    def _fitted(self, width: int) -> Table:
        shown, widths, hidden = self.plan(width)
        caption = self.caption
        if hidden:
            note = f"not shown at {width} columns: {', '.join(hidden)} (--wide shows every column)"
            caption = f"{caption}\n{note}" if caption else note
        table = Table(title=self.title, caption=caption, title_justify="left", caption_justify="left",
                      box=self.box, show_edge=False, pad_edge=False, collapse_padding=True)
        for i, w in zip(shown, widths, strict=True):
            spec, column = self.specs[i], self.columns[i]
            table.add_column(spec.header, justify=spec.justify, no_wrap=not spec.wrap, style=spec.style,
                             overflow="fold" if spec.fold else "ellipsis", width=max(w, 1))
            table.columns[-1]._cells = list(column.cells)
        table.rows = self.rows
        return table

    def __rich_console__(self, console, options):
        if self.wide:  # wider than the terminal if need be: printed with crop=False, nothing is cut or wrapped
            width = self._wide_width()
            yield from console.render(self._fitted(width), options.update_width(width))
            return
        yield self._fitted(options.max_width)

    def __rich_measure__(self, console, options):
        if self.wide:
            from rich.measure import Measurement

            return Measurement(self._wide_width(), self._wide_width())
        return self._fitted(options.max_width).__rich_measure__(console, options)


def _plain(cell) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


# ---------------------------------------------------------------------------------------------- tables




def _published(task: str, expected: list[dict]) -> str:
    """`box 42.6 mask 39.5`: the task's headline numbers as the recipe's first source gives them (--json: all)."""
    first = {}
    for e in expected:
        first.setdefault(e["metric"], e["value"])
    return " ".join(f"{results.metric_word(m, short=True)} {first[m]:g}" for m in results.HEADLINE[task]
                    if m in first) or "-"


def recipe_table(rows: list[dict], *, wide: bool = False) -> FitTable:
    """`swinctl recipes`: one line a recipe (`recipes.listing` rows); --json has every field."""
    table = FitTable(Col("name", wrap=True, fold=True, min_width=24), Col("task"),
                     Col("GPUs", justify="right", optional=2), Col("published", wrap=True, min_width=8),
                     Col("description", wrap=True, optional=1), title=f"recipes ({len(rows)})", wide=wide)
    for row in rows:
        if row.get("error"):
            table.add_row(row["name"], "-", "-", Text(f"invalid: {row['error']}", style="red"), "-")
            continue
        r = row["resources"]
        table.add_row(row["name"], row["task"], f"{r['gpus']}x{row['batch_size']}",
                      _published(row["task"], row["expected"]), row["description"])
    return table


def _data_line(label: str, value: str) -> Text:
    """`label  value` on one line, never wrapped or cut (print it with crop=False): a path or id is copied whole."""
    return Text.assemble((f"{label}  ", "bold"), value, no_wrap=True, overflow="ignore")


def outcome(record) -> Group:
    """`run --wait`'s summary: the run id, run dir and weights are lines of their own, whole at any width (a table
    cell would cut them); state, wall time and metrics in a table."""
    title = Text(record.id, style="bold", no_wrap=True, overflow="ignore")
    if record.smoke:
        title.append(" (smoke)")
    parts: list = [title, _data_line("run dir", str(record.run_dir))]
    weights = published.read_record(record.run_dir) if record.kind == "test" else None
    if weights:  # what a test evaluated: the recipe's released checkpoint, or the file given
        tested = f"published {weights['published']}" if weights.get("published") else str(weights.get("source"))
        parts.append(_data_line("weights", tested + (" (multi-scale + flip)" if weights.get("tta") else "")))
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("state", state_text(record.state))
    table.add_row("wall time", duration(record.elapsed_s))
    for key, value in sorted(record.metrics.items()):
        table.add_row(key, f"{value:.2f}")
    parts.append(table)
    if record.error:
        parts.append(Text(record.error, style="red"))
    return Group(*parts)


def cost_text(cost) -> str:
    """'80.0 GPU-h' / '0.04 CPU-h' / '-' for a :class:`swinctl.runs.cost.Cost` or None."""
    if cost is None:
        return "-"
    hours = cost.hours
    return f"{hours:.1f} {cost.unit}" if hours >= 10 else f"{hours:.2f} {cost.unit}"


def run_name(run_id: str, short: str | None, smoke: bool, wide: bool) -> Text:
    """A run's id as tables show it: the short id (the full one with --wide), dim and marked when smoke."""
    text = Text(run_id if wide or not short else short, style="dim" if smoke else "")
    if smoke:
        text.append(" smoke", style="dim italic")
    return text


STATUS_COLUMNS = (Col("run", wrap=True), Col("recipe", wrap=True, fold=True, drop_empty=True, min_width=16),
                  Col("state"),
                  Col("job", wrap=True, optional=3), Col("progress", wrap=True, min_width=11),
                  Col("eta", drop_empty=True, optional=1), Col("metrics", wrap=True, min_width=13),
                  Col("cost", wrap=True, drop_empty=True, optional=2),
                  Col("note", wrap=True, fold=True, drop_empty=True, min_width=20))


# a run whose job state file or ledger row cannot be read says so while it runs too (swinctl.runs.sync, .ledger)
UNREADABLE = ("job state unreadable:", "ledger row unreadable:")


def status_table(rows, *, wide: bool = False) -> FitTable:
    """The runs of `status`: short ids (full with `wide`), one line each where the terminal allows."""
    table = FitTable(*STATUS_COLUMNS, title=f"runs ({time.strftime('%H:%M:%S')})", wide=wide)
    for row in rows:
        r, p = row.record, row.progress
        progress = "-" if p is None or not p.total else f"{p.iter}/{p.total} ({100 * p.iter / p.total:.0f}%)"
        eta = duration(p.eta_s) if r.is_active and p is not None and p.eta_s is not None else "-"
        notes = []
        if r.requeues:
            notes.append(Text(f"requeued x{r.requeues}", style="yellow"))
        if r.error and (not r.is_active or r.error.startswith(UNREADABLE)):
            notes.append(Text(r.error.strip().splitlines()[0][:160], style="red" if r.is_active else "dim"))
        ref = getattr(row, "reference", None)
        if ref and ref.get("points"):  # behind or on its reference log (swinctl.guard.reference)
            notes.append(Text(ref["summary"], style="bold red" if ref.get("behind") else "dim"))
        state, job, metrics = state_text(r.state), f"{r.executor} {r.job_id or '-'}", row.metrics
        test = getattr(row, "test", None)
        if test is not None:  # `--test-after`: the test's state under training's; its metrics are the result
            t = test.record
            state = Text.assemble(state, "\ntest ", state_text(t.state))
            job += f"\ntest {t.job_id or '-'}"
            metrics = test.metrics or metrics
            if t.error and not t.is_active:
                notes.append(Text(f"test: {t.error.strip().splitlines()[0][:160]}", style="dim"))
        table.add_row(run_name(r.id, row.short_id, r.smoke, wide), r.recipe, state, job, progress, eta,
                      metric_summary(metrics, "\n"), cost_text(row.cost), Text("\n").join(notes) if notes else "")
    if not rows:
        table.add_row("(no runs)", "", "", "", "", "", "", "", "")
    return table
