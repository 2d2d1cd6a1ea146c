"""Local runs are tracked and cancelled as a whole process group: killing the process the ledger records does not
make a run that still trains look FAILED, `cancel` leaves no process of the run behind, and Ctrl-C during `--wait`
stops only the watching. Real training through mim on the local executor; nothing mocked."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swinctl import results
from swinctl.backends import local
from swinctl.cli import app
from swinctl.runs import sync
from swinctl.runs.ledger import Ledger

try:
    from polling import wait_for
except ImportError:  # pragma: no cover  (run from outside tests/)
    from tests.polling import wait_for

pytestmark = pytest.mark.slow

TRAIN = ["upernet-swin-t", "--smoke", "--executor", "local", "--wandb", "disabled", "--set", "schedule.log_interval=1",
         "--set", "schedule.checkpoint_interval=100000"]


def _invoke(root: Path, *args):
    return CliRunner().invoke(app, [str(a) for a in args], env={**os.environ, "SWINCTL_RUNS": str(root),
                                                               "COLUMNS": "200"})



def _look(ledger: Ledger, run_id: str):
    return sync.refresh(ledger, ledger.get(run_id))


def _iteration(record) -> int:
    progress = results.read_work_dir(record.work_dir).progress
    return progress.iter if progress else 0


def _group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                after = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(after[2]) == pgid and after[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def _started(root: Path, *extra: str):
    result = _invoke(root, "run", *TRAIN, *extra)
    assert result.exit_code == 0, result.output
    ledger = Ledger(root)
    [record] = ledger.list_runs()
    wait_for(lambda: _look(ledger, record.id).state == "RUNNING" and _iteration(record) >= 2, 180,
              "two iterations of training")
    return ledger, record


def test_killing_the_recorded_process_leaves_a_training_run_running_to_completion(tmp_path):
    ledger, record = _started(tmp_path / "runs", "--set", "schedule.max_iters=40")
    pgid = int(record.job_id)
    assert len(_group(pgid)) >= 3  # submitit's controller, its task, the training
    os.kill(pgid, signal.SIGKILL)  # the recorded pid: the job's group leader
    at_kill = _iteration(record)
    time.sleep(3)
    assert _look(ledger, record.id).state == "RUNNING"
    done = wait_for(lambda: not (r := _look(ledger, record.id)).is_active and r, 300, "the run to end")
    assert done.state == "COMPLETED" and "mIoU" in done.metrics, done.error
    assert _iteration(record) == 40 > at_kill


def test_cancel_stops_every_process_of_the_run_and_it_stays_cancelled(tmp_path):
    root = tmp_path / "runs"
    ledger, record = _started(root, "--set", "schedule.max_iters=100000")
    pgid = int(record.job_id)
    processes = _group(pgid)
    assert len(processes) >= 3
    cancelled = _invoke(root, "cancel", record.id)
    assert cancelled.exit_code == 0 and "process group" in cancelled.output, cancelled.output
    wait_for(lambda: not _group(pgid), 10, "every process of the run to end")
    wait_for(lambda: not local.group_alive(pgid), 5, "the backend to see the group gone")
    time.sleep(1)
    assert _look(ledger, record.id).state == "CANCELLED"
    assert "CANCELLED" in _invoke(root, "status", record.id).output


def test_ctrl_c_during_wait_stops_watching_and_the_run_goes_on(tmp_path):
    root = tmp_path / "runs"
    env = {**os.environ, "SWINCTL_RUNS": str(root), "COLUMNS": "120"}
    cli = [str(Path(sys.executable).parent / "swinctl"), "run", *TRAIN, "--set", "schedule.max_iters=30", "--wait"]
    # its own process group, as a terminal's foreground job is: Ctrl-C sends SIGINT to the whole group
    waiting = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    ledger = wait_for(lambda: (root / "ledger.sqlite").exists() and Ledger(root), 120, "the ledger")
    record = wait_for(lambda: (runs := ledger.list_runs()) and runs[0], 60, "the run's row")
    wait_for(lambda: _iteration(record) >= 2, 180, "two iterations of training")
    os.killpg(waiting.pid, signal.SIGINT)
    output, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 130, output
    assert "stopped watching" in output and "it goes on" in output and "Traceback" not in output, output
    assert _look(ledger, record.id).state in ("RUNNING", "COMPLETED")  # (a fast machine may be done already)
    done = wait_for(lambda: not (r := _look(ledger, record.id)).is_active and r, 300, "the run to end")
    assert done.state == "COMPLETED" and "mIoU" in done.metrics, done.error


def test_report_folds_in_a_job_that_ended_unseen(tmp_path):
    """A run started without --wait that finishes before anyone looks: `report` (the first look) folds its job's
    files in as `status` does, so it shows the state the job wrote, and the ledger says so afterwards (it used to
    show PENDING beside the final metrics, and stay PENDING)."""
    import json

    from swinctl.job import files as jobstate

    root = tmp_path / "runs"
    started = _invoke(root, "run", *TRAIN, "--set", "schedule.max_iters=4", "--set", "schedule.val_interval=4",
                      "--set", "schedule.warmup_iters=2")
    assert started.exit_code == 0, started.output
    (record,) = Ledger(root).list_runs()
    assert record.state == "PENDING"
    # wait on the job's own file, not through swinctl (that would fold it in)
    wait_for(lambda: (s := jobstate.read_state(record.run_dir)) is not None and s.state in jobstate.FINAL_STATES,
             timeout=600, what="the smoke job to end")
    assert Ledger(root).get(record.id).state == "PENDING"  # nobody has looked yet
    shown = _invoke(root, "report", "--format", "json")
    assert shown.exit_code == 0, shown.output
    (row,) = json.loads(shown.output)["runs"]
    assert row["state"] == "COMPLETED" and any(r["value"] is not None for r in row["results"]), row
    assert Ledger(root).get(record.id).state == "COMPLETED"
