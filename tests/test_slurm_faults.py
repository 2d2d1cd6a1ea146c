"""SLURM that refuses or cannot be reached, and a cancel from outside swinctl, on the real local cluster
(scripts/local-slurm.sh): one `error:` line and no half-made run; `status` says once that it could not ask."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from polling import wait_for
from slurm_cluster import slurm_cluster  # noqa: F401  (fixture)
from typer.testing import CliRunner

from swinctl.cli import app
from swinctl.job import files as jobstate
from swinctl.runs import sync
from swinctl.runs.ledger import Ledger

pytestmark = pytest.mark.slurm

SMOKE = ["upernet-swin-t", "--smoke", "--executor", "slurm", "--wandb", "disabled"]
HELD = ["--set", "resources.sbatch_args.begin=now+1hour"]  # queued, never started


@pytest.fixture
def swinctl(slurm_cluster, tmp_path):  # noqa: F811
    root = tmp_path / "runs"

    def invoke(*args, **env):
        return CliRunner().invoke(app, [str(a) for a in args],
                                  env={**os.environ, "SWINCTL_RUNS": str(root), "COLUMNS": "200", **env})

    invoke.root = root
    return invoke


@pytest.fixture
def bogus_conf(tmp_path) -> str:
    path = tmp_path / "slurm.conf"
    path.write_text("garbage\n")
    return str(path)


def _left(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(("ledger.sqlite", "."))) \
        if root.exists() else []


def test_a_bogus_slurm_conf_is_one_error_and_writes_no_run(swinctl, bogus_conf):
    result = swinctl("run", *SMOKE, SLURM_CONF=bogus_conf)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:") and "Traceback" not in result.output, result.stderr
    assert "SLURM does not answer" in result.stderr and "Parse error" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout.strip() == "", result.stdout  # nothing before it (the guard's deviations come after)
    assert _left(swinctl.root) == []
    assert not swinctl.root.exists() or Ledger(swinctl.root).list_runs() == []


def test_a_submission_sbatch_refuses_leaves_one_marked_row_and_no_run_dir(swinctl):
    result = swinctl("run", *SMOKE, "--partition", "nope")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "SLURM refused the submission, nothing was submitted: sbatch: error:" in result.stderr
    assert "nope" in result.stderr
    [record] = Ledger(swinctl.root).list_runs()
    assert record.state == "CANCELLED" and record.error.startswith("never submitted: SLURM refused it")
    assert not record.run_dir.exists() and _left(swinctl.root) == []


def test_status_says_once_that_slurm_is_unreachable_and_shows_the_last_known_states(swinctl, bogus_conf):
    result = swinctl("run", *SMOKE, *HELD)
    assert result.exit_code == 0, result.output
    [record] = Ledger(swinctl.root).list_runs()
    try:
        env = {**os.environ, "SWINCTL_RUNS": str(swinctl.root), "COLUMNS": "200", "SLURM_CONF": bogus_conf}
        done = subprocess.run([sys.executable, "-m", "swinctl.cli", "status"], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "PENDING" in done.stdout and record.id[-4:] in done.stdout
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("warning: SLURM could not be asked"), done.stderr
        assert "Bypassing" not in done.stdout + done.stderr and "Traceback" not in done.stderr
        assert Ledger(swinctl.root).get(record.id).state == "PENDING"
    finally:
        swinctl("cancel", record.id)


@pytest.mark.slow
def test_an_outside_scancel_is_a_cancel_not_a_preemption(swinctl):
    result = swinctl("run", *SMOKE, "--set", "schedule.max_iters=100000")
    assert result.exit_code == 0, result.output
    ledger = Ledger(swinctl.root)
    [record] = ledger.list_runs()
    wait_for(lambda: sync.refresh(ledger, ledger.get(record.id)).state == "RUNNING", 120, "the job to start")
    # What the job writes when it catches scancel's SIGTERM in time (swinctl.job.task: `_record_requeue`); here it
    # usually dies first (KillWait=5), so it is written for it: the test then always meets the case to get right.
    jobstate.update_state(record.run_dir, state="REQUEUED", requeues=1)
    jobstate.add_event(record.run_dir, "requeue", "SIGTERM (preemption or requeue): training did not stop in time")
    assert sync.refresh(ledger, ledger.get(record.id)).requeues == 1
    subprocess.run(["scancel", record.job_id], check=True)
    ended = wait_for(lambda: (r := sync.refresh(ledger, ledger.get(record.id))) and not r.is_active and r, 120,
                     "SLURM to end the job")
    assert ended.state == "CANCELLED" and ended.requeues == 0, (ended.requeues, ended.error)
    assert "preemption" not in ended.error.replace("not a preemption", "")
    shown = " ".join(swinctl("status", record.id, "--wide").output.split())
    assert "CANCELLED" in shown and "requeued" not in shown, shown
