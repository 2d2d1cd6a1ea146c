"""Folding job state into the ledger, on the submit host: the one place a run's ledger row follows its job.

A job writes its life into its run directory (:mod:`swinctl.job.files`); the scheduler knows what the job cannot
say (cancelled, timed out, killed, lost). Whoever looks at a run -- `status`, `run --wait`, `report`, `sweep` --
calls :func:`refresh`, which reads the job's files, asks the run's backend, and writes the result into the ledger
in one transaction. Runs that ended are not looked at again, so `status` over 1,000 runs reads only the active ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

from swinctl import backends
from swinctl.job import files as jobstate
from swinctl.job.files import State
from swinctl.runs.ledger import ACTIVE_STATES, FINAL_STATES, Ledger, RunRecord

_JOB_FIELDS = ("started_at", "finished_at", "elapsed_s", "error")
UNREADABLE = "job state unreadable: "


class _Unreadable(Exception):
    """The run's job state file is not what a job writes: its run shows why, and nothing of the file is used."""


def _read_job(run_dir: Path) -> jobstate.JobState | None:
    try:
        return jobstate.load_state(run_dir)
    except jobstate.JobFileError as exc:
        raise _Unreadable(jobstate.cap(UNREADABLE + str(exc), 1024)) from None


def _from_job(record: RunRecord, job: jobstate.JobState | None) -> dict:
    """The ledger fields the job's own state changes."""
    if job is None:
        return {}
    changes: dict = {}
    if job.error is None and (record.error or "").startswith(UNREADABLE):
        changes["error"] = None  # the job wrote a good state file since
    if job.state in ACTIVE_STATES + FINAL_STATES and job.state != record.state and job.state != State.PENDING:
        changes["state"] = job.state
    if job.job_id and record.job_id is None:  # a local sweep runner started it
        changes["job_id"] = job.job_id
    for name in _JOB_FIELDS:
        value = getattr(job, name)
        if name == "error" and value is not None:
            value = jobstate.cap(value)
        if value is not None and value != getattr(record, name):
            changes[name] = value
    if job.requeues > record.requeues:
        changes["requeues"] = job.requeues
    if job.metrics and job.metrics != record.metrics:
        changes["metrics"] = job.metrics
    return changes


def _from_scheduler(ledger: Ledger, record: RunRecord) -> dict:
    """What the backend says of a run its job still calls active (or never wrote about)."""
    observed = backends.get(record.executor).state(record, ledger.submission(record.submission))
    if observed is None or observed.state == record.state:
        return {}
    if observed.state in FINAL_STATES:
        end = {"finished_at": record.finished_at or time.time()}
        try:
            job = _read_job(record.run_dir)  # it may have written its end between our two looks
        except _Unreadable as exc:  # its job ended, its own word on how is lost: the scheduler's state, or FAILED
            state = State.FAILED if observed.state == State.COMPLETED else observed.state
            return {**end, "state": state, "error": str(exc)}
        if job is not None and job.state in FINAL_STATES:
            return _from_job(record, job)
        from swinctl.runs.logs import error_tail

        try:
            tail = error_tail(record) if observed.state != State.CANCELLED else ""  # (a cancel's SIGTERM is no error)
        except OSError:
            tail = ""
        detail = observed.detail
        cause = jobstate.no_space_cause(record.run_dir, tail) if observed.state == State.FAILED else None
        if cause is not None:
            detail = f"the job could not record its end: {cause}"
        changes = {**end, "state": observed.state, "error": jobstate.cap(detail + (f"\n{tail}" if tail else ""))}
        if observed.requeues is not None and observed.requeues < record.requeues:
            changes["requeues"] = observed.requeues  # the job counted the cancel's SIGTERM as a requeue
        return changes
    if record.state in (State.RUNNING, State.REQUEUED) and observed.state == State.PENDING:
        return {}  # the scheduler's accounting lags behind a job that already said it runs (or was requeued)
    return {"state": observed.state}


def _drop_orphaned_test(ledger: Ledger, record: RunRecord) -> RunRecord | None:
    """A `--test-after` test still queued although its training run ended without completing: stop its job (a
    local one waits for training; SLURM may keep an afterok job pending forever) and record why."""
    try:
        training = refresh(ledger, ledger.get(record.follows))
    except KeyError:
        return None
    if training.is_active or training.state == State.COMPLETED:
        return None
    backend = backends.get(record.executor)
    try:
        backend.cancel(record, ledger.submission(record.submission))
    except backends.base.BackendError:
        pass  # (already gone: the scheduler dropped it itself)
    return ledger.update(record.id, event="state", state=State.CANCELLED, finished_at=time.time(),
                         error=f"not run: training run {training.id} ended {training.state}")


def refresh(ledger: Ledger, record: RunRecord) -> RunRecord:
    """Bring an active run's ledger row in line with its job's files and its scheduler."""
    if not record.is_active:
        return record
    if record.follows and record.state == State.PENDING:
        dropped = _drop_orphaned_test(ledger, record)
        if dropped is not None:
            return dropped
    events = jobstate.read_events(record.run_dir, record.events_folded)
    try:
        changes = _from_job(record, _read_job(record.run_dir))
    except _Unreadable as exc:  # nothing of the file is folded; the run says why until the job writes a good one
        changes = {} if record.error == str(exc) else {"error": str(exc)}
    merged = record.__class__(**{**record.__dict__, **changes})
    if merged.is_active and (merged.job_id is not None or merged.submission is not None):
        changes.update(_from_scheduler(ledger, merged))
    if not changes and not events:
        return record
    own = [(time.time(), "state", changes["state"])] if "state" in changes else []
    return ledger.fold(record.id, changes, [(e.at, e.kind, e.detail) for e in events], record.events_folded, own)


def refresh_all(ledger: Ledger, records: Iterable[RunRecord]) -> list[RunRecord]:
    """`refresh` for many runs, each backend asked about all of its active runs at once."""
    records = list(records)
    by_backend: dict[str, list[RunRecord]] = {}
    for record in records:
        if record.is_active:
            by_backend.setdefault(record.executor, []).append(record)
    for name, active in by_backend.items():
        backends.get(name).observe(active)
    return [refresh(ledger, record) for record in records]
