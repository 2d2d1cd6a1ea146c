"""`report`: result tables against the published numbers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from swinctl.cli.app import (
    Guard,
    RunsRoot,
    app,
    console,
    fail,
    no_runs_yet,
)


@app.command()
def report(
    selectors: Annotated[list[str] | None, typer.Argument(
        metavar="RUN|SWEEP|RECIPE", help="What to report: run ids (full, short or a prefix), sweep or recipe "
        "names.", show_default="every run")] = None,
    fmt: Annotated[Literal["table", "md", "csv", "json", "html"], typer.Option("--format", "-f")] = "table",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of the terminal "
                                                "(html: one self-contained file with plots).")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Metric(s) to report.",
                                                        show_default="the recipe's expected metrics")] = None,
    best: Annotated[bool, typer.Option("--best", help="Each run's best validation instead of its last.")] = False,
    last: Annotated[bool, typer.Option("--last", help="Each run's last validation (the default).")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show only the overrides that vary.")] = False,
    import_dirs: Annotated[list[Path] | None, typer.Option("--import", help="Also read work dirs swinctl did not "
                                                              "create (MMEngine or MMCV 1.x logs, JSON or "
                                                              "text).")] = None,
    source: Annotated[Literal["local", "wandb"], typer.Option("--source", help="local logs, or wandb (a W&B "
                                                                  "project).")] = "local",
    plots: Annotated[Path | None, typer.Option("--plots", help="Also write learning-curve PNGs here.")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Full run ids and every column, however wide.")] = False,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Every row of a long table in the terminal.",
                                       show_default="the first and last rows")] = False,
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON Schema of --format json and exit.")] = False,
    runs_root: RunsRoot = None,
) -> None:
    """Compare runs against the published numbers: metrics, deltas, verdicts, seeds, cost (GPU- or CPU-hours),
    plots."""
    with Guard():
        if best and last:
            fail("--best and --last exclude each other")
        from swinctl import report as rp

        if schema:
            print(json.dumps(rp.json_schema(), indent=2))
            return
        if out is not None:
            rp.check_out(out, fmt)  # before anything is read or written
        if plots is not None:
            rp.check_plots_dir(plots)
        from swinctl.runs.lifecycle import runs_root as root_of

        root = root_of(runs_root)
        built = rp.build_report(root, list(selectors or []), metric=metric or None,
                                pick="best" if best else "last", diff=diff, import_dirs=list(import_dirs or []),
                                source=source)
        if plots is not None:
            for path in rp.save_plots(built, plots):
                console.print(f"[green]plot[/] {path}")
        if out is not None:
            console.print(f"[green]wrote[/] {rp.render(built, fmt, out)}")
        elif fmt == "table" and not (built.runs or selectors or import_dirs or source != "local"):
            console.print(no_runs_yet(root), markup=False, highlight=False, soft_wrap=True)  # not an empty table
        elif fmt == "table":
            console.print(*rp.rich_tables(built, wide=wide, every=all_), crop=False)
        else:
            print(rp.render(built, fmt), end="")
