"""Where report rows come from: the ledger and its runs' logs, and work dirs trained elsewhere (--import).
W&B is :mod:`swinctl.report.wandb_source`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from swinctl import published, results
from swinctl.job.files import State
from swinctl.report import judging
from swinctl.report.judging import Expected
from swinctl.report.model import IMPORTED, NO_METRICS, MetricResult, ReportError, RunRow
from swinctl.runs import cost as cost_


def metrics_for(requested: list[str] | None, expectations, codebase: str | None,
                logged: set[str] = frozenset()) -> list[str]:
    """What a row shows: --metric, else the recipe's expected metrics (those its logs have, once they have any: a
    single-scale run logs no mIoU_ms_flip), else those of the task its logs show (box and mask mAP, PQ, mIoU), else
    the codebase's headline metric."""
    if requested:
        return list(requested)
    names = list(dict.fromkeys(e.metric for e in expectations))
    if names:
        return [n for n in names if n in logged] or names
    return list(results.task_metrics(logged)) or [results.PRIMARY_METRIC.get(codebase or "", "bbox_mAP")]


def _at(point: results.ValPoint | None) -> dict | None:
    return None if point is None else {"iter": point.iter, "epoch": point.epoch}


def _progress_dict(p: results.Progress | None) -> dict | None:
    if p is None:
        return None
    return {"iter": p.iter, "total": p.total, "epoch": p.epoch, "max_epochs": p.max_epochs, "eta_s": p.eta_s,
            "phase": p.phase}


def make_row(*, id: str, origin: str, kind: str, recipe: str | None, codebase: str | None, sweep: str | None,
             seed: int | None, overrides: Sequence[str], state: str, smoke: bool, executor: str | None,
             gpus: int | None, elapsed_s: float | None, gpu_hours: float | None, work_dir: str | None,
             log_format: str, progress: results.Progress | None, flags: Iterable[str], problems: list[str],
             last: dict[str, float], best: dict[str, tuple[float, results.ValPoint | None]],
             last_at: results.ValPoint | None, expectation: Expected | None,
             metrics: list[str] | None, pick: str, cost: cost_.Cost | None = None,
             deviations: list[str] = (), reference: dict | None = None,
             published_weights: str | None = None, tested_by: str | None = None) -> RunRow:
    """One report row from what is known about a run, whatever its origin (ledger, import, W&B).
    `published_weights`: the released checkpoint a test run evaluated (its verdicts then speak of the data and the
    evaluation, the only things left to differ). `tested_by`: the `--test-after` test whose result `last` is."""
    expectations, tolerance = expectation if expectation else ([], None)
    incomplete = results.INCOMPLETE in flags
    rows = []
    for metric in metrics_for(metrics, expectations, codebase, set(last)):
        last_value = last.get(metric)
        best_value, best_point = best.get(metric, (None, None))
        if pick == "best" and best_value is not None:
            value, at = best_value, _at(best_point)
        else:
            value, at = last_value, _at(last_at) if last_value is not None else None
        # a smoke run is never compared with a published number: no delta, no source verdict, no per-hour
        refs = judging.references(value, expectations, metric, tolerance or 0.0) \
            if tolerance is not None and not smoke else []
        judged = judging.verdict(value, refs, smoke=smoke, state=state, incomplete=incomplete,
                                 diverged=results.DIVERGED in flags)
        per_hour = round(value / gpu_hours, 4) if value is not None and gpu_hours and not smoke else None
        rows.append(MetricResult(metric, value, last_value, best_value, at, _at(best_point), per_hour, tolerance,
                                 judged, refs))
    return RunRow(id=id, origin=origin, kind=kind, recipe=recipe, codebase=codebase, sweep=sweep, seed=seed,
                  overrides=list(overrides), state=state, smoke=smoke, executor=executor, gpus=gpus,
                  elapsed_s=elapsed_s, gpu_hours=gpu_hours, work_dir=work_dir, log_format=log_format,
                  progress=_progress_dict(progress), flags=sorted(flags), problems=problems,
                  verdict=rows[0].verdict if rows else NO_METRICS, results=rows, cost=cost,
                  deviations=list(deviations), reference=reference, published_weights=published_weights,
                  notes=judging.published_notes(rows) if published_weights else [], tested_by=tested_by)


