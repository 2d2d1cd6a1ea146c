"""`run` and `test`: prepare, submit and (with --wait) follow a run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from swinctl.cli.app import (
    EndOnSignals,
    Executor,
    Guard,
    Interrupts,
    NoScaleLr,
    RunsRoot,
    SetOpt,
    Wandb,
    app,
    console,
    fail,
    print_data,
    resource_overrides,
    stopped_watching,
)


DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the command, the submission script and the "
                                      "deviations from the published setting; submit nothing.")]
ShowConfig = Annotated[bool, typer.Option("--config", help="With --dry-run: also print the rendered MMEngine config "
                                          "(after the summary).")]


@app.command()
def run(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `swinctl recipes`) or path to a recipe .yaml.")],
    smoke: Annotated[bool, typer.Option("--smoke", help="Tiny model and schedule on generated demo data.")] = False,
    executor: Executor = "auto",
    set_: SetOpt = None,
    dry_run: DryRun = False,
    config: ShowConfig = False,
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
    overrides = list(set_ or []) + resource_overrides(gpus, gpus_per_node, nodes, partition, time_limit)
    _submit(recipe, overrides, smoke=smoke, executor=executor, dry_run=dry_run, wait=wait, root=runs_root,
            wandb=wandb, kind="train", show_config=config, scale_lr=not no_scale_lr, test_after=test_after)


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
    dry_run: DryRun = False,
    config: ShowConfig = False,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow progress until the run ends.")] = True,
    runs_root: RunsRoot = None,
    wandb: Wandb = "disabled",
    no_scale_lr: NoScaleLr = False,
) -> None:
    """Evaluate a checkpoint (--checkpoint) or the recipe's released weights (--published) with RECIPE's test set
    and metrics; records the result as a test run, which `report` judges against the published numbers."""
    _submit(recipe, list(set_ or []), smoke=smoke, executor=executor, dry_run=dry_run, wait=wait, root=runs_root,
            wandb=wandb, kind="test", show_config=config, checkpoint=checkpoint, scale_lr=not no_scale_lr,
            published=published, tta=tta)


def _submit(recipe, overrides, *, smoke, executor, dry_run, wait, root, wandb, kind, checkpoint=None,
            scale_lr=True, published=False, tta=False, test_after=None, show_config=False) -> None:
    if show_config and not dry_run:
        fail("--config prints the rendered config of a dry run: add --dry-run (or use `swinctl show RECIPE "
             "--config`)")
    with Interrupts(), Guard():
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
            # the summary first: what would run, where, and how it differs from the published setting; the
            # ~450-line config only on request, after it
            console.rule(f"[bold]{prepared.run_id}[/] (dry run: nothing submitted)")
            console.print(" ".join(prepared.command()), highlight=False, soft_wrap=True)
            spec = prepared.spec
            script = backends.get(spec.executor).preview([spec], job_name=f"swinctl:{spec.run_id}",
                                                         folder=spec.submitit_dir, parallel=1)
            if script:
                console.rule("submission script")
                console.print(script, highlight=False, soft_wrap=True)
            if follow_up is not None:
                test = runs.after_job(follow_up, "TRAIN_JOB_ID").spec
                console.rule(f"then: test of the {test_after} checkpoint ({follow_up.run_id})")
                script = backends.get(test.executor).preview([test], job_name=f"swinctl:{test.run_id}",
                                                             folder=test.submitit_dir, parallel=1)
                console.print(script or "a local job that waits for training to complete", highlight=False,
                              soft_wrap=True)
            console.rule()
            console.print(f"executor: {spec.executor}   signature: {prepared.signature}", highlight=False,
                          soft_wrap=True)
            console.print(show.deviations(prepared.deviations))
            lines = prepared.config_text.count("\n") + 1
            if show_config:
                console.rule(f"config ({lines} lines)")
                print_data(prepared.config_text, "python")
            else:
                console.print(f"[dim]rendered config: {lines} lines, not shown (--config prints it)[/]", highlight=False)
            return
        runs.require_backend(prepared)  # (a scheduler that cannot take the job: its one error line, nothing else)
        console.print(show.deviations(prepared.deviations))
        from swinctl.runs.ledger import Ledger

        ledger = Ledger(prepared.spec.runs_root)  # opened once for the whole command
        record, submitted = runs.launch(prepared, ledger)
        smoke_note = " [yellow](smoke)[/]" if smoke else ""
        what = backends.get(record.executor).describe(submitted, 1)
        console.print(f"[green]submitted[/] {record.id}{smoke_note} [dim]{what}, run dir {record.run_dir}[/]",
                      soft_wrap=True)
        test_id = None
        if follow_up is not None:
            job_id = submitted.run_job_ids.get(record.id) or submitted.job_id
            try:
                test_record, test_submitted = runs.launch(runs.after_job(follow_up, job_id), ledger)
            except UserError as exc:  # training is submitted and goes on: say how to test it by hand
                fail(f"training {record.id} is submitted, its --test-after test is not: {exc}; when it ends, "
                     f"run `swinctl test {recipe} --checkpoint {record.work_dir}/<checkpoint>.pth`", code=1)
            test_id = test_record.id
            what = backends.get(test_record.executor).describe(test_submitted, 1)
            console.print(f"[green]then test[/] {test_id} [dim]{what}: the {test_after} checkpoint, once training "
                          "completes[/]", soft_wrap=True)
        if wait:
            _follow(record.id, ledger)
            if test_id is not None:
                _follow(test_id, ledger)


def _follow(run_id: str, ledger) -> None:
    """`run --wait`: a progress bar until the run ends, then its outcome."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from swinctl import results
    from swinctl.runs import sync

    # The "submitted" line above names the run; a short label and bar keep every column readable at 80 columns.
    columns = (TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
               TextColumn("iters"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
               TextColumn("{task.fields[note]}"))
    try:
        with EndOnSignals(), Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(ledger.get(run_id).kind, total=None, note="starting")
            while True:
                record = sync.refresh(ledger, ledger.get(run_id))
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
