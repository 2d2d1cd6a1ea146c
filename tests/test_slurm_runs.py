"""`swinctl run --executor slurm` on the real local cluster (scripts/local-slurm.sh): completion with metrics in the
ledger, cancel, failure with its error tail, and preemption (scontrol requeue) resuming from the last checkpoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swinctl import results
from swinctl.cli import app
from swinctl.job import files as jobstate
from swinctl.runs import sync
from swinctl.runs.ledger import Ledger

try:
    from polling import wait_for
except ImportError:  # pragma: no cover  (run from outside tests/)
    from tests.polling import wait_for

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


def _look(ledger: Ledger, run_id: str):
    """The run as `status` sees it: the job's files and the scheduler folded into the ledger (jobs never write it)."""
    return sync.refresh(ledger, ledger.get(run_id))


def _ended(ledger: Ledger, run_id: str):
    record = _look(ledger, run_id)
    return None if record.is_active else record



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
    wait_for(lambda: _look(ledger, record.id).state == "RUNNING", 60, "the job to start")
    print(f"[timing] slurm submit -> RUNNING (ledger, written by the job): {time.time() - submitted:.2f} s")
    t0 = time.time()
    cancelled = swinctl("cancel", record.id)
    assert cancelled.exit_code == 0 and "scancel" in cancelled.output
    wait_for(lambda: "CANCELLED" in subprocess.run(["sacct", "-n", "-X", "-j", record.job_id, "-o", "State"],
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


def _iteration(record) -> int:
    progress = results.read_work_dir(record.work_dir).progress
    return progress.iter if progress else 0


def _resumed_at(ledger: Ledger, run_id: str) -> list[int]:
    """The iteration of each checkpoint a requeued job resumed from, from its `resume` events."""
    found = [re.search(r"iter_(\d+)\.pth", e.detail) for e in ledger.events(run_id) if e.kind == "resume"]
    return [int(m.group(1)) for m in found if m]


# Seeded CPU training (its kernels are deterministic) whose only checkpoint before the end is the one saved at a signal.
EXACT = ["--set", "seed=7", "--set", "schedule.log_interval=1",
         "--set", "schedule.val_interval=100000", "--set", "schedule.checkpoint_interval=100000",
         "--set", "resources.cpus_per_task=1"]


def test_a_preempted_run_saves_at_the_signal_and_ends_with_the_weights_of_an_uninterrupted_one(swinctl):
    """scontrol requeue (SIGTERM, as preemption) at an arbitrary iteration: the training saves at the end of that
    iteration, the requeued job resumes there, and the final weights equal, bit for bit, those of the same run
    (same seed) that nobody interrupted."""
    import torch

    from swinctl.models import safe_load

    common = ["upernet-swin-t", "--smoke", "--executor", "slurm", "--wandb", "disabled", *EXACT,
              "--set", "schedule.max_iters=40"]
    for _ in range(2):
        assert swinctl("run", *common).exit_code == 0
    ledger = Ledger(swinctl.root)
    plain, preempted = ledger.list_runs()
    wait_for(lambda: _iteration(preempted) >= 13, 180, "13 iterations of training")
    stopped_after = _iteration(preempted)
    signalled = time.time()
    subprocess.run(["scontrol", "requeue", preempted.job_id], check=True)
    done = wait_for(lambda: _ended(ledger, preempted.id), 300, "the preempted run to end")
    assert done.state == "COMPLETED", done.error
    assert done.requeues == 1 and done.job_id == preempted.job_id
    [requeue] = [e for e in ledger.events(done.id) if e.kind == "requeue"]
    assert "saved at the signal" in requeue.detail, requeue.detail
    [resumed] = _resumed_at(ledger, done.id)
    assert stopped_after <= resumed <= stopped_after + 3  # the iteration it was at, not a periodic checkpoint
    assert not (done.work_dir / "iter_10.pth").exists()
    resume_event = next(e for e in ledger.events(done.id) if e.kind == "resume")
    print(f"[figure] preempted at iteration ~{stopped_after}, resumed from iteration {resumed}: 0 iterations "
          f"lost; signal -> training again: {resume_event.at - signalled:.1f} s")
    ended = wait_for(lambda: _ended(ledger, plain.id), 300, "the uninterrupted run to end")
    assert ended.state == "COMPLETED", ended.error
    weights = [safe_load.load(r.work_dir / "iter_40.pth")["state_dict"]
               for r in (ended, done)]
    assert weights[0].keys() == weights[1].keys()
    differing = [k for k in weights[0] if not torch.equal(weights[0][k], weights[1][k])]
    assert differing == [], f"{len(differing)} of {len(weights[0])} tensors differ, e.g. {differing[:3]}"
    print(f"[figure] resumed vs uninterrupted: all {len(weights[0])} tensors bit-identical after 40 iterations")


def _cli(*args) -> list[str]:
    return [str(Path(sys.executable).parent / "swinctl"), *map(str, args)]


def test_two_cpu_tasks_train_as_one_gloo_group_while_watch_and_follow_track_the_run(swinctl):
    """World size 2 on the node (CPU/gloo); `status --watch` and `logs --follow` return when the run ends."""
    result = swinctl("run", "upernet-swin-t", "--smoke", "--executor", "slurm", "--wandb", "disabled",
                     "--set", "resources.tasks_per_node=2", "--set", "resources.cpus_per_task=1")
    assert result.exit_code == 0, result.output
    [record] = Ledger(swinctl.root).list_runs()
    env = {**os.environ, "SWINCTL_RUNS": str(swinctl.root), "COLUMNS": "200"}
    wait_for(lambda: record.run_dir.joinpath("submitit", f"{record.job_id}_0_log.out").is_file(), 60,
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


def test_a_run_with_a_1_minute_limit_and_no_periodic_checkpoints_finishes_minutes_of_training(swinctl):
    """Each allocation: SLURM's USR2 before the limit, the job trains on until just before it, the training saves
    at the end of its iteration and exits, the job is requeued under the same id and resumes exactly there."""
    started = time.time()
    result = swinctl("run", "upernet-swin-t", "--smoke", "--executor", "slurm", "--wandb", "disabled",
                     "--set", "resources.time_limit=1", "--set", "resources.max_requeues=60",
                     "--set", "schedule.max_iters=2500", "--set", "schedule.checkpoint_interval=100000",
                     "--set", "schedule.val_interval=2500", "--set", "schedule.log_interval=50")
    assert result.exit_code == 0, result.output
    ledger = Ledger(swinctl.root)
    [record] = ledger.list_runs()
    done = wait_for(lambda: _ended(ledger, record.id), 3000, "the run to end")  # (a busy machine: many rounds)
    wall = time.time() - started
    assert done.state == "COMPLETED", done.error
    assert done.requeues >= 2 and done.job_id == record.job_id
    resumed = _resumed_at(ledger, done.id)
    assert len(resumed) == done.requeues and resumed == sorted(resumed) and resumed[0] > 0, resumed
    assert all("saved at the signal" in e.detail for e in ledger.events(done.id) if e.kind == "requeue")
    submitit_log = record.run_dir.joinpath("submitit", f"{record.job_id}_0_log.err").read_text()
    assert "this job is timed-out" in submitit_log
    assert "mIoU" in done.metrics
    print(f"[figure] 2500 iterations under a 1-minute limit: {done.requeues} requeues, resumed at {resumed}, "
          f"{wall:.0f} s to the end")


def _immutable(*paths: Path, on: bool) -> None:
    subprocess.run(["chattr", "+i" if on else "-i", *map(str, paths)], check=True, capture_output=True)


def _can_make_immutable(folder: Path) -> bool:
    probe = folder / "probe"
    probe.touch()
    try:
        _immutable(probe, on=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    _immutable(probe, on=False)
    probe.unlink()
    return True


def test_a_job_that_cannot_write_the_ledger_completes_with_metrics(swinctl, tmp_path):
    """The runs root and its ledger are immutable (chattr +i: read-only even to root) for the whole job, so a job
    that opened the ledger to write would fail; it writes its life into its own run dir instead, and `status` on
    the submit host folds that into the ledger once the ledger may be written again."""
    if not _can_make_immutable(tmp_path):
        pytest.skip("chattr +i needs root (CAP_LINUX_IMMUTABLE) and a filesystem with the immutable attribute")
    held = swinctl("run", "upernet-swin-t", "--smoke", "--executor", "slurm", "--wandb", "disabled", *SHORT,
                   "--set", "resources.sbatch_args.begin=now+1hour")
    assert held.exit_code == 0, held.output
    ledger = Ledger(swinctl.root)
    [record] = ledger.list_runs()
    before = ledger.path.read_bytes()
    _immutable(swinctl.root, ledger.path, on=True)  # (the root too: no journal file can be created next to it)
    try:
        subprocess.run(["scontrol", "update", f"JobId={record.job_id}", "StartTime=now"], check=True)
        wait_for(lambda: _sacct_state(record.job_id) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), 300,
                  "the job to end")
        assert ledger.path.read_bytes() == before
    finally:
        _immutable(swinctl.root, ledger.path, on=False)
    assert _sacct_state(record.job_id) == "COMPLETED", (record.run_dir / "submitit").glob("*.err")
    assert jobstate.read_state(record.run_dir).state == "COMPLETED"
    status = swinctl("status", record.id)
    assert status.exit_code == 0 and "COMPLETED" in status.output, status.output
    done = ledger.get(record.id)
    assert done.state == "COMPLETED" and "mIoU" in done.metrics, done.error
    assert [e.kind for e in ledger.events(record.id)].count("completed") == 1  # folded from the job's events


def _sacct_state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"], capture_output=True, text=True)
    return (out.stdout.split() or [""])[0]