def from_log(log: results.RunLog, metrics_wanted: Iterable[str]) -> tuple[dict, dict, results.ValPoint | None]:
    last = log.final_metrics()
    last_at = None if log.test_metrics else (log.val[-1] if log.val else None)
    best = {}
    for metric in metrics_wanted:
        point = log.best_point(metric)
        if point is not None:
            best[metric] = (point.metrics[metric], point)
        elif metric in log.test_metrics:
            best[metric] = (log.test_metrics[metric], None)
    return last, best, last_at


def _all_metric_names(metrics: list[str] | None, expectation: Expected | None) -> list[str]:
    if metrics:
        return metrics
    names = [*results.PRIMARY_METRIC.values(), *results.HEADLINE_METRICS]
    if expectation:
        names += [e.metric for e in expectation[0]]
    return list(dict.fromkeys(names))


def guard_fields(run_dir: Path, work_dir: Path, recorded: list[dict] | None, smoke: bool) -> dict:
    """A run's deviations from its published setting (the ledger's, else its run dir's deviations.json) and its
    comparison with the recipe's reference log (swinctl.guard)."""
    from swinctl import guard
    from swinctl.guard import reference

    found = recorded if recorded else guard.read(run_dir)
    deviations = [d["message"] for d in found or [] if d.get("severity") != "note" and d.get("message")]
    compared = None if smoke else reference.compare_run(run_dir, work_dir)
    return {"deviations": deviations, "reference": compared.to_dict() if compared is not None else None}


# ---------------------------------------------------------------------------------------------- the ledger


def ledger_records(root: Path) -> list:
    """Every run of the ledger under `root`, brought up to date as `status` does: jobs an interrupted submission
    left unrecorded adopted, and every active run's job files and scheduler state folded in first
    (:func:`swinctl.runs.sync.refresh_all`); [] when there is no ledger (a report never creates one)."""
    from swinctl.runs import submission, sync
    from swinctl.runs.ledger import Ledger

    ledger = Ledger.existing(root)
    if ledger is None:
        return []
    submission.recover(ledger)
    return sync.refresh_all(ledger, ledger.list_runs())


def row_from_record(record, expectation: Expected | None, metrics: list[str] | None, pick: str,
                    resources: dict | None = None, tested=None) -> RunRow:
    """A report row from a ledger record and its work dir's logs (`resources`: of its recipe.yaml, if read).
    `tested`: the run's `--test-after` test, whose result is the one judged once it has one."""
    log = results.read_work_dir(record.work_dir, train=False)
    problems = list(log.problems)
    flags = set(log.flags)
    last, best, last_at = from_log(log, _all_metric_names(metrics, expectation))
    tested_by = None
    if tested is not None:
        test_metrics = results.read_work_dir(tested.work_dir, train=False).test_metrics or tested.metrics
        if tested.state == State.COMPLETED and test_metrics:
            last, last_at, tested_by = dict(test_metrics), None, tested.id
        elif tested.is_active:
            problems.append(f"its test {tested.id} has not finished: judged on the last validation")
        else:
            problems.append(f"its test {tested.id} ended {tested.state}: judged on the last validation")
    if not last and record.metrics:  # the logs are gone or unreadable, the job's own report is not
        last = dict(record.metrics)
        flags.discard(results.NO_METRICS)
        problems.append("metrics from the ledger (the job's final report); the logs do not have them")
    if record.state == State.COMPLETED and results.INCOMPLETE in flags:
        problems.append("the ledger says COMPLETED but the logs stop before the end of the schedule")
    if record.error and record.state != State.COMPLETED:
        problems.append(record.error.strip().splitlines()[0][:200])
    weights = published.read_record(record.run_dir) if record.kind == "test" else None
    return make_row(
        id=record.id, origin="ledger", kind=record.kind, recipe=record.recipe, codebase=record.codebase,
        sweep=record.sweep, seed=record.seed, overrides=record.overrides, state=record.state, smoke=record.smoke,
        executor=record.executor, gpus=record.gpus, elapsed_s=cost_.elapsed_s(record),
        gpu_hours=cost_.gpu_hours(record), work_dir=str(record.work_dir), log_format=log.format,
        progress=log.progress, flags=flags, problems=problems, last=last, best=best, last_at=last_at,
        expectation=expectation, metrics=metrics, pick=pick, cost=cost_.cost(record, resources),
        tested_by=tested_by, **guard_fields(record.run_dir, record.work_dir, record.deviations, record.smoke),
        published_weights=(weights or {}).get("published"),
    )


