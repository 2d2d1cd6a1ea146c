"""Watching runs: their rows (folded from their jobs by swinctl.runs.sync), progress and ETA, logs, cancellation.

Jobs write their own state into their run directories; whenever someone looks, the ledger is brought up to date
from those files and from the scheduler (:func:`swinctl.runs.sync.refresh`), so `status` re-attaches to jobs submitted
by earlier invocations from the ledger alone.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from swinctl import results
from swinctl.errors import UserError
from swinctl.runs.ledger import Ledger, RunRecord

ERROR_TAIL = 20


def error_tail(record: RunRecord, lines: int = ERROR_TAIL) -> str:
    path = log_path(record, stderr=True)
    if path is None:
        return ""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def refresh(ledger: Ledger, record: RunRecord) -> RunRecord:
    """Bring an active run's ledger row in line with its job and its scheduler (:func:`swinctl.runs.sync.refresh`)."""
    from swinctl.runs import sync

    return sync.refresh(ledger, record)


@dataclass(frozen=True)
class Cost:
    """What a run cost: device-hours of the GPUs it held, or of its CPU cores where it used no GPU."""

    unit: str  # "GPU-h" or "CPU-h"
    hours: float  # devices x wall-clock hours
    devices: int  # GPUs, or CPU cores (nodes x tasks per node x CPUs per task)
    node_hours: float  # nodes x wall-clock hours


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


def elapsed_s(record: RunRecord) -> float | None:
    """Wall-clock seconds the run has been running (or ran); None before it started."""
    if record.elapsed_s is not None:
        return record.elapsed_s
    if record.started_at is None:
        return None
    end = record.finished_at or (time.time() if record.is_active else None)
    return None if end is None else max(end - record.started_at, 0.0)


def gpu_hours(record: RunRecord) -> float | None:
    elapsed = elapsed_s(record)
    return round(max(record.gpus, 0) * elapsed / 3600, 4) if record.gpus and elapsed is not None else None


_RESOURCES = re.compile(r"^resources:[ \t]*\n(?:[ \t]+[^\n]*(?:\n|$))*", re.M)


