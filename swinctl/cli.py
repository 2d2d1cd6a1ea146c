"""swinctl's command line: parses arguments, calls the modules that do the work, prints.

Nothing here imports torch or an OpenMMLab package at start: each verb imports what it needs when it runs, so
`swinctl --help` and `swinctl status` answer at once.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="swinctl",
    help="Train, sweep and report Swin Transformer detectors (MMDetection) and segmenters (MMSegmentation), "
    "locally or on SLURM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Generated demo datasets (COCO instances + panoptic, ADE20K, Cityscapes formats).",
                      no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

def fail(message: str, code: int = 2) -> None:
    from rich.markup import escape  # the message quotes user input: `[unclosed` is not markup

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def print_data(text: str, lexer: str) -> None:
    """YAML or a config, whole: never wrapped or cut, piped or not. Highlighted on a terminal, where lines longer
    than it are left for the terminal to fold (copying them gives the line back); plain text anywhere else."""
    if not console.is_terminal:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    from rich.syntax import Syntax

    width = max((len(line) for line in text.splitlines()), default=0)
    console.print(Syntax(text, lexer, theme="ansi_dark", code_width=max(width, 1)), crop=False, soft_wrap=True)


class _Guard:
    """Turn the project's own errors into one clear line and a non-zero exit."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit)):
            return False
        from swinctl.errors import UserError

        if isinstance(exc, UserError):
            fail(str(exc))
        if isinstance(exc, KeyError):
            fail(f"not found: {exc.args[0]}")
        return False


