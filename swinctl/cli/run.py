"""`run` and `test`: prepare, submit and (with --wait) follow a run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Literal

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
SmokeProfile = Annotated[Literal["fast", "learn"] | None, typer.Option(
    "--smoke-profile", show_default=False, help="Which smoke run (implies --smoke): fast "
    "(the default: a tiny model that proves the chain runs; its numbers stay near 0) or learn (the recipe's "
    "smoke.learn: a model that learns the demo data, about a minute on 2 idle CPU cores).")]
ShowConfig = Annotated[bool, typer.Option("--config", help="With --dry-run: also print the rendered MMEngine config "
                                          "(after the summary).")]


@app.command()
def run(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `swinctl recipes`) or path to a recipe .yaml.")],
    smoke: Annotated[bool, typer.Option("--smoke", help="Tiny model and schedule on generated demo data.")] = False,
    smoke_profile: SmokeProfile = None,
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
    test_after: Annotated[Literal["last", "best"] | None, typer.Option(
        "--test-after", help="When training completes, evaluate its last checkpoint (or "
        "the best by validation) on the test split: a SLURM job that depends on training (afterok), or a local "
        "job that waits for it. status shows both as one run; report judges the test's result.")] = None,
) -> None:
    """Train RECIPE: render its config, record the run, submit it (locally or to SLURM)."""
    overrides = list(set_ or []) + resource_overrides(gpus, gpus_per_node, nodes, partition, time_limit)
    _submit(recipe, overrides, smoke=smoke, executor=executor, dry_run=dry_run, wait=wait, root=runs_root,
            wandb=wandb, kind="train", show_config=config, smoke_profile=smoke_profile, scale_lr=not no_scale_lr,
            test_after=test_after)


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
    smoke_profile: SmokeProfile = None,
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
            wandb=wandb, kind="test", show_config=config, smoke_profile=smoke_profile, checkpoint=checkpoint,
            scale_lr=not no_scale_lr, published=published, tta=tta)


def _submit(recipe, overrides, *, smoke, executor, dry_run, wait, root, wandb, kind, checkpoint=None,
            scale_lr=True, published=False, tta=False, test_after=None, show_config=False,
            smoke_profile=None) -> None:
    if show_config and not dry_run:
        fail("--config prints the rendered config of a dry run: add --dry-run (or use `swinctl show RECIPE "
             "--config`)")
    with Interrupts(), Guard():
        from swinctl import backends
        from swinctl.errors import UserError
        from swinctl.guard import show
        from swinctl.runs import lifecycle as runs

        smoke = smoke or smoke_profile is not None
        options = dict(overrides=overrides, smoke=smoke, executor=executor, wandb=wandb, root=root, scale_lr=scale_lr,
                       fetch=not dry_run, smoke_profile=smoke_profile or "fast")
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
                console.print(f"[dim]rendered config: {lines} lines, not shown (--config prints it)[/]",
                              highlight=False)
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
            note = what_smoke_means(prepared.recipe, smoke_profile or "fast") if smoke and kind == "train" else None
            _follow(record.id, ledger, note if test_id is None else None)
            if test_id is not None:
                _follow(test_id, ledger, note)


def what_smoke_means(recipe, profile: str) -> str:
    """What a smoke run's numbers mean, in one line under them (they are never a reproduction)."""
    if profile == "learn":
        first = recipe.expected[0].source if recipe.expected else None
        published = " / ".join(f"{e.value:g} {e.metric}" for e in recipe.expected if e.source == first)
        return ("smoke run (learn profile) on generated demo data: these numbers show that the pipeline learns; "
                "they are not comparable with the published " + (published or "numbers"))
    way_out = (": `--smoke-profile learn` trains one that does (about a minute on 2 idle CPU cores)"
               if recipe.smoke.learn else "")
    return ("smoke run on generated demo data: a tiny model trained for seconds, so numbers near 0 are expected; it "
            f"shows that the pipeline runs, not that it learns{way_out}")


