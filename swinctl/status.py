"""`status`'s rows: each selected run, refreshed from its job's files and its scheduler (swinctl.runs.sync), with
its progress and ETA, metrics, cost and how it compares with the recipe's reference log.

Jobs write their own state into their run directories; whenever someone looks, the ledger is brought up to date
from those files and from the scheduler, so `status` re-attaches to jobs submitted by earlier invocations from the
ledger alone. `report` folds runs in the same way (:func:`swinctl.runs.sync.refresh_all`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from swinctl import results
from swinctl.runs import sync
from swinctl.runs.cost import Cost, cost, gpu_hours
from swinctl.runs.ledger import Ledger, RunRecord
from swinctl.runs.select import select, short_ids


@dataclass(frozen=True)
class StatusRow:
    record: RunRecord
    progress: results.Progress | None
    metrics: dict[str, float]
    gpu_hours: float | None
    cost: Cost | None = None
    short_id: str | None = None  # the shortest unique tail of the id among the ledger's runs
    reference: dict | None = None  # validations vs the recipe's reference log (swinctl.guard.reference)
    test: StatusRow | None = None  # its `--test-after` test, shown as part of this run

    def to_json(self) -> dict:
        r, p = self.record, self.progress
        return {
            "id": r.id, "short_id": self.short_id or r.id, "recipe": r.recipe, "state": r.state, "smoke": r.smoke,
            "executor": r.executor, "job_id": r.job_id, "sweep": r.sweep, "overrides": r.overrides,
            "requeues": r.requeues,
            "progress": None if p is None else {"iter": p.iter, "total": p.total, "eta_s": p.eta_s},
            "metrics": self.metrics, "gpu_hours": self.gpu_hours,
            "cost": None if self.cost is None else dataclasses.asdict(self.cost), "error": r.error,
            "run_dir": str(r.run_dir), "deviations": r.deviations, "reference": self.reference,
            "follows": r.follows, "test": None if self.test is None else self.test.to_json(),
        }


def row(ledger: Ledger, record: RunRecord, short_id: str | None = None) -> StatusRow:
    """The status of one run (refresh it first: `collect` refreshes all its runs at once)."""
    progress = results.read_progress(record.work_dir) if record.work_dir.exists() else None
    metrics = record.metrics
    if not metrics and record.work_dir.exists():
        metrics = results.read_work_dir(record.work_dir).last_metrics()
    compared = None
    if not record.smoke and record.work_dir.exists():  # behind the reference log? (swinctl.guard.reference)
        from swinctl.guard import reference

        found = reference.compare_run(record.run_dir, record.work_dir)
        compared = found.to_dict() if found is not None else None
    return StatusRow(record, progress, metrics, gpu_hours(record), cost(record), short_id, compared)


def collect(ledger: Ledger, selectors: list[str], everything: bool = False) -> list[StatusRow]:
    shorts = short_ids(r.id for r in ledger.list_runs())
    records = sync.refresh_all(ledger, select(ledger, selectors, everything))
    return with_tests([row(ledger, record, shorts.get(record.id)) for record in records])


def with_tests(rows: list[StatusRow]) -> list[StatusRow]:
    """Each `--test-after` test folded into its training run's row (one run to the user); a test whose training
    run is not among `rows` keeps its own."""
    by_id = {r.record.id: r for r in rows}
    tests = {r.record.follows: r for r in rows if r.record.follows in by_id}
    return [dataclasses.replace(r, test=tests.get(r.record.id)) for r in rows
            if r.record.follows not in by_id]