# ---------------------------------------------------------------------------------------------- --import


def row_from_import(path: Path, expectation: Expected | None, recipe: str | None,
                    metrics: list[str] | None, pick: str) -> RunRow:
    """A work dir trained elsewhere (any MMEngine or MMCV 1.x work dir, JSON or text logs); its state is 'IMPORTED'."""
    log = results.read_work_dir(path, train=False)
    last, best, last_at = from_log(log, _all_metric_names(metrics, expectation))
    name = path.parent.name if path.name == "work_dir" else path.name  # a swinctl run dir: name it after the run
    return make_row(
        id=f"import:{name}", origin="import", kind="test" if log.test_metrics and not log.has_train else "train",
        recipe=recipe, codebase=codebase_of(log), sweep=None, seed=None, overrides=[], state=IMPORTED,
        smoke=path.name == "work_dir" and is_smoke_run_dir(path.parent),
        executor=None, gpus=None, elapsed_s=None, gpu_hours=None, work_dir=str(path),
        log_format=log.format, progress=log.progress, flags=log.flags, problems=list(log.problems), last=last,
        best=best, last_at=last_at, expectation=expectation, metrics=metrics, pick=pick,
        **(guard_fields(path.parent, path, None, False) if path.name == "work_dir" else {}),
    )


def import_targets(path: Path) -> list[Path]:
    """`path` itself when it holds logs, else its sub-directories that do."""
    if not path.is_dir():
        raise ReportError(f"--import {path}: not a directory")
    if results.detect_format(path) != "none":
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and results.detect_format(p) != "none")
    if not found and (path / "work_dir").is_dir():
        found = [path / "work_dir"]
    if not found:
        raise ReportError(f"--import {path}: no MMEngine or MMCV 1.x logs (JSON or text) in it or in its "
                          "sub-directories")
    return found


_SMOKE_ID = re.compile(r"-smoke-\d{8}-\d{6}-[0-9a-f]+$")  # swinctl.runs.new_run_id of a smoke run
_DEMO_ROOT = re.compile(r"^data:\s*\n(?:[ \t]+.*\n)*?[ \t]+root:[ \t]*['\"]?\S*/demo-[a-z0-9]+-v\d", re.M)


def is_smoke_run_dir(run_dir: Path) -> bool:
    """A swinctl smoke run's dir, copied from elsewhere: its id says smoke, or its recipe trained on a generated demo
    set (swinctl.data.demo)."""
    if _SMOKE_ID.search(run_dir.name):
        return True
    try:
        return bool(_DEMO_ROOT.search((run_dir / "recipe.yaml").read_text()))
    except OSError:
        return False


def recipe_name(run_dir: Path) -> str | None:
    """The recipe a swinctl run dir's recipe.yaml names."""
    try:
        match = re.search(r"^name:[ \t]*(\S+)", (run_dir / "recipe.yaml").read_text(), re.M)
    except OSError:
        return None
    return match.group(1).strip("'\"") if match else None


def codebase_of(log: results.RunLog) -> str | None:
    names = set(log.test_metrics)
    for point in log.val:
        names |= set(point.metrics)
    if "bbox_mAP" in names or "segm_mAP" in names:
        return "mmdet"
    if "mIoU" in names or f"mIoU_{results.TTA_PREFIX}" in names:
        return "mmseg"
    return None