class Eta:
    """The ETA `run --wait` shows, steady: it follows the training log's own (MMEngine's `eta:`, from the mean
    iteration time so far, counted down since its line was written) smoothly, closing an eighth of the gap a
    second, so a slow or fast interval does not make it jump; it stands still while the run validates or tests
    (the log's eta is the training loop's alone). Pure: the caller passes the time, so recorded logs replay it."""

    SMOOTHING_S = 8.0  # the time constant with which it follows the log's value

    def __init__(self) -> None:
        self.value: float | None = None  # what is shown
        self.target: float | None = None  # the log's eta, counted down
        self.at: float | None = None
        self.line: tuple | None = None  # the log line it last read: (iteration, its eta)

    def update(self, progress, now: float) -> float | None:
        dt = 0.0 if self.at is None else max(now - self.at, 0.0)
        self.at = now
        if progress is None or progress.phase != "train" or progress.eta_s is None:
            return self.value  # not training (or no eta yet): held
        line = (progress.iter, progress.eta_s)
        if line != self.line:  # a new line: the log's eta, less the time since it was written
            self.line = line
            self.target = max(progress.eta_s - max(now - (progress.updated_at or now), 0.0), 0.0)
        else:
            self.target = max(self.target - dt, 0.0)
        if self.value is None:
            self.value = self.target
        else:
            counted = max(self.value - dt, 0.0)
            self.value = counted + (self.target - counted) * min(dt / self.SMOOTHING_S, 1.0)
        return self.value


def phase(state: str, progress) -> str:
    """What the run is doing, in one word: from the scheduler's state, then the newest log line."""
    from swinctl.job.files import ACTIVE_STATES

    if state not in ACTIVE_STATES:
        return state.lower()
    if state == "PENDING":
        return "queued"
    if progress is None:  # no progress line yet: imports, data and model building
        return "starting"
    if progress.phase != "train":
        return {"val": "validating", "test": "testing"}.get(progress.phase, progress.phase)
    return "finishing" if progress.done else "training"


def follow_fields(state: str, progress, eta: Eta, now: float) -> dict:
    """The progress line's fields (total, completed, count, eta, note) for a run's state and log progress."""
    total = progress.total if progress is not None and progress.total else None
    done = total if total and state == "COMPLETED" else (progress.iter if total else 0)
    left = eta.update(progress, now) if state in ("RUNNING", "REQUEUED") else None
    return dict(total=total, completed=done, count=f"{done}/{total} iters" if total else "",
                eta="" if left is None or state == "COMPLETED" else f"eta {_clock(left)}", note=phase(state, progress))


def _clock(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _follow(run_id: str, ledger, note: str | None = None) -> None:
    """`run --wait`: a progress bar until the run ends, then its outcome (and `note`, what its numbers mean)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from swinctl import results
    from swinctl.runs import sync

    # The "submitted" line above names the run; a short label and bar keep every column readable at 80 columns.
    columns = (TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), TextColumn("{task.fields[count]}"),
               TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[note]}"))
    eta = Eta()
    try:
        with EndOnSignals(), Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(ledger.get(run_id).kind, total=None, count="", eta="", note="starting")
            while True:
                record = sync.refresh(ledger, ledger.get(run_id))
                progress = results.read_progress(record.work_dir)
                bar.update(task, **follow_fields(record.state, progress, eta, time.time()))
                if not record.is_active:
                    break
                time.sleep(1.0)
    except KeyboardInterrupt:
        stopped_watching(f"run {run_id}", run_id)
    _print_outcome(ledger.get(run_id), note)


def _print_outcome(record, note: str | None = None) -> None:
    from swinctl import views

    console.print(views.outcome(record), crop=False)  # the run dir whole, however long
    if not record.completed:
        raise typer.Exit(1)
    if note:
        console.print(f"[dim]{note}[/]", highlight=False)