class _Interrupts:
    """Ctrl-C in `run`, `test` or `sweep`: exit 130 with one line that says what was submitted (nothing, before the
    first submission starts), never a traceback."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if not isinstance(exc, KeyboardInterrupt):
            return False
        progress = sys.modules["swinctl.runs.submission"].progress if "swinctl.runs.submission" in sys.modules else None
        if progress is None:
            message = "interrupted: nothing submitted"
        elif progress == "submitted":
            message = "interrupted: what was submitted goes on; see `swinctl status`"
        else:
            message = "interrupted while submitting: `swinctl status` settles what reached the scheduler"
        err_console.print(f"\n[yellow]{message}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(130)


# Defaults that are not a value (an environment variable, "every run") are given as show_default strings: typer
# prints them as "[default: ...]" itself, where brackets written into the help would be read as rich markup.
RunsRoot = Annotated[Path | None, typer.Option("--runs-root", help="Where runs and the ledger live.",
                                                  show_default="$SWINCTL_RUNS or ./runs")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a recipe field or a config key: "
                                                     "dotted.key=value (YAML value); repeatable.")]
Executor = Annotated[str, typer.Option("--executor", "-e", help="local, slurm, or auto (SLURM when sbatch is found).")]
Wandb = Annotated[str, typer.Option("--wandb", help="W&B mode: auto (online if logged in), online, offline, disabled.")]
NoScaleLr = Annotated[bool, typer.Option("--no-scale-lr", help="Keep the recipe's learning rate when the total batch "
                                         "differs from the published one (default: MMEngine's linear rule).")]


def _resource_overrides(gpus, gpus_per_node, nodes, partition, time_limit) -> list[str]:
    pairs = [("gpus", gpus), ("gpus_per_node", gpus_per_node), ("nodes", nodes), ("partition", partition),
             ("time_limit", time_limit)]
    out = [f"resources.{k}={v}" for k, v in pairs if v is not None]
    if gpus is not None and gpus_per_node is None:
        out.append(f"resources.gpus_per_node={min(gpus, 8) if nodes is None else -(-gpus // nodes)}")
    return out


@app.command()
def run(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `swinctl recipes`) or path to a recipe .yaml.")],
    smoke: Annotated[bool, typer.Option("--smoke", help="Tiny model and schedule on generated demo data.")] = False,
    executor: Executor = "auto",
    set_: SetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the config and command; submit nothing.")] = False,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow progress until the run ends.")] = False,
    runs_root: RunsRoot = None,
    wandb: Wandb = "auto",
    gpus: Annotated[int | None, typer.Option(help="GPUs in total.")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(help="GPUs per node.")] = None,
    nodes: Annotated[int | None, typer.Option(help="Nodes.")] = None,
    partition: Annotated[str | None, typer.Option(help="SLURM partition.")] = None,
    time_limit: Annotated[str | None, typer.Option("--time", help="Time limit (SLURM format).")] = None,
    no_scale_lr: NoScaleLr = False,
    test_after: Annotated[str | None, typer.Option(
        "--test-after", metavar="last|best", help="When training completes, evaluate its last checkpoint (or "
        "the best by validation) on the test split: a SLURM job that depends on training (afterok), or a local "
        "job that waits for it. status shows both as one run; report judges the test's result.")] = None,
) -> None:
    """Train RECIPE: render its config, record the run, submit it (locally or to SLURM)."""
    overrides = list(set_ or []) + _resource_overrides(gpus, gpus_per_node, nodes, partition, time_limit)
    _submit(recipe, overrides, smoke=smoke, executor=executor, dry_run=dry_run, wait=wait, root=runs_root,
            wandb=wandb, kind="train", scale_lr=not no_scale_lr, test_after=test_after)


@app.command()
def test(
    recipe: Annotated[str, typer.Argument(help="Recipe name or path.")],
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="Weights (.pth) to evaluate.",
                                                    show_default=False)] = None,
    published: Annotated[bool, typer.Option("--published", help="Evaluate the recipe's released weights "
                                            "(published_weights, the metafile's Weights: downloaded once into the "
                                            "torch hub cache) instead of --checkpoint.")] = False,
    tta: Annotated[bool, typer.Option("--tta", help="Test-time augmentation of the config (multi-scale + flip, "
                                      "MMSeg): recorded as mIoU_ms_flip.")] = False,
    smoke: Annotated[bool, typer.Option("--smoke", help="Evaluate on generated demo data.")] = False,
    executor: Executor = "auto",
    set_: SetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the config and command; submit nothing.")] = False,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow progress until the run ends.")] = True,
    runs_root: RunsRoot = None,
    wandb: Wandb = "disabled",
    no_scale_lr: NoScaleLr = False,
) -> None:
    """Evaluate a checkpoint (--checkpoint) or the recipe's released weights (--published) with RECIPE's test set
    and metrics; records the result as a test run, which `report` judges against the published numbers."""
    _submit(recipe, list(set_ or []), smoke=smoke, executor=executor, dry_run=dry_run, wait=wait, root=runs_root,
            wandb=wandb, kind="test", checkpoint=checkpoint, scale_lr=not no_scale_lr, published=published, tta=tta)


def _submit(recipe, overrides, *, smoke, executor, dry_run, wait, root, wandb, kind, checkpoint=None,
            scale_lr=True, published=False, tta=False, test_after=None) -> None:
    with _Interrupts(), _Guard():
        from swinctl import backends
        from swinctl.errors import UserError
        from swinctl.guard import show
        from swinctl.runs import lifecycle as runs

        options = dict(overrides=overrides, smoke=smoke, executor=executor, wandb=wandb, root=root, scale_lr=scale_lr,
                       fetch=not dry_run)
        follow_up = None
        if test_after is None:
            prepared = runs.prepare(recipe, kind=kind, checkpoint=checkpoint, published=published, tta=tta, **options)
        else:
            prepared, follow_up = runs.prepare_with_test(recipe, test_after, **options)
        from rich.markup import escape

        if published and dry_run:
            console.print(f"published weights: {escape(prepared.recipe.published_weights)} -> "
                          f"{escape(str(prepared.spec.checkpoint))} [dim](not downloaded or checked by a dry run)[/]",
                          highlight=False, soft_wrap=True)
        elif prepared.weights is not None and (published or prepared.weights.converted):
            console.print(escape(prepared.weights.describe()), highlight=False, soft_wrap=True)
        if dry_run:

            console.rule(f"[bold]{prepared.run_id}[/] (dry run: nothing submitted)")
            print_data(prepared.config_text, "python")
            console.rule("command")
            console.print(" ".join(prepared.command()), highlight=False, soft_wrap=True)
            spec = prepared.spec
            script = backends.get(spec.executor).preview([spec], job_name=f"swinctl:{spec.run_id}",
                                                         folder=spec.submitit_dir, parallel=1)
            if script:
                console.rule("submission script")
                console.print(script, highlight=False, soft_wrap=True)
            console.print(f"executor: {spec.executor}   signature: {prepared.signature}")
            if follow_up is not None:
                test = runs.after_job(follow_up, "TRAIN_JOB_ID").spec
                console.rule(f"then: test of the {test_after} checkpoint ({follow_up.run_id})")
                script = backends.get(test.executor).preview([test], job_name=f"swinctl:{test.run_id}",
                                                             folder=test.submitit_dir, parallel=1)
                console.print(script or "a local job that waits for training to complete", highlight=False,
                              soft_wrap=True)
            console.print(show.deviations(prepared.deviations))
            return
        runs.require_backend(prepared)  # (a scheduler that cannot take the job: its one error line, nothing else)
        console.print(show.deviations(prepared.deviations))
        record, submitted = runs.launch(prepared)
        smoke_note = " [yellow](smoke)[/]" if smoke else ""
        what = backends.get(record.executor).describe(submitted, 1)
        console.print(f"[green]submitted[/] {record.id}{smoke_note} [dim]{what}, run dir {record.run_dir}[/]",
                      soft_wrap=True)
        test_id = None
        if follow_up is not None:
            job_id = submitted.run_job_ids.get(record.id) or submitted.job_id
            try:
                test_record, test_submitted = runs.launch(runs.after_job(follow_up, job_id))
            except UserError as exc:  # training is submitted and goes on: say how to test it by hand
                fail(f"training {record.id} is submitted, its --test-after test is not: {exc}; when it ends, "
                     f"run `swinctl test {recipe} --checkpoint {record.work_dir}/<checkpoint>.pth`", code=1)
            test_id = test_record.id
            what = backends.get(test_record.executor).describe(test_submitted, 1)
            console.print(f"[green]then test[/] {test_id} [dim]{what}: the {test_after} checkpoint, once training "
                          "completes[/]", soft_wrap=True)
        if wait:
            _follow(record.id, prepared.spec.runs_root)
            if test_id is not None:
                _follow(test_id, prepared.spec.runs_root)


def stopped_watching(what: str, selector: str, cancel: str | None = None) -> None:
    """Ctrl-C while watching: the jobs go on; say so and how to get back to them (`cancel`: what `swinctl cancel`
    takes to stop them, when not `selector`)."""
    watch = " ".join(filter(None, ("swinctl status", selector, "--watch")))
    console.print(f"\n[yellow]stopped watching[/] {what}: it goes on. [dim]{watch} to watch again, swinctl cancel "
                  f"{cancel or selector} to stop it[/]")
    raise typer.Exit(130)


class _EndOnSignals:
    """While a live display hides the cursor: SIGTERM and SIGHUP end the process through the display's exit (the
    cursor shown again, the terminal as it was), with the signal's exit status 128+N."""

    SIGNALS = ("SIGTERM", "SIGHUP")

    def __enter__(self):
        import signal

        def end(signum, frame):
            raise SystemExit(128 + signum)

        self._previous = {}
        for name in self.SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                self._previous[number] = signal.signal(number, end)
        return self

    def __exit__(self, kind, exc, tb):
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)
        return False


