"""`swinctl run --executor slurm` on the real local cluster (scripts/local-slurm.sh): completion with metrics in the
ledger, cancel, failure with its error tail, and preemption (scontrol requeue) resuming from the last checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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


def _cli(*args) -> list[str]:
    return [str(Path(sys.executable).parent / "swinctl"), *map(str, args)]


def test_two_cpu_tasks_train_as_one_gloo_group_while_watch_and_follow_track_the_run(swinctl):
    """World size 2 on the node (CPU/gloo); `status --watch` and `logs --follow` return when the run ends."""
    result = swinctl("run", "upernet-swin-t", "--smoke", "--executor", "slurm", "--wandb", "disabled",
                     "--set", "resources.tasks_per_node=2", "--set", "resources.cpus_per_task=1")
    assert result.exit_code == 0, result.output
    [record] = Ledger(swinctl.root).list_runs()
    env = {**os.environ, "SWINCTL_RUNS": str(swinctl.root), "COLUMNS": "200"}
    _wait_for(lambda: record.run_dir.joinpath("submitit", f"{record.job_id}_0_log.out").is_file(), 60,
              "the job's first log")
    started = time.time()
    watch = subprocess.Popen(_cli("status", record.id, "--watch"), env=env, stdout=subprocess.PIPE, text=True)
    follow = subprocess.Popen(_cli("logs", record.id, "--follow"), env=env, stdout=subprocess.PIPE, text=True)
    watched, _ = watch.communicate(timeout=240)
    followed, _ = follow.communicate(timeout=60)
    print(f"[timing] 2-task slurm smoke, watched to the end: {time.time() - started:.1f} s")
    assert watch.returncode == 0 and follow.returncode == 0
    done = Ledger(swinctl.root).get(record.id)
    assert done.state == "COMPLETED" and "mIoU" in done.metrics, done.error
    assert "COMPLETED" in watched
    assert "Iter(train) [20/20]" in followed and "mIoU" in followed  # the whole log, up to the final evaluation
    log = "".join(p.read_text() for p in record.work_dir.glob("*/*.log"))
    assert "Distributed training: True" in log and "GPU number: 2" in log  # mmengine's world size
    sacct = subprocess.run(["sacct", "-n", "-P", "-j", record.job_id, "-o", "JobID,NTasks"],
                           capture_output=True, text=True).stdout
    assert any(line.endswith("|2") for line in sacct.splitlines()), sacct  # the step ran two tasks


def test_a_run_that_hits_its_time_limit_is_requeued_and_finishes(swinctl):
    """A 1-minute limit on ~75 s of training: SLURM's USR2 comes before the limit, the job checkpoints, is requeued
    under the same id, resumes, and completes."""
    started = time.time()
    result = swinctl("run", "upernet-swin-t", "--smoke", "--executor", "slurm", "--wandb", "disabled",
                     "--set", "resources.time_limit=1", "--set", "resources.max_requeues=6",
                     "--set", "schedule.max_iters=1000", "--set", "schedule.checkpoint_interval=50",
                     "--set", "schedule.val_interval=1000", "--set", "schedule.log_interval=50")
    assert result.exit_code == 0, result.output
    ledger = Ledger(swinctl.root)
    [record] = ledger.list_runs()
    done = _wait_for(lambda: not ledger.get(record.id).is_active and ledger.get(record.id), 480, "the run to end")
    print(f"[timing] time-limited slurm run, {done.requeues} requeue(s), to the end: {time.time() - started:.1f} s")
    assert done.state == "COMPLETED", done.error
    assert done.requeues >= 1 and done.job_id == record.job_id
    kinds = [e.kind for e in ledger.events(record.id)]
    assert "requeue" in kinds and "resume" in kinds
    submitit_log = record.run_dir.joinpath("submitit", f"{record.job_id}_0_log.err").read_text()
    assert "this job is timed-out" in submitit_log
    assert "mIoU" in done.metrics
