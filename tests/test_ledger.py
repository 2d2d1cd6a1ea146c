"""The ledger's requeue count: atomic, and never reviving a cancelled run."""

from __future__ import annotations

from swinctl.ledger import Ledger, RunRecord


def _record(root, run_id: str, state: str) -> RunRecord:
    return RunRecord(id=run_id, kind="train", recipe="upernet-swin-t", codebase="mmseg", overrides=[], signature="s",
                     executor="slurm", job_id="7", state=state, smoke=True, run_dir=root / run_id,
                     work_dir=root / run_id / "work_dir")


def test_a_requeue_is_counted_and_logged(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.add(_record(tmp_path, "a", "RUNNING"))
    assert ledger.count_requeue("a").requeues == 1
    record = ledger.count_requeue("a")
    assert (record.state, record.requeues) == ("REQUEUED", 2) and ledger.get("a") == record
    assert [e.kind for e in ledger.events("a")].count("requeue") == 2


def test_a_cancelled_run_stays_cancelled_when_its_job_reports_the_sigterm(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.add(_record(tmp_path, "b", "CANCELLED"))
    assert ledger.count_requeue("b").state == "CANCELLED"
    assert ledger.get("b").requeues == 0 and "requeue" not in [e.kind for e in ledger.events("b")]