def watch_until_done(snapshot, render, active, *, what: str, selector: str, interval: float = 2.0,
                     cancel: str | None = None) -> None:
    """Redraw `render(snapshot())` every `interval` s until `active(rows)` is false (every `--watch` and `--wait`
    table). Ctrl-C ends the watching only; SIGTERM and SIGHUP end it with the terminal restored."""
    from rich.live import Live

    try:
        rows = snapshot()
        with _EndOnSignals(), Live(render(rows), console=console, refresh_per_second=1) as live:
            while active(rows):
                time.sleep(interval)
                rows = snapshot()
                live.update(render(rows))
    except KeyboardInterrupt:
        stopped_watching(what, selector, cancel)


def _follow(run_id: str, root: Path) -> None:
    """`run --wait`: a progress bar until the run ends, then its outcome."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from swinctl import results, status
    from swinctl.runs.ledger import Ledger

    ledger = Ledger(root)
    # The "submitted" line above names the run; a short label and bar keep every column readable at 80 columns.
    columns = (TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
               TextColumn("iters"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
               TextColumn("{task.fields[note]}"))
    try:
        with _EndOnSignals(), Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(ledger.get(run_id).kind, total=None, note="starting")
            while True:
                record = status.refresh(ledger, ledger.get(run_id))
                progress = results.read_progress(record.work_dir)
                if progress is not None and progress.total:
                    bar.update(task, total=progress.total, completed=progress.iter, note=record.state.lower())
                else:
                    bar.update(task, note=record.state.lower())
                if not record.is_active:
                    if record.state == "COMPLETED" and progress is not None and progress.total:
                        bar.update(task, completed=progress.total)
                    break
                time.sleep(1.0)
    except KeyboardInterrupt:
        stopped_watching(f"run {run_id}", run_id)
    _print_outcome(ledger.get(run_id))


def _print_outcome(record) -> None:
    from swinctl import views

    console.print(views.outcome(record), crop=False)  # the run dir whole, however long
    if record.state != "COMPLETED":
        raise typer.Exit(1)


@app.command("recipes")
def list_recipes(
    text: Annotated[str | None, typer.Argument(help="Only recipes whose name, reference config or description "
                                                    "contain this (e.g. mask2former, cityscapes, swin-l).")] = None,
    codebase: Annotated[str | None, typer.Option(help="Only this codebase's recipes: mmdet or mmseg.")] = None,
    task: Annotated[str | None, typer.Option(help="Only recipes of this task: detection, instance, panoptic or "
                                                  "semantic.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Every field of every recipe listed, as JSON.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide.")] = False,
) -> None:
    """List the recipes swinctl knows: the seed recipes and the Swin zoo of MMDetection and MMSegmentation."""
    with _Guard():
        from swinctl import recipes, views

        for value, valid, option in ((codebase, ("mmdet", "mmseg"), "--codebase"),
                                     (task, ("detection", "instance", "panoptic", "semantic"), "--task")):
            if value is not None and value not in valid:
                fail(f"{option} {value!r} is not one of {', '.join(valid)}")
        rows = recipes.listing(codebase, task, text)
        if as_json:
            print(json.dumps(rows, indent=2))
        else:
            console.print(views.recipe_table(rows, wide=wide), crop=False)


@app.command()
def show(
    recipe: Annotated[str, typer.Argument(help="Recipe name or path.")],
    config: Annotated[bool, typer.Option("--config", help="Print the rendered MMEngine config too.")] = False,
    smoke: Annotated[bool, typer.Option("--smoke", help="Show the smoke variant.")] = False,
    set_: SetOpt = None,
) -> None:
    """Print the resolved recipe (and, with --config, the rendered MMEngine config)."""
    with _Guard():

        from swinctl import recipes
        from swinctl.runs import lifecycle as runs

        resolved, config_overrides = runs.resolve_recipe(recipe, list(set_ or []), smoke)
        if config_overrides and not config:
            keys = ", ".join(key for key, _ in config_overrides)
            fail(f"{keys}: not a recipe field; add --config to check it against the rendered config")
        print_data(recipes.dump_recipe(resolved), "yaml")
        if config:
            from swinctl import render

            text = render.to_text(render.render(resolved, config_overrides=config_overrides))
            console.rule("rendered config")
            print_data(text, "python")


@data_app.command("demo")
def data_demo(
    kind: Annotated[str, typer.Argument(help="coco (instances and panoptic), ade20k, cityscapes, or all.")] = "all",
    root: Annotated[Path | None, typer.Option(help="Where to put it.",
                                                 show_default="$SWINCTL_DATA or ~/.cache/swinctl/data")] = None,
) -> None:
    """Generate (once; cached) the small demo datasets smoke runs use."""
    with _Guard():
        from swinctl.data import demo

        kinds = ["coco", "ade20k"] if kind == "all" else [kind]
        for name in kinds:
            console.print(f"[green]{name}[/] demo set: {demo.ensure(name, root)}")


@app.command()
def doctor(
    recipe: Annotated[str | None, typer.Argument(help="Also check this recipe's run against its published setting: "
                                                 "batch and LR, pretrained weights, dataset splits, reference log.",
                                                 show_default=False)] = None,
    set_: SetOpt = None,
    gpus: Annotated[int | None, typer.Option(help="GPUs in total (with RECIPE).")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(help="GPUs per node (with RECIPE).")] = None,
    nodes: Annotated[int | None, typer.Option(help="Nodes (with RECIPE).")] = None,
    no_scale_lr: NoScaleLr = False,
) -> None:
    """Report versions, compiled mmcv ops, GPUs, SLURM and the W&B mode; with RECIPE, whether its run can reproduce
    the published number."""
    from swinctl import doctor as checks

    if recipe is None:
        console.print(checks.table(checks.run_checks()))
        return
    with _Guard():
        from swinctl.guard import show

        overrides = list(set_ or []) + _resource_overrides(gpus, gpus_per_node, nodes, None, None)
        found, reference = checks.recipe_checks(recipe, overrides, scale_lr=not no_scale_lr)
        console.print(show.deviations(found, title=f"of {recipe} against the published setting"))
        if reference:
            console.print(reference, highlight=False)


@app.command()
def status(
    run_: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN|SWEEP|RECIPE]...", help="Run ids (full, short or a prefix), sweep or recipe names.",
        show_default="active and recent runs")] = None,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Every run in the ledger (of a sweep: every point, not a "
                                       "summary and the first and last).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (full run ids).")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until every shown run has ended.")] = False,
    wide: Annotated[bool, typer.Option("--wide", help="Full run ids and every column, however wide.")] = False,
    runs_root: RunsRoot = None,
) -> None:
    """Show the state, progress, ETA and latest metrics of runs (re-attaching to their jobs)."""
    with _Guard():
        from swinctl import status as st
        from swinctl import views
        from swinctl.runs import submission
        from swinctl.runs.ledger import Ledger
        from swinctl.runs.lifecycle import runs_root as root_of

        ledger = Ledger(root_of(runs_root))
        submission.recover(ledger)  # adopt jobs an interrupted `swinctl run` or `sweep` left unrecorded
        selectors = list(run_ or [])
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
    from swinctl import status as st
    from swinctl import sweep as sw

    if as_json:
        print(json.dumps([row.to_json() for row in sw.sweep_rows(ledger, name)], indent=2))
        _unreachable_scheduler()
        return

    def table(rows):
        shorts = None if wide else st.short_ids(ledger.run_ids())
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
    with _Guard():
        from swinctl import status as st
        from swinctl.runs.ledger import Ledger
        from swinctl.runs.lifecycle import runs_root as root_of

        ledger = Ledger(root_of(runs_root))
        record = st.one(ledger, run_id)
        path = st.log_path(record, task=task, stderr=err)
        if path is None:
            fail(f"{record.id} has no {'stderr' if err else 'stdout'} log for task {task} yet (state {record.state})")
        for chunk in st.read_log(path, follow=follow, until=lambda: not st.refresh(ledger, ledger.get(record.id))
                                 .is_active):
            sys.stdout.write(chunk)
            sys.stdout.flush()


@app.command()
def cancel(
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN|SWEEP...", help="Runs or sweeps to cancel.")],
    runs_root: RunsRoot = None,
) -> None:
    """Cancel queued or running runs."""
    with _Guard():
        from swinctl import status as st
        from swinctl.runs.ledger import Ledger
        from swinctl.runs.lifecycle import runs_root as root_of

        ledger = Ledger(root_of(runs_root))
        for record, outcome in st.cancel(ledger, run_ids):
            console.print(f"{record.id}: {outcome}")


@app.command()
def report(
    selectors: Annotated[list[str] | None, typer.Argument(
        metavar="[RUN|SWEEP|RECIPE]...", help="What to report: run ids (full, short or a prefix), sweep or recipe "
        "names.", show_default="every run")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, md, csv, json or html.")] = "table",
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
    source: Annotated[str, typer.Option("--source", help="local logs, or wandb (a W&B project).")] = "local",
    plots: Annotated[Path | None, typer.Option("--plots", help="Also write learning-curve PNGs here.")] = None,
    wide: Annotated[bool, typer.Option("--wide", help="Full run ids and every column, however wide.")] = False,
    all_: Annotated[bool, typer.Option("--all", "-a", help="Every row of a long table in the terminal.",
                                       show_default="the first and last rows")] = False,
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON Schema of --format json and exit.")] = False,
    runs_root: RunsRoot = None,
) -> None:
    """Compare runs against the published numbers: metrics, deltas, verdicts, seeds, cost (GPU- or CPU-hours),
    plots."""
    with _Guard():
        if best and last:
            fail("--best and --last exclude each other")
        from swinctl import report as rp

        if schema:
            print(json.dumps(rp.json_schema(), indent=2))
            return
        if fmt not in rp.FORMATS:
            fail(f"--format {fmt}: choose one of {', '.join(rp.FORMATS)}")
        if out is not None:
            rp.check_out(out, fmt)  # before anything is read or written
        if plots is not None:
            rp.check_plots_dir(plots)
        from swinctl.runs.lifecycle import runs_root as root_of

        built = rp.build_report(root_of(runs_root), list(selectors or []), metric=metric or None,
                                pick="best" if best else "last", diff=diff, import_dirs=list(import_dirs or []),
                                source=source)
        if plots is not None:
            for path in rp.save_plots(built, plots):
                console.print(f"[green]plot[/] {path}")
        if out is not None:
            console.print(f"[green]wrote[/] {rp.render(built, fmt, out)}")
        elif fmt == "table":
            console.print(*rp.rich_tables(built, wide=wide, every=all_), crop=False)
        else:
            print(rp.render(built, fmt), end="")


@app.command("convert-checkpoint")
def convert_checkpoint(
    src: Annotated[Path, typer.Argument(help="Checkpoint to read (any supported Swin layout).")],
    dst: Annotated[Path, typer.Argument(help="Where to write the converted checkpoint.")],
    to: Annotated[str, typer.Option("--to", help="Target layout: swinctl (official) or mmdet (MMDet 3.x / MMSeg "
                                    "1.x).")] = "swinctl",
    window_size: Annotated[int | None, typer.Option("--window-size", min=1, help="Resample the relative position "
                                                    "bias tables to this window (7 -> 12 for window-12 models).",
                                                    show_default="the checkpoint's")] = None,
    shape: Annotated[str, typer.Option("--shape", help="keep: backbone weights stay backbone weights, a full "
                                       "detector/segmentor stays one; model: write backbone.* keys (a full "
                                       "model's layout) even from backbone weights; backbone: drop the rest.")]
    = "keep",
) -> None:
    """Convert a Swin checkpoint between layouts (official, MMDet/MMSeg, timm, full detector/segmentor)."""
    with _Guard():
        if to not in ("swinctl", "mmdet"):
            fail(f"--to {to}: choose swinctl or mmdet")
        if shape not in ("keep", "model", "backbone"):
            fail(f"--shape {shape}: choose keep, model or backbone")
        if not src.is_file():
            fail(f"checkpoint not found: {src}")
        from swinctl.models.checkpoints import convert_checkpoint_file

        report = convert_checkpoint_file(src, dst, to=to, window_size=window_size, shape=shape)
        console.print(report.summary())
        console.print(f"[green]wrote[/] {dst}")


def _register_sweep() -> None:
    from swinctl import cli_sweep  # typer/rich only at import; the sweep machinery loads when the verb runs

    app.command("sweep")(cli_sweep.sweep)


_register_sweep()


def main() -> None:  # pragma: no cover - console script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
