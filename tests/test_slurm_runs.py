"""`swinctl run --executor slurm` on the real local cluster (scripts/local-slurm.sh): completion with metrics in the
ledger, cancel, failure with its error tail, and preemption (scontrol requeue) resuming from the last checkpoint."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from typer.testing import CliRunner

from swinctl.cli import app
from swinctl.ledger import Ledger

try:
    from slurm_cluster import slurm_cluster  # noqa: F401  (fixture; see tests/slurm_cluster.py for the import)
except ImportError:  # pragma: no cover
    from tests.slurm_cluster import slurm_cluster  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# UPerNet smoke, shortened further: the point here is the scheduler, not the model.
SHORT = ["--set", "schedule.max_iters=8", "--set", "schedule.val_interval=8", "--set", "schedule.checkpoint_interval=8"]


@pytest.fixture
def swinctl(slurm_cluster, tmp_path):
    root = tmp_path / "runs"

    def invoke(*args):
        env = {**os.environ, "SWINCTL_RUNS": str(root), "COLUMNS": "200"}
        return CliRunner().invoke(app, [str(a) for a in args], env=env)

    invoke.root = root
    return invoke


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_smoke_run_on_slurm_completes_with_metrics_in_the_ledger(swinctl):
    started = time.time()
    result = swinctl("run", "upernet-swin-t", "--smoke", "--executor", "slurm", "--wandb", "offline", "--wait", *SHORT)
    assert result.exit_code == 0, result.output
    [record] = Ledger(swinctl.root).list_runs()
    assert record.executor == "slurm" and record.job_id.isdigit()
    assert record.state == "COMPLETED" and "mIoU" in record.metrics
    events = [e.kind for e in Ledger(swinctl.root).events(record.id)]
    assert "submitted" in events and events[-1] == "state"
    status = swinctl("status", record.id)
    assert status.exit_code == 0 and "COMPLETED" in status.output
    print(f"[timing] slurm smoke run end to end: {time.time() - started:.1f} s")


def test_cancel_gives_cancelled_promptly(swinctl):
    result = swinctl("run", "upernet-swin-t", "--smoke", "--executor", "slurm", "--wandb", "disabled",
                     "--set", "schedule.max_iters=100000")
    assert result.exit_code == 0, result.output
    ledger = Ledger(swinctl.root)
    [record] = ledger.list_runs()
    submitted = time.time()
    _wait_for(lambda: ledger.get(record.id).state == "RUNNING", 60, "the job to start")
    print(f"[timing] slurm submit -> RUNNING (ledger, written by the job): {time.time() - submitted:.2f} s")
    t0 = time.time()
    cancelled = swinctl("cancel", record.id)
    assert cancelled.exit_code == 0 and "scancel" in cancelled.output
    _wait_for(lambda: "CANCELLED" in subprocess.run(["sacct", "-n", "-X", "-j", record.job_id, "-o", "State"],
                                                    capture_output=True, text=True).stdout, 30, "sacct CANCELLED")
    assert time.time() - t0 < 30
    assert ledger.get(record.id).state == "CANCELLED"
    assert "CANCELLED" in swinctl("status", record.id).output


def test_failing_run_shows_failed_with_its_error_tail(swinctl):
    result = swinctl("run", "upernet-swin-t", "--smoke", "--executor", "slurm", "--wandb", "disabled", "--wait",
                     "--set", "cfg.train_dataloader.dataset.type=NoSuchDataset")
    assert result.exit_code == 1
    [record] = Ledger(swinctl.root).list_runs()
    assert record.state == "FAILED" and "NoSuchDataset" in record.error
    assert "NoSuchDataset" in result.output


def test_preempted_run_is_requeued_and_resumes_from_its_checkpoint(swinctl):
    result = swinctl("run", "upernet-swin-t", "--smoke", "--executor", "slurm", "--wandb", "disabled",
                     "--set", "schedule.max_iters=60", "--set", "schedule.checkpoint_interval=5",
                     "--set", "schedule.val_interval=60")
    assert result.exit_code == 0, result.output
    ledger = Ledger(swinctl.root)
    [record] = ledger.list_runs()
    _wait_for(lambda: (record.work_dir / "last_checkpoint").is_file(), 120, "the first checkpoint")
    subprocess.run(["scontrol", "requeue", record.job_id], check=True)
    done = _wait_for(lambda: not ledger.get(record.id).is_active and ledger.get(record.id), 300, "the run to end")
    assert done.state == "COMPLETED", done.error
    assert done.requeues >= 1 and done.job_id == record.job_id
    kinds = [e.kind for e in ledger.events(record.id)]
    assert "requeue" in kinds and "resume" in kinds
    logs = "".join(p.read_text() for p in record.work_dir.glob("*/*.log"))
    assert "resumed epoch" in logs.lower() or "resumed" in logs.lower()
    assert "mIoU" in done.metrics
