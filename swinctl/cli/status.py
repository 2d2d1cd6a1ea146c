"""`status`, `logs`, `cancel`: looking at runs and stopping them."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from swinctl.cli.app import (
    Guard,
    RunsRoot,
    app,
    console,
    err_console,
    fail,
    no_runs_yet,
    watch_until_done,
)


@app.command()
def status(
    run_: Annotated[list[str] | None, typer.Argument(
        metavar="RUN|SWEEP|RECIPE", help="Run ids (full, short or a prefix), sweep or recipe names.",
        show_default="active and recent runs")] = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Every run in the ledger (of a sweep: every point, not a "
                                       "summary and the first and last).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (full run ids).")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until every shown run has ended.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Full run ids and every column, however wide.")] = False,
    runs_root: RunsRoot = None,
) -> None:
    """Show the state, progress, ETA and latest metrics of runs (re-attaching to their jobs)."""
    with Guard():
        from swinctl import status as st
        from swinctl import views
        from swinctl.runs import submission
        from swinctl.runs.ledger import Ledger
        from swinctl.runs.lifecycle import runs_root as root_of

        root = root_of(runs_root)
        ledger = Ledger.existing(root)  # a look creates nothing: no ledger, no runs
        selectors = list(run_ or [])
        if ledger is None and selectors:
            names = ", ".join(f"'{s}'" for s in selectors)
            fail(f"no run id, short id, sweep or recipe {names}: {no_runs_yet(root)}")
        if ledger is None or not (selectors or ledger.list_runs()):
            if as_json:
                print("[]")
            else:
                console.print(no_runs_yet(root), markup=False, highlight=False, soft_wrap=True)
            return
        submission.recover(ledger)  # adopt jobs an interrupted `swinctl run` or `sweep` left unrecorded
        if len(selectors) == 1 and ledger.get_sweep(selectors[0]) is not None:
            _sweep_status(ledger, selectors[0], as_json=as_json, watch=watch, wide=wide, every=all_)
            return

        def snapshot():
            return st.collect(ledger, selectors, everything=all_)

        if as_json:
            print(json.dumps([row.to_json() for row in snapshot()], indent=2))
            _unreachable_scheduler()
            return
        if not watch:
            console.print(views.status_table(snapshot(), wide=wide), crop=False)  # --wide: wider than the terminal
            _unreachable_scheduler()
            return
        watch_until_done(snapshot, lambda rows: views.status_table(rows, wide=wide),
                         lambda rows: any(row.record.is_active for row in rows), what="these runs",
                         selector=" ".join(selectors) or ("--all" if all_ else ""),
                         cancel=" ".join(selectors) or "RUN...")


def _unreachable_scheduler() -> None:
    """Once, after the table: the scheduler could not be asked, so the states shown are the last known (exit 1)."""
    slurm = sys.modules.get("swinctl.backends.slurm")
    if slurm is not None and slurm.unreachable:
        err_console.print(f"[yellow]warning:[/] SLURM could not be asked ({slurm.unreachable}): the states shown "
                          "are the last known; check SLURM_CONF and the controller (sinfo)", highlight=False,
                          soft_wrap=True, markup=True)
        raise typer.Exit(1)


def _sweep_status(ledger, name: str, *, as_json: bool, watch: bool, wide: bool = False, every: bool = False) -> None:
    from swinctl import sweep as sw
    from swinctl.runs.select import short_ids

    if as_json:
        print(json.dumps([row.to_json() for row in sw.sweep_rows(ledger, name)], indent=2))
        _unreachable_scheduler()
        return

    def table(rows):
        shorts = None if wide else short_ids(ledger.run_ids())
        return sw.sweep_table(rows, title=name, short_ids=shorts, every=every)

    if not watch:
        console.print(table(sw.sweep_rows(ledger, name, every=every)), crop=False)
        _unreachable_scheduler()
        return
    watch_until_done(lambda: sw.sweep_rows(ledger, name, every=every), table, sw.active, what=f"sweep {name}",
                     selector=name)


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id (or a unique prefix).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing as the log grows.")] = False,
    task: Annotated[int, typer.Option("--task", help="Task (rank) whose log to show.")] = 0,
    err: Annotated[bool, typer.Option("--err", help="The task's stderr instead of stdout.")] = False,
    runs_root: RunsRoot = None,
) -> None:
    """Print a run's job log (stdout, or stderr with --err)."""
    with Guard():
        from swinctl.runs import logs as run_logs
        from swinctl.runs import select, sync
        from swinctl.runs.ledger import Ledger
        from swinctl.runs.lifecycle import runs_root as root_of

        root = root_of(runs_root)
        ledger = Ledger.existing(root)
        if ledger is None:
            fail(f"no run '{run_id}': {no_runs_yet(root)}")
        record = select.one(ledger, run_id)
        path = run_logs.log_path(record, task=task, stderr=err)
        if path is None:
            fail(f"{record.id} has no {'stderr' if err else 'stdout'} log for task {task} yet (state {record.state})")
        def ended() -> bool:
            return not sync.refresh(ledger, ledger.get(record.id)).is_active

        for chunk in run_logs.read_log(path, follow=follow, until=ended):
            sys.stdout.write(chunk)
            sys.stdout.flush()


@app.command()
def cancel(
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN|SWEEP", help="Runs or sweeps to cancel.")],
    runs_root: RunsRoot = None,
) -> None:
    """Cancel queued or running runs."""
    with Guard():
        from swinctl.runs import lifecycle
        from swinctl.runs.ledger import Ledger

        root = lifecycle.runs_root(runs_root)
        ledger = Ledger.existing(root)
        if ledger is None:
            fail(f"no run {', '.join(repr(r) for r in run_ids)}: {no_runs_yet(root)}")
        for record, outcome in lifecycle.cancel(ledger, run_ids):
            console.print(f"{record.id}: {outcome}")
