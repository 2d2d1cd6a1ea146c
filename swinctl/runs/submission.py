"""One lifecycle for everything swinctl submits -- a `run` is a sweep of one point.

Under the runs root's lock: record the submission (its job name names it at the scheduler), write each run's
directory and ledger row, hand the specs to the backend, record the job ids. A swinctl killed anywhere in between
leaves a submission row in state 'submitting'; the next invocation that takes the lock (`sweep`, `status`) asks
the backend what reached the scheduler and adopts it, or cancels the runs that never got there, so nothing is
lost or submitted twice.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from swinctl import backends, recipes
from swinctl.backends import Submitted
from swinctl.job import files as jobstate
from swinctl.job.files import State
from swinctl.published import write_record
from swinctl.recipes import RecipeError
from swinctl.runs.ledger import Ledger, RunRecord, SubmissionRecord

LOCK_FILE = ".submit.lock"
# Tests: SIGKILL this process right before the backend submits (runs recorded, nothing submitted) or right after it
# returns (submitted, its ids not recorded): the two windows crash recovery must close.
KILL_BEFORE_SUBMIT = "SWINCTL_TEST_KILL_BEFORE_SBATCH"
KILL_AFTER_SUBMIT = "SWINCTL_TEST_KILL_AFTER_SBATCH"


@contextmanager
def root_lock(root: Path) -> Iterator[None]:
    """One swinctl at a time submits or recovers on a runs root (the kernel drops the lock of a killed process)."""
    path = Path(root) / LOCK_FILE
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_submission(prepared: Sequence, *, folder: Path, sweep: str | None = None) -> SubmissionRecord:
    """The record of a submission of `prepared` runs (written by the caller before anything else)."""
    token = secrets.token_hex(4)
    first = prepared[0]
    job_name = f"swinctl:sweep:{sweep}:{token}" if sweep else f"swinctl:{first.run_id}"
    return SubmissionRecord(token=token, sweep=sweep, executor=first.spec.executor, job_name=job_name,
                            folder=str(folder), run_ids=[p.run_id for p in prepared], created_at=time.time())


# How far this process got: None (nothing written), "submitting" (run dirs, rows or a job may exist; `status`
# settles them, `reconcile`), "submitted" -- what an interrupted `run` or `sweep` can truthfully say.
progress: str | None = None


def execute(ledger: Ledger, submission: SubmissionRecord, prepared: Sequence, parallel: int) -> Submitted:
    """Write the runs of a recorded submission, submit them, record their job ids."""
    global progress
    from swinctl.job.spec import JobError

    progress = "submitting"

    backend = backends.get(submission.executor)
    materialize_all(ledger, prepared, submission=submission.token)
    if os.environ.get(KILL_BEFORE_SUBMIT):
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        submitted = backend.submit([p.spec for p in prepared], job_name=submission.job_name,
                                   folder=Path(submission.folder), parallel=parallel)
    except Exception as exc:
        # Nothing reached the scheduler: no half-made run stays behind. Each row stays, clearly marked as never
        # submitted (CANCELLED, as recovery marks runs that never got there: a sweep submits them again).
        said = " ".join(str(exc).split()) or type(exc).__name__
        for p in prepared:
            shutil.rmtree(p.spec.run_dir, ignore_errors=True)
            ledger.update(p.run_id, event="state", state=State.CANCELLED, finished_at=time.time(),
                          error=f"never submitted: {backend.title} refused it: {said}")
        ledger.set_submission(submission.token, state="failed")
        raise JobError(f"{backend.title} refused the submission, nothing was submitted: {said}") from None
    if os.environ.get(KILL_AFTER_SUBMIT):
        os.kill(os.getpid(), signal.SIGKILL)
    _record(ledger, submission, submitted, "submitted")
    progress = "submitted"
    return submitted


def record_of(prepared, submission: str | None = None) -> RunRecord:
    spec = prepared.spec
    return RunRecord(
        id=prepared.run_id, kind=spec.kind, recipe=prepared.recipe.name, codebase=prepared.recipe.codebase,
        overrides=list(prepared.overrides), signature=prepared.signature, executor=spec.executor, job_id=None,
        state=State.PENDING, smoke=prepared.smoke, run_dir=spec.run_dir, work_dir=spec.work_dir, sweep=prepared.sweep,
        seed=prepared.recipe.seed, gpus=spec.resources.gpus, submission=submission,
        deviations=list(prepared.deviations), follows=prepared.follows,
    )


def materialize(ledger: Ledger, prepared, submission: str | None = None) -> RunRecord:
    """Write the run directory (resolved recipe, config) of a prepared run (swinctl.runs.lifecycle.PreparedRun)
    and its ledger row."""
    return materialize_all(ledger, [prepared], submission)[0]


def materialize_all(ledger: Ledger, prepared: Sequence, submission: str | None = None) -> list[RunRecord]:
    """Write the runs' directories (resolved recipe, config), then their ledger rows in one transaction (a
    10,000-point sweep: one commit, not 10,000); on any error every directory written is removed again."""
    written: list[Path] = []
    try:
        for one in prepared:
            _write_run_dir(one)
            written.append(one.spec.run_dir)
        return ledger.add_many([record_of(one, submission) for one in prepared])
    except BaseException:
        for run_dir in written:
            shutil.rmtree(run_dir, ignore_errors=True)  # no run directory without its ledger row
        raise


def _write_run_dir(prepared) -> None:
    spec = prepared.spec
    try:
        spec.run_dir.mkdir(parents=False, exist_ok=False)
    except OSError as exc:
        raise RecipeError(f"cannot create the run directory {spec.run_dir}: {exc.strerror or exc}") from None
    try:
        (spec.run_dir / "recipe.yaml").write_text(recipes.dump_recipe(prepared.recipe))
        spec.config.write_text(prepared.config_text)
        from swinctl import guard

        guard.write(spec.run_dir, list(prepared.deviations))  # deviations.json
        if prepared.weights is not None:
            write_record(spec.run_dir, prepared.weights)  # weights.json: what the test evaluates
    except BaseException:
        shutil.rmtree(spec.run_dir, ignore_errors=True)
        raise


def _record(ledger: Ledger, submission: SubmissionRecord, submitted: Submitted, event: str) -> None:
    ledger.set_job_ids(submitted.run_job_ids, event)
    ledger.set_submission(submission.token, state="submitted", job_id=submitted.job_id)


def submit_one(ledger: Ledger, prepared) -> Submitted:
    """`run` and `test`: one point, under the lock."""
    with root_lock(ledger.runs_root):
        submission = new_submission([prepared], folder=prepared.spec.submitit_dir)
        ledger.add_submission(submission)
        return execute(ledger, submission, [prepared], parallel=1)


def _cancel_unsubmitted(ledger: Ledger, run_ids: Sequence[str], why: str) -> None:
    for run_id in run_ids:
        try:
            record = ledger.get(run_id)
        except KeyError:
            continue  # killed before its row was written: nothing to undo
        started = jobstate.read_state(record.run_dir) is not None  # it reached a scheduler after all
        if record.state == State.PENDING and record.job_id is None and not started:
            ledger.update(run_id, event="state", state=State.CANCELLED, finished_at=time.time(), error=why)


def reconcile(ledger: Ledger) -> list[str]:
    """Settle every submission an interrupted swinctl left half-done. Call with the root lock held."""
    notes = []
    for sub in ledger.submissions(state="submitting"):
        backend = backends.get(sub.executor)
        what = f"{sub.sweep}: " if sub.sweep else ""
        adopted = backend.adopt(sub)
        if adopted is None:
            _cancel_unsubmitted(ledger, sub.run_ids, f"never submitted: swinctl was interrupted before {backend.title} "
                                "had the job")
            ledger.set_submission(sub.token, state="lost")
            notes.append(f"{what}submission {sub.token} never reached {backend.title}; its runs are cancelled"
                         + (" and will be submitted again" if sub.sweep else ""))
            continue
        _record(ledger, sub, adopted, "reconciled")
        points = len(sub.run_ids)
        notes.append(f"{what}adopted {backend.describe(adopted, points)} ({points} point{'s' * (points != 1)}) "
                     "submitted by an interrupted invocation")
    return notes


def recover(ledger: Ledger) -> list[str]:
    """`reconcile` under the lock, when there is anything to settle (for `status`)."""
    if not ledger.submissions(state="submitting"):
        return []
    with root_lock(ledger.runs_root):
        return reconcile(ledger)
