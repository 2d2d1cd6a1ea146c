"""`run --test-after last|best`: the test of training's checkpoint as a job that depends on training, locally and on
the real local SLURM cluster; status shows both as one run, report judges the test's result. Real training and
testing through mim on the demo data; nothing mocked."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from typer.testing import CliRunner

from swinctl.cli import app
from swinctl.runs import sync
from swinctl.runs.ledger import Ledger

try:
    from polling import wait_for
    from slurm_cluster import slurm_cluster  # noqa: F401  (fixture; see tests/slurm_cluster.py for the import)
except ImportError:  # pragma: no cover  (run from outside tests/)
    from tests.polling import wait_for
    from tests.slurm_cluster import slurm_cluster  # noqa: F401

pytestmark = pytest.mark.slow

# UPerNet smoke, shortened: validated and checkpointed at iterations 4 and 8
SHORT = ["upernet-swin-t", "--smoke", "--wandb", "disabled", "--set", "schedule.max_iters=8",
         "--set", "schedule.val_interval=4", "--set", "schedule.checkpoint_interval=4"]


def _invoke(root, *args):
    return CliRunner().invoke(app, [str(a) for a in args], env={**os.environ, "SWINCTL_RUNS": str(root),
                                                               "COLUMNS": "200"})


def _pair(root):
    train, test = Ledger(root).list_runs()
    assert (train.kind, test.kind, test.follows) == ("train", "test", train.id)
    return train, test


def _events(root, run_id):
    return {e.kind: e.detail for e in Ledger(root).events(run_id)}


@pytest.fixture(scope="module")
def tested_last(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    result = _invoke(root, "run", *SHORT, "--executor", "local", "--test-after", "last", "--wait")
    assert result.exit_code == 0, result.output
    return root, result.output


def test_the_last_checkpoint_is_tested_when_training_completes(tested_last):
    root, output = tested_last
    train, test = _pair(root)
    assert train.state == test.state == "COMPLETED", (train.error, test.error)
    assert "then test" in output and test.id in output
    # the same weights on the same split: the test repeats the final validation
    assert test.metrics["mIoU"] == pytest.approx(train.metrics["mIoU"], abs=1e-6)
    assert str(train.work_dir / "iter_8.pth") in _events(root, test.id)["test"]
    assert test.started_at >= train.finished_at  # it waited for training


def test_status_shows_training_and_its_test_as_one_run(tested_last):
    root, _ = tested_last
    train, test = _pair(root)
    rows = json.loads(_invoke(root, "status", "--json").output)
    assert [r["id"] for r in rows] == [train.id]
    assert rows[0]["test"]["id"] == test.id and rows[0]["test"]["state"] == "COMPLETED"
    table = _invoke(root, "status").output
    assert "test COMPLETED" in table
    alone = json.loads(_invoke(root, "status", test.id, "--json").output)  # selected by itself, it is a row
    assert [r["id"] for r in alone] == [test.id] and alone[0]["follows"] == train.id


def test_report_judges_the_tests_result(tested_last):
    root, _ = tested_last
    train, test = _pair(root)
    data = json.loads(_invoke(root, "report", "--format", "json").output)
    [row] = data["runs"]
    assert (row["id"], row["tested_by"]) == (train.id, test.id)
    assert row["results"][0]["last"] == pytest.approx(test.metrics["mIoU"], abs=0.01)


def test_the_best_checkpoint_by_validation_is_tested(tmp_path):
    root = tmp_path / "runs"
    result = _invoke(root, "run", *SHORT, "--executor", "local", "--test-after", "best", "--wait")
    assert result.exit_code == 0, result.output
    train, test = _pair(root)
    assert test.state == "COMPLETED", test.error
    [best] = train.work_dir.glob("best_*.pth")  # CheckpointHook(save_best='auto') keeps the best one
    assert str(best) in _events(root, test.id)["test"]
    assert "save_best" not in (train.run_dir / "config.py").read_text()  # the job config asks, not the recipe


def test_a_test_whose_training_is_cancelled_never_runs(tmp_path):
    root = tmp_path / "runs"
    result = _invoke(root, "run", *SHORT, "--set", "schedule.max_iters=100000", "--executor", "local",
                     "--test-after", "last")
    assert result.exit_code == 0, result.output
    train, test = _pair(root)
    ledger = Ledger(root)
    wait_for(lambda: sync.refresh(ledger, ledger.get(train.id)).state == "RUNNING", 120, "training to start")
    assert _invoke(root, "cancel", train.id).exit_code == 0
    ended = wait_for(lambda: not (r := sync.refresh(ledger, ledger.get(test.id))).is_active and r, 60,
                     "the test to end")
    assert ended.state == "CANCELLED"
    assert f"not run: training run {train.id}" in ended.error and "CANCELLED" in ended.error
    assert not (test.work_dir / "last_checkpoint").exists() and not list(test.work_dir.glob("*/*.json"))


def test_dry_run_shows_the_dependent_sbatch_script_and_bad_choices_are_refused(tmp_path, no_slurm_client):
    root = tmp_path / "runs"
    result = _invoke(root, "run", *SHORT, "--executor", "slurm", "--dry-run", "--test-after", "best")
    assert result.exit_code == 0, result.output
    assert "#SBATCH --dependency=afterok:TRAIN_JOB_ID" in result.output
    assert "#SBATCH --kill-on-invalid-dep=yes" in result.output
    refused = _invoke(root, "run", *SHORT, "--executor", "local", "--test-after", "worst")
    assert refused.exit_code == 2 and "--test-after worst: choose one of last, best" in refused.output
    assert not list(root.glob("*/recipe.yaml"))  # nothing written


@pytest.mark.slurm
def test_on_slurm_the_test_is_a_job_that_depends_on_training(slurm_cluster, tmp_path):
    root = tmp_path / "runs"
    result = _invoke(root, "run", *SHORT, "--executor", "slurm", "--test-after", "last")
    assert result.exit_code == 0, result.output
    train, test = _pair(root)
    assert train.job_id.isdigit() and test.job_id.isdigit()
    held = subprocess.run(["scontrol", "show", "job", test.job_id], capture_output=True, text=True).stdout
    if "JobState=PENDING" in held:  # (a fast machine may have finished training already)
        assert f"Dependency=afterok:{train.job_id}" in held, held
    script = next(test.run_dir.glob("submitit/*_submission.sh")).read_text()
    assert f"#SBATCH --dependency=afterok:{train.job_id}" in script
    ledger = Ledger(root)
    train, test = (wait_for(lambda r=run_id: not (x := sync.refresh(ledger, ledger.get(r))).is_active and x, 400,
                            f"{run_id} to end") for run_id in (train.id, test.id))
    assert train.state == test.state == "COMPLETED", (train.error, test.error)
    assert test.metrics["mIoU"] == pytest.approx(train.metrics["mIoU"], abs=1e-6)

    def accounted():  # (the job's state file says COMPLETED a moment before its SLURM job ends)
        out = subprocess.run(["sacct", "-X", "-n", "-P", "-j", f"{train.job_id},{test.job_id}", "-o",
                              "JobID,State,Start,End"], capture_output=True, text=True, check=True).stdout.split()
        found = {line.split("|")[0]: line.split("|") for line in out}
        return found if all(found.get(j, [None, None])[1] == "COMPLETED" for j in (train.job_id, test.job_id)) \
            else None

    times = wait_for(accounted, 120, "sacct to account both jobs COMPLETED")
    sacct = list(times.values())
    assert times[test.job_id][2] >= times[train.job_id][3], sacct  # started once training had ended (ISO times)
