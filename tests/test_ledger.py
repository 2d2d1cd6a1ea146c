"""The ledger: schema version and migration, no WAL, checked column names, folding a job's events once."""

from __future__ import annotations

import sqlite3
import time

import pytest

from swinctl.runs.ledger import LEDGER_FILE, SCHEMA_VERSION, Ledger, LedgerError, RunRecord


def _record(root, run_id: str, state: str) -> RunRecord:
    return RunRecord(id=run_id, kind="train", recipe="upernet-swin-t", codebase="mmseg", overrides=[], signature="s",
                     executor="slurm", job_id="7", state=state, smoke=True, run_dir=root / run_id,
                     work_dir=root / run_id / "work_dir")


def _sql(path, statement):
    db = sqlite3.connect(path)  # (closed here: an open connection would hold the WAL's lock)
    try:
        return db.execute(statement).fetchone()
    finally:
        db.close()


def _pragma(path, name):
    return _sql(path, f"PRAGMA {name}")[0]


def test_a_new_ledger_records_its_schema_version_and_uses_the_rollback_journal(tmp_path):
    Ledger(tmp_path)
    assert _pragma(tmp_path / LEDGER_FILE, "user_version") == SCHEMA_VERSION
    assert _pragma(tmp_path / LEDGER_FILE, "journal_mode").lower() == "delete"  # WAL does not work over NFS


# The ledger as swinctl wrote it before versions were recorded (WAL, sweep_submissions kept by the sweep module).
_VERSION_1 = """
PRAGMA journal_mode=WAL;
CREATE TABLE runs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, recipe TEXT NOT NULL, codebase TEXT NOT NULL,
    overrides TEXT NOT NULL, signature TEXT NOT NULL, executor TEXT NOT NULL, job_id TEXT, state TEXT NOT NULL,
    smoke INTEGER NOT NULL, run_dir TEXT NOT NULL, work_dir TEXT NOT NULL, sweep TEXT, seed INTEGER,
    gpus INTEGER NOT NULL, created_at REAL NOT NULL, started_at REAL, finished_at REAL, elapsed_s REAL,
    requeues INTEGER NOT NULL DEFAULT 0, metrics TEXT NOT NULL DEFAULT '{}', error TEXT);
CREATE TABLE events (run_id TEXT NOT NULL, at REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
CREATE TABLE sweep_submissions (token TEXT PRIMARY KEY, sweep TEXT NOT NULL, executor TEXT NOT NULL,
    job_name TEXT NOT NULL, run_ids_json TEXT NOT NULL, created_at REAL NOT NULL, job_id TEXT, state TEXT NOT NULL);
INSERT INTO runs VALUES ('old', 'train', 'upernet-swin-t', 'mmseg', '[]', 'sig', 'slurm', '41', 'COMPLETED', 1,
    '/r/old', '/r/old/work_dir', 'lr', NULL, 0, 1.0, 2.0, 3.0, 1.0, 1, '{"mIoU": 44.1}', NULL);
INSERT INTO sweep_submissions VALUES ('ab12', 'lr', 'slurm', 'swinctl:sweep:lr:ab12', '["old"]', 1.0, '41',
    'running');
"""


def test_a_version_1_ledger_is_migrated_with_its_runs_and_sweep_submissions(tmp_path):
    db = sqlite3.connect(tmp_path / LEDGER_FILE)
    db.executescript(_VERSION_1)
    db.close()
    ledger = Ledger(tmp_path)
    old = ledger.get("old")
    assert (old.state, old.metrics, old.requeues, old.submission, old.events_folded) == (
        "COMPLETED", {"mIoU": 44.1}, 1, None, 0)
    [sub] = ledger.submissions(sweep="lr")
    assert (sub.token, sub.job_id, sub.state, sub.run_ids) == ("ab12", "41", "submitted", ["old"])
    assert sub.folder == str(tmp_path / "sweeps" / "lr" / "submitit")
    assert _pragma(tmp_path / LEDGER_FILE, "user_version") == SCHEMA_VERSION
    assert _pragma(tmp_path / LEDGER_FILE, "journal_mode").lower() == "delete"
    assert _sql(tmp_path / LEDGER_FILE, "SELECT 1 FROM sqlite_master WHERE name = 'sweep_submissions'") is None
    Ledger(tmp_path).get("old")  # opening it again changes nothing


def test_a_version_2_ledger_gains_the_test_after_link(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.add(_record(tmp_path, "r1", "COMPLETED"))
    db = sqlite3.connect(tmp_path / LEDGER_FILE)
    db.executescript("ALTER TABLE runs DROP COLUMN follows; PRAGMA user_version = 2;")  # as version 2 wrote it
    db.close()
    migrated = Ledger(tmp_path)
    assert _pragma(tmp_path / LEDGER_FILE, "user_version") == SCHEMA_VERSION == 3
    assert migrated.get("r1").follows is None
    test = _record(tmp_path, "r2", "PENDING")
    migrated.add(RunRecord(**{**test.__dict__, "kind": "test", "follows": "r1"}))
    assert Ledger(tmp_path).get("r2").follows == "r1"


def test_a_ledger_from_a_newer_swinctl_is_refused_not_rewritten(tmp_path):
    Ledger(tmp_path)
    _sql(tmp_path / LEDGER_FILE, f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match="newer than this swinctl knows.*upgrade swinctl"):
        Ledger(tmp_path)


def test_column_names_are_checked_before_they_reach_sql(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.add(_record(tmp_path, "a", "RUNNING"))
    with pytest.raises(ValueError, match="unknown ledger fields"):
        ledger.update("a", **{"state = 'x'; --": 1})
    with pytest.raises(ValueError, match="unknown ledger fields"):
        ledger.fold("a", {"id": "b", "nope": 1}, [], 0)
    with pytest.raises(ValueError, match="cannot change"):
        ledger.set_submission("t", run_ids="[]")


def test_a_jobs_events_are_folded_once_even_when_two_lookers_fold_the_same_lines(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.add(_record(tmp_path, "a", "RUNNING"))
    now = time.time()
    lines = [(now + 1, "running", "job 7"), (now + 2, "requeue", "USR2")]
    ledger.fold("a", {"state": "REQUEUED", "requeues": 1}, lines, 0)
    ledger.fold("a", {"state": "REQUEUED", "requeues": 1}, lines, 0)  # a second `status` read the same lines
    record = ledger.fold("a", {"state": "RUNNING"}, lines[1:] + [(now + 3, "running", "job 7")], 1)
    assert (record.state, record.requeues, record.events_folded) == ("RUNNING", 1, 3)
    assert [e.kind for e in ledger.events("a")] == ["created", "running", "requeue", "running"]


def test_a_cancelled_run_stays_cancelled_whatever_its_job_writes_after(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.add(_record(tmp_path, "b", "CANCELLED"))
    record = ledger.fold("b", {"state": "FAILED", "error": "SIGTERM", "elapsed_s": 5.0}, [(1.0, "failed", "")], 0)
    assert (record.state, record.error, record.elapsed_s) == ("CANCELLED", None, 5.0)
