"""The run lifecycle against a fake backend: what the ledger says as a job runs, is requeued, cancelled, lost, or its
submitter crashes -- the state machine the local and SLURM backends share (as submitit tests itself against a
mocked cluster; the real clusters are in test_local_slurm / test_slurm_runs / test_sweep_slurm).

The fake scheduler is a dict the test scripts; the job's side is written with swinctl.job.files, exactly as
CodebaseJob writes it on a compute node.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from swinctl import backends
from swinctl.backends.base import Backend, Observed, Submitted, register
from swinctl.job import files as jobstate
from swinctl.runs import lifecycle, submission, sync
from swinctl.runs.ledger import Ledger, RunRecord


class FakeBackend(Backend):
    name = "fake"
    title = "the fake cluster"
    scheduler: dict[str, Observed | None] = {}  # job id -> what the scheduler says (None: nothing to add)
    reached: dict[str, Submitted] = {}  # job name -> what an interrupted submission left at the scheduler
    asked: list[str] = []
    cancelled: list[str] = []
    on_ask = staticmethod(lambda record: None)

    def launcher(self, resources) -> str:
        return "none"

    def submit(self, specs, *, job_name, folder, parallel) -> Submitted:
        raise AssertionError("these tests record runs directly")

    def state(self, record, submission_record):
        self.asked.append(record.id)
        self.on_ask(record)
        return self.scheduler.get(record.job_id)

    def cancel(self, record, submission_record) -> str:
        self.cancelled.append(record.id)
        self.scheduler[record.job_id] = Observed("CANCELLED", "scancel")
        return f"cancelled fake job {record.job_id}"

    def adopt(self, submission_record):
        return self.reached.get(submission_record.job_name)


@pytest.fixture
def fake(tmp_path):
    register(FakeBackend)
    FakeBackend.scheduler, FakeBackend.reached, FakeBackend.asked, FakeBackend.cancelled = {}, {}, [], []
    FakeBackend.on_ask = staticmethod(lambda record: None)
    yield Ledger(tmp_path)
    backends.base.BACKENDS.pop("fake")


def _run(ledger: Ledger, run_id: str = "r1", job_id: str | None = "100", state: str = "PENDING",
         submission_token: str | None = None) -> RunRecord:
    run_dir = ledger.runs_root / run_id
    (run_dir / "work_dir").mkdir(parents=True)
    return ledger.add(RunRecord(id=run_id, kind="train", recipe="upernet-swin-t", codebase="mmseg", overrides=[],
                                signature="s", executor="fake", job_id=job_id, state=state, smoke=True,
                                run_dir=run_dir, work_dir=run_dir / "work_dir", submission=submission_token))


def _look(ledger: Ledger, run_id: str = "r1") -> RunRecord:
    return sync.refresh(ledger, ledger.get(run_id))


def test_a_requeued_job_is_followed_through_its_files_to_completion(fake):
    record = _run(fake)
    assert _look(fake).state == "PENDING"  # nothing written yet, the scheduler has nothing to add
    jobstate.update_state(record.run_dir, state="RUNNING", job_id="100", started_at=time.time())
    jobstate.add_event(record.run_dir, "running", "job 100 on node1")
    assert _look(fake).state == "RUNNING"
    jobstate.update_state(record.run_dir, state="REQUEUED", requeues=1)
    jobstate.add_event(record.run_dir, "requeue", "USR2 before the time limit: checkpoint iter_37.pth saved")
    FakeBackend.scheduler["100"] = Observed("PENDING")  # back in the queue
    assert (_look(fake).state, _look(fake).requeues) == ("REQUEUED", 1)
    jobstate.update_state(record.run_dir, state="RUNNING")
    jobstate.add_event(record.run_dir, "resume", "from iter_37.pth")
    FakeBackend.scheduler["100"] = None
    assert _look(fake).state == "RUNNING"
    jobstate.update_state(record.run_dir, state="COMPLETED", finished_at=time.time(), elapsed_s=12.5,
                          metrics={"mIoU": 51.0})
    jobstate.add_event(record.run_dir, "completed")
    FakeBackend.scheduler["100"] = Observed("COMPLETED")
    done = _look(fake)
    assert (done.state, done.requeues, done.metrics, done.elapsed_s) == ("COMPLETED", 1, {"mIoU": 51.0}, 12.5)
    kinds = [e.kind for e in fake.events("r1")]
    assert [k for k in kinds if k != "state"] == ["created", "running", "requeue", "resume", "completed"]
    asked = len(FakeBackend.asked)
    assert _look(fake) == done and len(FakeBackend.asked) == asked  # an ended run is not looked at again


def test_a_cancelled_run_stays_cancelled_when_its_job_then_reports_the_sigterm(fake):
    record = _run(fake, state="RUNNING")
    jobstate.update_state(record.run_dir, state="RUNNING", job_id="100")
    [(_, outcome)] = lifecycle.cancel(fake, ["r1"])
    assert outcome == "cancelled fake job 100" and FakeBackend.cancelled == ["r1"]
    assert fake.get("r1").state == "CANCELLED"
    jobstate.update_state(record.run_dir, state="FAILED", error="train script exited with code -15")
    assert _look(fake).state == "CANCELLED"  # ended: not refolded
    [(_, again)] = lifecycle.cancel(fake, ["r1"])
    assert again == "already cancelled" and FakeBackend.cancelled == ["r1"]


def test_a_lost_job_fails_with_the_schedulers_reason_unless_it_wrote_its_end_first(fake):
    lost = _run(fake, "lost", job_id="1")
    jobstate.update_state(lost.run_dir, state="RUNNING")
    FakeBackend.scheduler["1"] = Observed("FAILED", "NODE_FAIL")
    record = _look(fake, "lost")
    assert record.state == "FAILED" and record.error.startswith("NODE_FAIL") and record.finished_at

    raced = _run(fake, "raced", job_id="2")
    jobstate.update_state(raced.run_dir, state="RUNNING")
    FakeBackend.scheduler["2"] = Observed("FAILED", "the job's processes ended")
    FakeBackend.on_ask = staticmethod(lambda record: jobstate.update_state(  # it writes its end between our looks
        record.run_dir, state="COMPLETED", metrics={"mIoU": 50.5}, finished_at=time.time()))
    record = _look(fake, "raced")
    assert (record.state, record.metrics) == ("COMPLETED", {"mIoU": 50.5})


def test_a_job_the_scheduler_still_lists_as_pending_keeps_the_state_it_wrote(fake):
    record = _run(fake)
    jobstate.update_state(record.run_dir, state="RUNNING")
    FakeBackend.scheduler["100"] = Observed("PENDING")  # accounting lags behind
    assert _look(fake).state == "RUNNING"
    FakeBackend.scheduler["100"] = Observed("TIMEOUT", "DUE TO TIME LIMIT")
    assert _look(fake).state == "TIMEOUT"


def _interrupted_submission(ledger: Ledger, run_ids: list[str]):
    sub = submission.SubmissionRecord(token="t1", sweep="lr", executor="fake", job_name="swinctl:sweep:lr:t1",
                                      folder=str(ledger.runs_root / "sweeps" / "lr" / "submitit"), run_ids=run_ids,
                                      created_at=time.time())
    ledger.add_submission(sub)
    for run_id in run_ids:
        _run(ledger, run_id, job_id=None, submission_token="t1")
    return sub


def test_after_a_crash_a_submission_that_reached_the_scheduler_is_adopted(fake):
    _interrupted_submission(fake, ["a", "b"])
    FakeBackend.reached["swinctl:sweep:lr:t1"] = Submitted("300", {"a": "300_0", "b": "300_1"})
    [note] = submission.recover(fake)
    assert "adopted fake job 300 (2 points)" in note
    assert [fake.get(r).job_id for r in ("a", "b")] == ["300_0", "300_1"]
    assert fake.submission("t1").state == "submitted" and fake.submission("t1").job_id == "300"
    assert submission.recover(fake) == []  # settled once


def test_after_a_crash_a_submission_that_never_reached_the_scheduler_cancels_its_runs(fake):
    _interrupted_submission(fake, ["a", "b"])
    [note] = submission.recover(fake)
    assert "never reached the fake cluster" in note and "submitted again" in note
    assert {fake.get(r).state for r in ("a", "b")} == {"CANCELLED"}
    assert fake.submission("t1").state == "lost"


def test_no_module_outside_the_backends_branches_on_the_executors_name():
    """One place chooses and knows the executor (swinctl.backends): no comparison of an executor with a name."""
    package = Path(submission.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        if "backends" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                mentions = any("executor" in ast.unparse(side) for side in sides)
                constant = any(isinstance(n, ast.Constant) for side in sides for n in ast.walk(side))
                if mentions and constant:
                    offenders.append(f"{path.relative_to(package)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []
