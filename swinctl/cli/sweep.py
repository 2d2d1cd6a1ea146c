"""`sweep`: the command line of swinctl/sweep/.

Only typer, rich and the standard library are imported at start; the work is imported when the command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

from swinctl.cli.app import (
    Executor,
    Guard,
    Interrupts,
    Many,
    NoScaleLr,
    RunsRoot,
    Smoke,
    Wandb,
    app,
    console,
    fail,
    watch_until_done,
)


@app.command()
def sweep(
    spec: Annotated[str, typer.Argument(metavar="RECIPE|SWEEP.yaml", help="Recipe name or .yaml, or a sweep file "
                                        "(recipe, name, grid, zip, random, seeds, tie sections).")],
    grid: Annotated[Many, typer.Option("--grid", "-g", help="KEY=V1,V2,...: sweep KEY over these values (YAML "
                                       "values; the product over every --grid); repeatable.")] = None,
    zip_: Annotated[Many, typer.Option("--zip", help="KEY=V1,V2,...: values taken pairwise across every --zip "
                                       "(same length); repeatable.")] = None,
    random_n: Annotated[int | None, typer.Option("--random", metavar="N", help="Draw N points from the --param "
                                                    "distributions.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the random search (required with "
                                                "--random).")] = None,
    param: Annotated[Many, typer.Option("--param", "-p", help="KEY=uniform(a,b) | loguniform(a,b) | randint(a,b) | "
                                        "choice(x,y,...); repeatable.")] = None,
    seeds: Annotated[int | None, typer.Option("--seeds", metavar="K", help="Run every point K times with training "
                                                 "seeds seed, seed+1, ... (the recipe's `seed`).")] = None,
    tie: Annotated[Many, typer.Option("--tie", help="KEY=EXPR: derive KEY from swept keys with + - * / and numbers "
                                      "(e.g. a scheduler's eta_min as the swept optimizer.lr*0.01); "
                                      "repeatable.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Sweep name.",
                                                show_default="RECIPE-HASH of the space")] = None,
    smoke: Smoke = False,
    executor: Executor = "auto",
    set_: Annotated[Many, typer.Option("--set", "-s", help="Override for every point: dotted.key=value; "
                                       "repeatable.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the points and the sbatch array; submit "
                                          "nothing.")] = False,
    wait: Annotated[bool, typer.Option("--wait", "-w", help="Follow the points until all have ended.")] = False,
    max_parallel: Annotated[int | None, typer.Option("--max-parallel", "-j", help="Points running at once.",
                                                        show_default="all on SLURM, 1 locally")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Submit again the points whose run failed, "
                                               "was cancelled or timed out.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Submit every point, even those that already ran.")] = False,
    split_arrays: Annotated[bool, typer.Option("--split-arrays", help="Allow points with different resources "
                                               "(one job array per resource group).")] = False,
    runs_root: RunsRoot = None,
    wandb: Wandb = "auto",
    all_: Annotated[bool, typer.Option("--all", "-a", help="Every point in the tables.",
                                       show_default="a summary and the first and last points")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Submit a sweep of more than 2,000 points.")] = False,
    no_scale_lr: NoScaleLr = False,
) -> None:
    """Sweep a recipe over a grid, paired lists, a random search and seeds: one run per point, one job array.

    Points that already ran (here or in another sweep: same resolved config) are not trained again; running the
    same command again submits only what never ran (--retry-failed: also what failed; --force: everything).
    """
    with Interrupts(), Guard():
        from swinctl import sweep as sw

        space = sw.load_space(spec, grid=grid or [], zip_=zip_ or [], random_n=random_n, random_seed=seed,
                              params=param or [], seeds=seeds, ties=tie or [], sets=set_ or [], smoke=smoke,
                              name=name, max_parallel=max_parallel)
        if retry_failed and force:
            fail("--retry-failed and --force: --force already reruns every point; give one")
        if dry_run:
            _dry_run(sw, space, executor=executor, wandb=wandb, root=runs_root, retry_failed=retry_failed,
                     force=force, split_arrays=split_arrays, scale_lr=not no_scale_lr, every=all_)
            return
        plan, submissions, notes = sw.run_sweep(space, executor=executor, wandb=wandb, root=runs_root,
                                                retry_failed=retry_failed, force=force, split_arrays=split_arrays,
                                                yes=yes, scale_lr=not no_scale_lr)
        _print_deviations(plan)
        for note in notes:
            console.print(f"[yellow]reconciled[/] {note}")
        console.print(sw.plan_table(plan, every=all_))
        if not submissions:
            console.print(f"[green]nothing to submit[/]: every point of sweep {plan.name} already ran or is running"
                          + ("" if retry_failed or force else " (--retry-failed reruns failed points, --force all)"))
        for sub in submissions:
            console.print(f"[green]submitted[/] {len(sub.run_ids)} point(s) of sweep {plan.name} as {sub.described}, "
                          f"at most {sub.parallelism} at a time "
                          f"[dim]logs: {sw.sweep_dir(plan.root, plan.name) / 'submitit'}[/]")
        console.print(f"[dim]follow with: swinctl status {plan.name} --watch[/]")
        if wait:
            _follow(sw, plan, every=all_)


def _dry_run(sw, space, every: bool = False, **kwargs) -> None:
    from swinctl.runs.ledger import LEDGER_FILE, Ledger
    from swinctl.runs.lifecycle import runs_root

    root = runs_root(kwargs.pop("root"))
    ledger = Ledger(root) if (root / LEDGER_FILE).is_file() else None  # a dry run creates nothing
    plan = sw.plan(space, root=root, ledger=ledger, **kwargs)
    console.rule(f"[bold]sweep {plan.name}[/] (dry run: nothing submitted)")
    console.print(sw.plan_table(plan, every=every))
    for group, parallel in plan.arrays():
        console.rule(f"{plan.executor}: {len(group)} point(s), at most {parallel} at a time")
        script = plan.backend.preview([p.prepared.spec for p in group], job_name=f"swinctl:sweep:{plan.name}:DRY-RUN",
                                      folder=sw.sweep_dir(plan.root, plan.name) / "submitit", parallel=parallel)
        console.print(script or " ".join(group[0].prepared.command()), highlight=False, soft_wrap=True)
    if not plan.to_submit:
        console.print("nothing would be submitted: every point already ran or is running")
    if len(plan.points) > sw.CONFIRM_ABOVE:
        console.print(f"[yellow]{len(plan.points)} points[/]: submitting needs --yes")
    _print_deviations(plan)


def _print_deviations(plan) -> None:
    """Each point's deviations from the published setting; points that share them are printed once."""
    from swinctl.guard import show

    seen: dict[str, list[int]] = {}
    found_of: dict[str, list[dict]] = {}
    for point in plan.points:
        key = repr(point.prepared.deviations)
        seen.setdefault(key, []).append(point.index)
        found_of[key] = point.prepared.deviations
    for key, indexes in seen.items():
        which = "every point" if len(seen) == 1 else f"point{'s' if len(indexes) > 1 else ''} " \
            + ", ".join(map(str, indexes))
        console.print(show.deviations(found_of[key], title=f"of {which} against the published setting"))


def _follow(sw, plan, every: bool = False) -> None:
    from swinctl.runs.ledger import Ledger

    ledger = Ledger(plan.root)
    rows: list = []

    def snapshot():
        rows[:] = sw.sweep_rows(ledger, plan.name, every=every)
        return list(rows)

    def table(shown):
        from swinctl.runs.select import short_ids

        return sw.sweep_table(shown, title=f"sweep {plan.name}", short_ids=short_ids(ledger.run_ids()), every=every)

    watch_until_done(snapshot, table, sw.active,
                     what=f"sweep {plan.name}", selector=plan.name)
    failed = [r for r in rows if r.row is None or not r.row.record.completed]
    if failed:
        console.print(f"[red]{len(failed)} of {len(rows)} point(s) did not complete[/]")
        raise typer.Exit(1)
