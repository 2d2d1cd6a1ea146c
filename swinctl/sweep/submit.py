"""Submitting a sweep: under the runs root's lock, settle what an interrupted invocation left, decide again, then
record the sweep and its submissions and hand each group of points to the backend as one submission (a SLURM job
array with `--max-parallel` as its `%` limit -- several, sharing it, where the group exceeds MaxArraySize --, or a
local runner) -- the lifecycle `run` uses (swinctl.runs.submission).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swinctl.runs.ledger import SweepPoint
from swinctl.sweep.plan import Plan, PointPlan, check_existing, decide, plan, spec_json, sweep_dir
from swinctl.sweep.space import Space, SweepError

# A sweep this large is a typo more often than a plan: it asks for --yes.
CONFIRM_ABOVE = 2000


@dataclass
class Submission:
    executor: str
    job_id: str
    run_ids: list[str]
    parallelism: int
    described: str  # e.g. "SLURM job array 123", "local sweep runner 4567"


def _points(plan_: Plan) -> list[SweepPoint]:
    return [SweepPoint(p.index, p.overrides, p.signature,
                       p.prepared.run_id if p.action == "submit" else p.current.id) for p in plan_.points]


def submit(plan_: Plan, ledger) -> list[Submission]:
    """Record the sweep and every point marked `submit`, then submit each resource group as one submission."""
    from swinctl.runs import submission

    arrays: list[tuple[list[PointPlan], int]] = plan_.arrays()
    folder = sweep_dir(plan_.root, plan_.name) / "submitit"
    records = [submission.new_submission([p.prepared for p in group], folder=folder, sweep=plan_.name)
               for group, _ in arrays]
    ledger.register_sweep(plan_.name, plan_.recipe.name, spec_json(plan_.space, plan_.recipe.name), _points(plan_),
                          records)
    out = []
    for (group, parallel), record in zip(arrays, records, strict=True):
        submitted = submission.execute(ledger, record, [p.prepared for p in group], parallel)
        out.append(Submission(record.executor, submitted.job_id, record.run_ids, parallel,
                              plan_.backend.describe(submitted, len(group))))
    return out


def run_sweep(space: Space, *, executor: str = "auto", wandb: str = "auto", root: Path | None = None,
              retry_failed: bool = False, force: bool = False, split_arrays: bool = False, yes: bool = False,
              scale_lr: bool = True) -> tuple[Plan, list[Submission], list[str]]:
    """Plan, reconcile, decide and submit under the runs root's lock. Returns (plan, submissions, notes)."""
    from swinctl.runs import lifecycle as runs
    from swinctl.runs import submission
    from swinctl.runs.ledger import Ledger

    # Everything that can be wrong with the input is found before the ledger is touched.
    checked = plan(space, executor=executor, wandb=wandb, root=root, split_arrays=split_arrays, scale_lr=scale_lr)
    if len(checked.points) > CONFIRM_ABOVE and not yes:
        raise SweepError(f"this sweep has {len(checked.points)} points (more than {CONFIRM_ABOVE}): check the space "
                         "with --dry-run, then pass --yes to submit it")
    try:
        checked.backend.require()
    except Exception as exc:
        raise SweepError(str(exc)) from None
    ledger = Ledger(runs.runs_root(root))
    with submission.root_lock(checked.root):
        notes = submission.reconcile(ledger)
        check_existing(checked, ledger)
        decide(checked, ledger, retry_failed=retry_failed, force=force)
        if checked.to_submit:
            submissions = submit(checked, ledger)
        else:
            submissions = []
            ledger.register_sweep(checked.name, checked.recipe.name, spec_json(checked.space, checked.recipe.name),
                                  _points(checked))
    return checked, submissions, notes
