"""Job files and ledger rows that are not what swinctl writes (issue 22, part 3): hand-written, real processes.

A bad `job_state.json` makes its run show `job state unreadable: ...` (its ledger state kept while its job runs,
FAILED once the job has ended: the job's own word on how it ended is lost) and nothing of it is folded; the other
runs list as ever. Event lines are checked and capped; a ledger row an older swinctl wrote badly lists as unreadable.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from swinctl.job import files as jobstate
from swinctl.runs.ledger import Ledger, RunRecord


def _add(root: Path, name: str, state: str, job_id: str | None = None, **fields) -> RunRecord:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    record = RunRecord(id=name, kind="train", recipe="upernet-swin-t", codebase="mmseg", overrides=[],
                       signature="s", executor="local", job_id=job_id, state=state, smoke=True, run_dir=run_dir,
                       work_dir=run_dir / "work_dir", gpus=0, **fields)
    return Ledger(root).add(record)


@pytest.fixture
def job():
    """A live local job: a process group of its own (what the local backend asks after)."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _end(proc: subprocess.Popen) -> None:
    from swinctl.backends import local

    proc.kill()
    proc.wait()
    local._groups_cache = (0.0, frozenset())  # (this process scanned /proc a moment ago, with the job alive)


def _status(cli, *args) -> dict[str, dict]:
    result = cli("status", "--all", "--json", *args)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    return {r["id"]: r for r in json.loads(result.stdout)}


BAD_STATES = [
    ("wrong-type-metric", {"state": "COMPLETED", "metrics": {"mIoU": "high"}},
     "metrics.mIoU: Input should be a valid number"),
    ("nan-metric", '{"state": "COMPLETED", "metrics": {"mIoU": NaN}}', "metrics.mIoU: Input should be a finite number"),
    ("inf-metric", '{"state": "COMPLETED", "metrics": {"mIoU": Infinity}}', "finite number"),
    ("bool-metric", {"state": "COMPLETED", "metrics": {"mIoU": True}}, "metrics.mIoU"),
    ("metrics-list", {"state": "COMPLETED", "metrics": [1, 2]}, "metrics: Input should be a valid dictionary"),
    ("unknown-state", {"state": "DONE"}, "state: Input should be 'PENDING'"),
    ("requeues-string", {"state": "RUNNING", "requeues": "3"}, "requeues: Input should be a valid integer"),
    ("negative-requeues", {"state": "RUNNING", "requeues": -1}, "requeues: Input should be greater than or equal"),
    ("started-string", {"state": "RUNNING", "started_at": "yesterday"}, "started_at"),
    ("error-number", {"state": "FAILED", "error": 42}, "error: Input should be a valid string"),
    ("a-list", [1, 2, 3], "holds a JSON list, not an object"),
    ("not-json", "{'state': 'COMPLETED'}", "is not JSON"),
    ("binary", b"\x89PNG\r\n\x1a\n\x00\xff", "is not JSON"),
    ("empty", "", "is not JSON"),
]


def _write(path: Path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))


@pytest.mark.parametrize("content, why", [c[1:] for c in BAD_STATES], ids=[c[0] for c in BAD_STATES])
def test_a_bad_state_file_is_that_run_unreadable_and_nothing_else(content, why, cli, runs_root, job):
    _add(runs_root, "good-run", "COMPLETED", metrics={"mIoU": 41.5})
    bad = _add(runs_root, "bad-run", "RUNNING", job_id=str(job.pid), started_at=1.0)
    _write(bad.run_dir / jobstate.STATE_FILE, content)

    rows = _status(cli)
    assert rows["bad-run"]["state"] == "RUNNING"  # its job still runs (and may yet write a good file)
    assert rows["bad-run"]["error"].startswith("job state unreadable: job_state.json")
    assert why in rows["bad-run"]["error"]
    assert rows["bad-run"]["metrics"] == {} and rows["bad-run"]["requeues"] == 0  # nothing of it folded
    assert rows["good-run"]["state"] == "COMPLETED" and rows["good-run"]["metrics"] == {"mIoU": 41.5}
    table = cli("status", "--all")
    assert table.exit_code == 0 and "Traceback" not in table.output
    assert "job state unreadable" in " ".join(table.stdout.split())
    assert Ledger(runs_root).get("bad-run").error == rows["bad-run"]["error"]
    assert cli("report").exit_code == 0

    _end(job)  # its job ended without a good word on how: FAILED, with why
    rows = _status(cli)
    assert rows["bad-run"]["state"] == "FAILED" and rows["bad-run"]["error"].startswith("job state unreadable:")
    assert "killed?" not in rows["bad-run"]["error"]
    assert rows["good-run"]["state"] == "COMPLETED"


def test_a_state_file_made_good_again_is_folded_and_the_note_goes(cli, runs_root, job):
    bad = _add(runs_root, "bad-run", "RUNNING", job_id=str(job.pid))
    _write(bad.run_dir / jobstate.STATE_FILE, {"state": "COMPLETED", "metrics": {"mIoU": "high"}})
    assert _status(cli)["bad-run"]["error"].startswith("job state unreadable:")
    _write(bad.run_dir / jobstate.STATE_FILE, {"state": "COMPLETED", "metrics": {"mIoU": 40.0}})
    row = _status(cli)["bad-run"]
    assert row["state"] == "COMPLETED" and row["metrics"] == {"mIoU": 40.0} and row["error"] is None