@functools.lru_cache(maxsize=256)
def _parse_resources(block: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError:
        return {}
    resources = data.get("resources") if isinstance(data, dict) else None
    return resources if isinstance(resources, dict) else {}


def resources_of(run_dir: Path, text: str | None = None) -> dict:
    """The `resources:` of a run's resolved recipe.yaml (its `text` when already read; {} when it cannot be read).
    Only that block is parsed, once for every run that has the same."""
    if text is None:
        try:
            text = (run_dir / "recipe.yaml").read_text()
        except OSError:
            return {}
    match = _RESOURCES.search(text)
    return _parse_resources(match.group(0)) if match else {}


def _count(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def cost(record: RunRecord, resources: dict | None = None) -> Cost | None:
    """GPU-hours where the run held GPUs, else CPU-hours of the cores its recipe asked for (nodes x tasks per
    node x CPUs per task), with node-hours either way; None before it started or when a CPU run's recipe.yaml
    is gone (its cores are not known)."""
    elapsed = elapsed_s(record)
    if elapsed is None:
        return None
    if resources is None:
        resources = resources_of(record.run_dir)
    nodes = _count(resources.get("nodes"), 1)
    hours = elapsed / 3600
    if record.gpus and record.gpus > 0:
        return Cost("GPU-h", round(record.gpus * hours, 4), record.gpus, round(nodes * hours, 4))
    if not resources:
        return None
    cores = nodes * _count(resources.get("tasks_per_node"), 1) * _count(resources.get("cpus_per_task"), 1)
    return Cost("CPU-h", round(cores * hours, 4), cores, round(nodes * hours, 4))


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


# ---------------------------------------------------------------------------------------------- selecting runs

# <recipe>[-smoke]-YYYYMMDD-HHMMSS-<hex>: the random hex is a run's short id; its time (then its date) is put in
# front only to tell apart runs whose hex is the same.
_ID_TAIL = re.compile(r"-(\d{8})-(\d{6})-([0-9a-f]{4,})$")
_SHORT_ID = re.compile(r"(?:(?:\d{8}-)?\d{6}-)?[0-9a-f]{4,}")


def _tails(run_id: str) -> list[str]:
    found = _ID_TAIL.search(run_id)
    if not found:
        return []
    date, clock, hexa = found.groups()
    return [hexa, f"{clock}-{hexa}", f"{date}-{clock}-{hexa}"]


def short_ids(ids: Iterable[str]) -> dict[str, str]:
    """Each run id's shortest unique tail among `ids`, as git abbreviates hashes: the id's random hex, with its
    time (and then its date) in front only where another run has the same; the full id where nothing shorter is
    unique or the id has no such tail (imported and W&B runs). Every selector accepts them."""
    tails = {run_id: _tails(run_id) for run_id in dict.fromkeys(ids)}
    counts = [Counter(t[level] for t in tails.values() if t) for level in range(3)]
    return {run_id: next((tail[level] for level in range(len(tail)) if counts[level][tail[level]] == 1), run_id)
            for run_id, tail in tails.items()}


def match(records: Sequence[RunRecord], selectors: Sequence[str]) -> tuple[list[RunRecord], list[str]]:
    """The runs `selectors` name, in the order of `records`, and the selectors that name none.

    Each selector is tried as, in turn: a run id, a sweep name, a recipe name, a short id (:func:`short_ids`),
    a prefix of run ids; the first that names any run wins. `status` and `report` both select with this.
    """
    by_id = {r.id: r for r in records}
    chosen: set[str] = set()
    unmatched = []
    for sel in selectors:
        if sel in by_id:
            hits = [by_id[sel]]
        else:
            hits = ([r for r in records if r.sweep == sel] or [r for r in records if r.recipe == sel]
                    or ([r for r in records if sel in _tails(r.id)] if _SHORT_ID.fullmatch(sel) else [])
                    or ([r for r in records if r.id.startswith(sel)] if sel else []))
        if not hits:
            unmatched.append(sel)
        chosen.update(r.id for r in hits)
    return [r for r in records if r.id in chosen], unmatched


def select(ledger: Ledger, selectors: list[str], everything: bool = False) -> list[RunRecord]:
    """Runs named by id, sweep, recipe, short id or id prefix (:func:`match`); by default the active ones and the
    ten most recent."""
    runs = ledger.list_runs()
    if selectors:
        chosen, unmatched = match(runs, selectors)
        if unmatched:
            names = ", ".join(f"'{s}'" for s in unmatched)
            raise SelectionError(f"no run id, short id, sweep or recipe {names} in {ledger.path}")
        return sorted(chosen, key=lambda r: r.created_at)
    if everything:
        return runs
    recent = {r.id for r in runs[-10:]}
    return [r for r in runs if r.is_active or r.id in recent]


def collect(ledger: Ledger, selectors: list[str], everything: bool = False) -> list[StatusRow]:
    from swinctl.runs import sync

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


class SelectionError(UserError):
    """A run selector that matches nothing, or more than a verb may act on."""


def one(ledger: Ledger, selector: str) -> RunRecord:
    """The one run whose id is `selector` or starts with it; no match, an empty or an ambiguous selector is an
    error (verbs that act on a run never guess)."""
    if not selector.strip():
        raise SelectionError("an empty run id selects nothing: give a run id or a unique prefix of one "
                             "(`swinctl status --all` lists them)")
    found = ledger.find(selector)
    if not found and _SHORT_ID.fullmatch(selector):  # the short ids tables show
        found = [r for r in ledger.list_runs() if selector in _tails(r.id)]
    if not found:
        raise SelectionError(f"no run '{selector}' in {ledger.path} (`swinctl status --all` lists the runs)")
    if len(found) > 1:
        names = ", ".join(r.id for r in found[:3])
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        raise SelectionError(f"'{selector}' matches {len(found)} runs ({names}{more}): give more of the id")
    return found[0]


def cancel_targets(ledger: Ledger, selectors: list[str]) -> list[RunRecord]:
    """The runs `cancel` acts on: each selector is one run (id or unique prefix) or a sweep by its name. All are
    resolved before anything is cancelled, so one bad selector cancels nothing."""
    chosen: dict[str, RunRecord] = {}
    for sel in selectors:
        runs = ledger.list_runs(sweep=sel) if sel.strip() else []
        if not runs and sel.strip() and ledger.list_runs(recipe=sel):
            raise SelectionError(f"'{sel}' is a recipe, which may have many runs: cancel takes run ids or sweep "
                                 f"names (`swinctl status {sel}` lists its runs)")
        chosen.update((r.id, r) for r in (runs or [one(ledger, sel)]))
    return sorted(chosen.values(), key=lambda r: r.created_at)


def log_path(record: RunRecord, task: int = 0, stderr: bool = False) -> Path | None:
    """The newest submitit log of `task` for this run's job (requeues append to the same file).

    A run's own jobs log under its run dir; a sweep's array jobs under the sweep's folder.
    """
    suffix = "err" if stderr else "out"
    folders = [record.run_dir / "submitit"]
    if record.sweep:
        folders.append(record.run_dir.parent / "sweeps" / record.sweep / "submitit")
    if record.job_id:
        for folder in folders:
            exact = folder / f"{record.job_id}_{task}_log.{suffix}"
            if exact.is_file():
                return exact
    own = folders[0]
    candidates = sorted(own.glob(f"*_{task}_log.{suffix}"), key=lambda p: p.stat().st_mtime) if own.is_dir() else []
    return candidates[-1] if candidates else None


def read_log(path: Path, follow: bool = False, until: Callable[[], bool] = lambda: True) -> Iterator[str]:
    with path.open(errors="replace") as stream:
        while True:
            chunk = stream.read()
            if chunk:
                yield chunk
            elif not follow or until():
                rest = stream.read()
                if rest:
                    yield rest
                return
            else:
                time.sleep(0.5)


def cancel(ledger: Ledger, selectors: list[str]) -> list[tuple[RunRecord, str]]:
    """Stop the selected runs' jobs (every process of each) and record them CANCELLED, which they stay."""
    from swinctl import backends

    outcomes = []
    for record in cancel_targets(ledger, selectors):
        record = refresh(ledger, record)
        if not record.is_active:
            outcomes.append((record, f"already {record.state.lower()}"))
            continue
        try:
            outcome = backends.get(record.executor).cancel(record, ledger.submission(record.submission))
        except backends.base.BackendError as exc:
            outcomes.append((record, str(exc)))
            continue
        ledger.update(record.id, event="state", state="CANCELLED", finished_at=time.time())
        outcomes.append((record, outcome))
    return outcomes
