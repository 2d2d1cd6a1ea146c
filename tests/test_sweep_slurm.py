"""Sweeps on the real local SLURM cluster (scripts/local-slurm.sh): one job array per sweep, all points trained and
evaluated for real, reruns that submit nothing, a SIGKILL between sbatch and the ledger reconciled without a duplicate,
concurrent invocations, and a failing point that does not stop the others. Nothing is mocked.

Jobs that need not run are held with `resources.sbatch_args.begin=now+1hour` and cancelled at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

try:
    from slurm_cluster import slurm_cluster  # noqa: F401  (fixture; see tests/slurm_cluster.py for the import)
except ImportError:  # pragma: no cover
    from tests.slurm_cluster import slurm_cluster  # noqa: F401

from swinctl import sweep as sw
from swinctl.runs.ledger import Ledger

pytestmark = pytest.mark.slurm

TINY = ["--smoke", "--set", "schedule.max_iters=4", "--set", "schedule.val_interval=4", "--set",
        "schedule.checkpoint_interval=4", "--set", "schedule.warmup_iters=2", "--set", "schedule.log_interval=2",
        "--wandb", "disabled", "--executor", "slurm"]
HELD = [*TINY, "--set", "resources.sbatch_args.begin=now+1hour"]  # queued, never started
CLI = "from swinctl import cli\ncli.app(prog_name='swinctl')\n"


@pytest.fixture
def swinctl(slurm_cluster, runs_root):
    """The CLI in-process; jobs the test left queued are cancelled after it."""
    from typer.testing import CliRunner

    from swinctl import cli

    def invoke(*args):
        return CliRunner().invoke(cli.app, [str(a) for a in args], env={**os.environ, "COLUMNS": "250"})

    yield invoke
    if (runs_root / "ledger.sqlite").exists():
        for name in _job_names(Ledger(runs_root)):
            subprocess.run(["scancel", "--name", name], capture_output=True)


def _spawn(root, *args, **env) -> subprocess.Popen:
    """The CLI in its own process (it may be SIGKILLed)."""
    return subprocess.Popen([sys.executable, "-c", CLI, "sweep", *map(str, args)], text=True,
                            env={**os.environ, "SWINCTL_RUNS": str(root), "COLUMNS": "250", **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _job_names(ledger) -> list[str]:
    return [s.job_name for s in ledger.submissions()]


def _submissions(ledger, name) -> list[dict]:
    return [vars(s) for s in ledger.submissions(sweep=name)]


def _queued(cluster, job_name) -> list[str]:
    """Array tasks SLURM holds under a job name, one id per task (squeue -r expands arrays)."""
    out = cluster.run(["squeue", "-r", "-h", "--name", job_name, "-o", "%i"]).stdout
    return sorted(out.split())


def _accounted(cluster, job_name) -> list[str]:
    out = cluster.run(["sacct", "-X", "-n", "-P", "--name", job_name, "-S", "now-1hour", "-o", "JobID"]).stdout
    return sorted(out.split())


def test_a_smoke_grid_is_one_array_that_trains_every_point_and_a_rerun_submits_nothing(slurm_cluster, swinctl,
                                                                                     runs_root):
    grid = ["--grid", "optim_wrapper.optimizer.lr=1e-4,2e-4", "--grid", "model.backbone.drop_path_rate=0.1,0.2"]
    result = swinctl("sweep", "upernet-swin-t", *TINY, *grid, "--name", "grid", "--max-parallel", "2", "--wait")
    assert result.exit_code == 0, result.output
    ledger = Ledger(runs_root)
    [submission] = _submissions(ledger, "grid")
    array = submission["job_id"]
    assert f"submitted 4 point(s) of sweep grid as SLURM job array {array}, at most 2 at a time" in result.output
    runs = ledger.list_runs(sweep="grid")
    assert sorted(r.job_id for r in runs) == [f"{array}_{i}" for i in range(4)]
    assert _accounted(slurm_cluster, submission["job_name"]) == [f"{array}_{i}" for i in range(4)]
    for run in runs:
        assert run.state == "COMPLETED" and 0.0 <= run.metrics["mIoU"] <= 100.0, (run.id, run.error)
        assert (runs_root / "sweeps" / "grid" / "submitit" / f"{run.job_id}_0_log.out").is_file()
    rows = sw.sweep_rows(ledger, "grid")
    assert [r.row.record.state for r in rows] == ["COMPLETED"] * 4 and "★ best" in result.output
    assert [r.overrides for r in rows][3] == ["optim_wrapper.optimizer.lr=0.0002", "model.backbone.drop_path_rate=0.2"]

    again = swinctl("sweep", "upernet-swin-t", *TINY, *grid, "--name", "grid", "--max-parallel", "2")
    assert again.exit_code == 0, again.output
    assert "nothing to submit" in again.output and again.output.count("done: upernet-swin-t-smoke-") == 4
    assert len(_submissions(ledger, "grid")) == 1 and len(ledger.list_runs()) == 4


def test_a_sweep_killed_right_after_sbatch_is_adopted_not_submitted_twice(slurm_cluster, swinctl, runs_root):
    grid = ["--grid", "optim_wrapper.optimizer.lr=1e-4,2e-4,3e-4", "--name", "killed"]
    proc = _spawn(runs_root, "upernet-swin-t", *HELD, *grid, SWINCTL_TEST_KILL_AFTER_SBATCH="1")
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == -signal.SIGKILL, output
    ledger = Ledger(runs_root)
    [submission] = _submissions(ledger, "killed")
    assert submission["state"] == "submitting" and submission["job_id"] is None
    assert [r.job_id for r in ledger.list_runs(sweep="killed")] == [None, None, None]  # recorded, ids not yet
    tasks = _queued(slurm_cluster, submission["job_name"])
    assert len(tasks) == 3 and len({t.split("_")[0] for t in tasks}) == 1  # one array reached SLURM

    result = swinctl("sweep", "upernet-swin-t", *HELD, *grid)
    assert result.exit_code == 0, result.output
    array = tasks[0].split("_")[0]
    assert f"adopted SLURM job array {array} (3 points)" in result.output and "nothing to submit" in result.output
    assert sorted(r.job_id for r in ledger.list_runs(sweep="killed")) == tasks
    assert _queued(slurm_cluster, submission["job_name"]) == tasks and len(ledger.list_runs()) == 3
    assert [s["state"] for s in _submissions(ledger, "killed")] == ["submitted"]

    cancelled = swinctl("cancel", "killed")  # cancel by sweep name reaches every task of the array
    assert cancelled.exit_code == 0, cancelled.output
    assert cancelled.output.count("scancel") == 3 and _queued(slurm_cluster, submission["job_name"]) == []


def test_a_sweep_killed_before_sbatch_submits_its_points_on_the_next_invocation(slurm_cluster, swinctl, runs_root):
    grid = ["--grid", "optim_wrapper.optimizer.lr=1e-4,2e-4", "--name", "early"]
    proc = _spawn(runs_root, "upernet-swin-t", *HELD, *grid, SWINCTL_TEST_KILL_BEFORE_SBATCH="1")
    assert proc.wait(timeout=120) == -signal.SIGKILL
    ledger = Ledger(runs_root)
    [lost] = _submissions(ledger, "early")
    assert _queued(slurm_cluster, lost["job_name"]) == []

    result = swinctl("sweep", "upernet-swin-t", *HELD, *grid)
    assert result.exit_code == 0, result.output
    assert "never reached SLURM" in result.output
    first, second = _submissions(ledger, "early")
    assert (first["state"], second["state"]) == ("lost", "submitted")
    states = sorted((r.state, r.job_id is None) for r in ledger.list_runs(sweep="early"))
    assert states == [("CANCELLED", True), ("CANCELLED", True), ("PENDING", False), ("PENDING", False)]
    assert len(_queued(slurm_cluster, second["job_name"])) == 2


def test_concurrent_invocations_submit_every_point_once(slurm_cluster, swinctl, runs_root):
    grid = ["--grid", "optim_wrapper.optimizer.lr=1e-4,2e-4,3e-4,4e-4", "--name", "race"]
    procs = [_spawn(runs_root, "upernet-swin-t", *HELD, *grid) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert sum("submitted 4 point(s)" in o for o in outputs) == 1
    assert sum("nothing to submit" in o for o in outputs) == 1
    ledger = Ledger(runs_root)
    [submission] = _submissions(ledger, "race")
    assert len(ledger.list_runs()) == 4 and len(_queued(slurm_cluster, submission["job_name"])) == 4
    with ledger.transaction() as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_failing_point_does_not_stop_the_others(slurm_cluster, swinctl, runs_root):
    grid = ["--grid", "cfg.train_dataloader.dataset.type=ADE20KDataset,NoSuchDataset", "--name", "flaky"]
    result = swinctl("sweep", "upernet-swin-t", *TINY, *grid, "--max-parallel", "2", "--wait")
    assert result.exit_code == 1, result.output
    assert "1 of 2 point(s) did not complete" in result.output
    ledger = Ledger(runs_root)
    good, bad = (row.row.record for row in sw.sweep_rows(ledger, "flaky"))  # in point order
    assert good.state == "COMPLETED" and "mIoU" in good.metrics
    assert bad.state == "FAILED" and "NoSuchDataset" in bad.error
    assert len({r.job_id.split("_")[0] for r in (good, bad)}) == 1  # the same array

    again = swinctl("sweep", "upernet-swin-t", *TINY, *grid)
    assert "nothing to submit" in again.output and "--retry-failed to rerun" in again.output
    retry = swinctl("sweep", "upernet-swin-t", *TINY, *grid, "--retry-failed", "--dry-run")
    assert retry.exit_code == 0, retry.output
    assert "1 to submit" in retry.output and f"retry of {bad.id}" in retry.output
    assert json.loads(json.dumps(sw.sweep_rows(ledger, "flaky")[1].to_json()))["run"]["state"] == "FAILED"


def test_a_sweep_larger_than_max_array_size_is_several_arrays_that_share_max_parallel(slurm_cluster, swinctl,
                                                                                      runs_root):
    """The cluster's MaxArraySize (scontrol show config; 1001 on the local cluster) cuts the sweep into arrays, each
    under it, each throttled (`%N`) to its share of --max-parallel."""
    from swinctl.backends import slurm

    limit = slurm.max_array_size()
    assert limit
    points = limit + 3
    lrs = ",".join(f"{i + 1}.0e-7" for i in range(points))
    result = swinctl("sweep", "upernet-swin-t", *HELD, "--grid", f"optim_wrapper.optimizer.lr={lrs}", "--name", "huge",
                     "--max-parallel", "4", "--yes")
    assert result.exit_code == 0, result.output
    ledger = Ledger(runs_root)
    first, second = _submissions(ledger, "huge")
    assert [len(first["run_ids"]), len(second["run_ids"])] == [limit, 3]
    assert f"submitted {limit} point(s) of sweep huge as SLURM job array {first['job_id']}, at most 2 at a time" \
        in result.output
    for sub, size in ((first, limit), (second, 3)):
        assert len(_queued(slurm_cluster, sub["job_name"])) == size
        shown = slurm_cluster.run(["scontrol", "show", "job", sub["job_id"]]).stdout
        assert "ArrayTaskThrottle=2" in shown
    runs = {r.id: r for r in ledger.list_runs(sweep="huge")}
    assert len(runs) == points
    for sub in (first, second):
        assert sorted(runs[i].job_id for i in sub["run_ids"]) == sorted(
            f"{sub['job_id']}_{i}" for i in range(len(sub["run_ids"])))