def test_a_job_does_not_crash_at_its_end_on_a_bad_state_file(tmp_path):
    """The job reads its own previous state in `_finish`: a bad file is replaced by its end, never a TypeError."""
    from swinctl.job.spec import JobSpec, Resources
    from swinctl.job.task import CodebaseJob

    run_dir = tmp_path / "run"
    (run_dir / "work_dir").mkdir(parents=True)
    _write(run_dir / jobstate.STATE_FILE, {"state": "RUNNING", "started_at": "yesterday", "requeues": "x"})
    spec = JobSpec(run_id="r", kind="train", codebase="mmseg", runs_root=tmp_path, run_dir=run_dir,
                   config=run_dir / "config.py", work_dir=run_dir / "work_dir", resources=Resources(), executor="local")
    assert CodebaseJob(spec)._finish(0) == {}
    state = jobstate.load_state(run_dir)
    assert state.state == "COMPLETED" and state.elapsed_s == 0.0
    assert [e.kind for e in jobstate.read_events(run_dir)] == ["completed"]


def test_event_lines_are_checked_and_capped(cli, runs_root, job):
    run = _add(runs_root, "run", "RUNNING", job_id=str(job.pid))
    huge = "x" * (10 * 1024 * 1024)
    lines = [json.dumps({"at": 5.0, "kind": "note", "detail": huge}), '{"at": "soon", "kind": "note"}',
             "not json at all", json.dumps({"at": 6.0, "kind": "k" * 500}), json.dumps({"at": 7.0, "kind": "ok"})]
    (run.run_dir / jobstate.EVENTS_FILE).write_text("\n".join(lines) + "\n")
    _write(run.run_dir / jobstate.STATE_FILE, {"state": "RUNNING", "error": "e" * 100_000})

    row = _status(cli)["run"]
    assert row["state"] == "RUNNING"
    events = [e for e in Ledger(runs_root).events("run") if e.kind != "created"]
    assert sorted(e.kind for e in events) == ["note", "ok", "unreadable", "unreadable", "unreadable"]
    [note] = [e for e in events if e.kind == "note"]
    assert len(note.detail) < 5000 and "characters cut" in note.detail
    bad = sorted(e.detail for e in events if e.kind == "unreadable")  # (dated when read: "at" was unreadable)
    assert bad[0].startswith("line 2 of job_events.jsonl: at: Input should be a valid number")
    assert bad[1].startswith("line 3") and bad[2].startswith("line 4") and "kind" in bad[2]
    assert all(len(e.detail) <= 4200 for e in events)
    error = Ledger(runs_root).get("run").error
    assert len(error) < 5000 and "characters cut" in error
    assert Ledger(runs_root).get("run").events_folded == 5  # each line once, counted
    _status(cli)
    assert len(Ledger(runs_root).events("run")) == len(events) + 1


@pytest.mark.parametrize("column, value, why", [
    ("metrics", '{"mIoU": "high"}', "metrics that are no finite number"),
    ("metrics", '{"mIoU": NaN}', "metrics that are no finite number"),
    ("metrics", '{not json', "metrics is not JSON"),
    ("metrics", '[1, 2]', "metrics is a JSON list"),
    ("overrides", '"a string"', "overrides is a JSON str"),
    ("deviations", 'null', "deviations is a JSON NoneType"),
], ids=["non-numeric-metric", "nan-metric", "bad-json", "metrics-list", "overrides-string", "deviations-null"])
def test_a_bad_ledger_row_never_breaks_listing_the_others(column, value, why, cli, runs_root):
    _add(runs_root, "old-run", "COMPLETED", metrics={"mIoU": 1.0})
    _add(runs_root, "good-run", "COMPLETED", metrics={"mIoU": 41.5})
    with sqlite3.connect(runs_root / "ledger.sqlite") as db:  # as an older swinctl (or a hand) wrote it
        db.execute(f"UPDATE runs SET {column} = ? WHERE id = 'old-run'", (value,))

    rows = _status(cli)
    assert rows["old-run"]["error"].startswith("ledger row unreadable:") and why in rows["old-run"]["error"]
    assert rows["good-run"]["metrics"] == {"mIoU": 41.5} and rows["good-run"]["error"] is None
    table = cli("status", "--all")
    assert table.exit_code == 0 and "ledger row unreadable" in " ".join(table.stdout.split()), table.output
    for args in (("report",), ("report", "--format", "json"), ("status", "old-run")):
        result = cli(*args)
        assert result.exit_code == 0 and "Traceback" not in result.output, (args, result.output)
    with sqlite3.connect(runs_root / "ledger.sqlite") as db:  # shown, not rewritten
        assert db.execute(f"SELECT {column} FROM runs WHERE id = 'old-run'").fetchone()[0] == value
