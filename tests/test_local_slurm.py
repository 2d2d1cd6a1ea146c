"""The real local SLURM cluster (scripts/local-slurm.sh) and submitit on it. Nothing is mocked.

Timings are printed as ``[timing] ...`` lines (run with ``-s`` to see them, ``--durations=0`` for
pytest's own per-test wall times).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

# Under pytest, tests/ (no __init__.py, rootdir conftest) is on sys.path, so the helper imports as
# `slurm_cluster`; `tests.slurm_cluster` would resolve to the unrelated top-level `tests` package
# that mmsegmentation installs into site-packages. The fallback covers a tests/ package.
try:
    from slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401  (fixture)
except ImportError:
    from tests.slurm_cluster import SlurmCluster, slurm_cluster  # noqa: F401

pytestmark = pytest.mark.slurm


def _timing(what: str, seconds: float) -> None:
    print(f"[timing] {what}: {seconds:.2f} s")


@pytest.fixture(autouse=True)
def _wall_time(request):
    t0 = time.monotonic()
    yield
    _timing(f"test {request.node.name} wall", time.monotonic() - t0)


def _wait_running(cluster: SlurmCluster, job_id: str, t_submit: float, timeout: float = 30) -> float:
    """Poll squeue until the job runs (or has already finished); returns submit -> RUNNING seconds."""
    deadline = time.monotonic() + timeout
    while True:
        st = cluster.squeue_state(job_id)
        if st in ("RUNNING", "COMPLETING", "") or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert st in ("RUNNING", "COMPLETING", ""), f"job {job_id} still {st} after {timeout} s"
    return time.monotonic() - t_submit


def _wait_for(pred, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(poll)


# ---------------------------------------------------------------------------------------------
# plain slurm


def test_cluster_is_up(slurm_cluster: SlurmCluster):
    _timing("cluster start (fixture; ~0.1 s when already running)", slurm_cluster.start_s)
    assert slurm_cluster.slurm_conf.is_file()
    assert os.environ["SLURM_CONF"] == str(slurm_cluster.slurm_conf)
    out = slurm_cluster.run("sinfo -h -o %P|%a|%T").stdout.split()
    parts = {line.split("|")[0]: line.split("|") for line in out}
    assert "debug*" in parts, out  # the default partition
    assert "long" in parts, out
    assert parts["debug*"][1] == "up" and parts["debug*"][2] in ("idle", "mixed", "allocated"), out
    assert slurm_cluster.run("sacctmgr -n -P list cluster format=cluster").stdout.split() == ["swinctl"]


def test_sbatch_completes_and_sacct_reports_it(slurm_cluster: SlurmCluster, tmp_path: Path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\necho hello from $SLURM_JOB_ID on $(hostname)\nsleep 1\n")
    t0 = time.monotonic()
    job_id = slurm_cluster.sbatch("--job-name=trivial", f"--output={tmp_path}/out.%j", str(script), cwd=tmp_path)
    _timing("sbatch submit -> RUNNING", _wait_running(slurm_cluster, job_id, t0))
    assert slurm_cluster.wait_state(job_id, timeout=30) == "COMPLETED"
    _timing("sbatch submit -> COMPLETED in sacct (1 s job)", time.monotonic() - t0)
    assert (tmp_path / f"out.{job_id}").read_text().startswith(f"hello from {job_id} on ")
    lines = slurm_cluster.run(["sacct", "-n", "-P", "-j", job_id, "-o", "JobID,State,ExitCode"]).stdout.split()
    assert f"{job_id}|COMPLETED|0:0" in lines
    assert f"{job_id}.batch|COMPLETED|0:0" in lines


def test_several_small_jobs_run_at_once(slurm_cluster: SlurmCluster, tmp_path: Path):
    """The 2-core node is declared with more CPUs (config_overrides), so 4 one-CPU jobs overlap."""
    t0 = time.monotonic()
    ids = [
        slurm_cluster.sbatch(f"--output={tmp_path}/o.%j", "--cpus-per-task=1", "--wrap", "sleep 4", cwd=tmp_path)
        for _ in range(4)
    ]
    _wait_for(lambda: all(slurm_cluster.squeue_state(j) == "RUNNING" for j in ids), 15, "4 jobs running together")
    _timing("4 jobs submitted -> all RUNNING together", time.monotonic() - t0)
    for j in ids:
        assert slurm_cluster.wait_state(j, timeout=30) == "COMPLETED"


def test_fake_gpus_are_schedulable(slurm_cluster: SlurmCluster, tmp_path: Path):
    """Jobs that ask for GPUs (as swinctl's submissions do) are scheduled on the fake gpu GRES."""
    gres = slurm_cluster.run("sinfo -h -o %G").stdout.strip()
    if "gpu" not in gres:
        pytest.skip(f"cluster started with SWINCTL_SLURM_GPUS=0 (node GRES: {gres or 'none'})")
    job_id = slurm_cluster.sbatch(
        f"--output={tmp_path}/gpu.out", "--gpus-per-node=2", "--wrap", "echo CVD=$CUDA_VISIBLE_DEVICES", cwd=tmp_path
    )
    assert slurm_cluster.wait_state(job_id, timeout=30) == "COMPLETED"
    assert (tmp_path / "gpu.out").read_text().strip() == "CVD=0,1"


def test_scancel_gives_cancelled_promptly(slurm_cluster: SlurmCluster, tmp_path: Path):
    job_id = slurm_cluster.sbatch(f"--output={tmp_path}/o.%j", "--wrap", "sleep 300", cwd=tmp_path)
    slurm_cluster.wait_state(job_id, "RUNNING", source="squeue", timeout=30)
    t0 = time.monotonic()
    slurm_cluster.run(["scancel", job_id])
    assert slurm_cluster.wait_state(job_id, "CANCELLED", timeout=20) == "CANCELLED"
    _timing("sbatch scancel -> CANCELLED in sacct", time.monotonic() - t0)


@pytest.mark.slow
def test_time_limit_gives_timeout(slurm_cluster: SlurmCluster, tmp_path: Path):
    """A 1-minute limit. slurmctld checks time limits every 30 s (hard-coded), so TIMEOUT lands
    60-90 s after the start (OverTimeLimit=0, KillWait=5)."""
    t0 = time.monotonic()
    job_id = slurm_cluster.sbatch(
        "--time=1",
        f"--output={tmp_path}/o.%j",
        "--wrap",
        'trap "echo got SIGTERM; exit 143" TERM; sleep 600 & wait',
        cwd=tmp_path,
    )
    slurm_cluster.wait_state(job_id, "RUNNING", source="squeue", timeout=30)
    t_run = time.monotonic()
    assert slurm_cluster.wait_state(job_id, timeout=150, poll=1) == "TIMEOUT"
    _timing("1-minute limit: RUNNING -> TIMEOUT in sacct", time.monotonic() - t_run)
    out = (tmp_path / f"o.{job_id}").read_text()
    assert "DUE TO TIME LIMIT" in out and "got SIGTERM" in out, out
    assert time.monotonic() - t0 < 150


# ---------------------------------------------------------------------------------------------
# submitit on the cluster

try:
    import cloudpickle  # submitit's dependency
    import submitit
except ImportError:  # e.g. the system python before the project venv exists
    submitit = None

needs_submitit = pytest.mark.skipif(submitit is None, reason="submitit is not installed in this python")

if submitit is not None:
    # Job functions below are pickled by value, so the job's python need not import this test
    # module (whose import path depends on how pytest was started).
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

    def _add(a: int, b: int) -> int:
        return a + b

    def _sleep(seconds: float) -> str:
        time.sleep(seconds)
        return "slept"

    def _whoami() -> dict:
        env = submitit.JobEnvironment()
        return {
            "procid": int(os.environ["SLURM_PROCID"]),
            "ntasks": int(os.environ["SLURM_NTASKS"]),
            "global_rank": env.global_rank,
            "local_rank": env.local_rank,
            "job_id": env.job_id,
        }

    class _Resumable(submitit.helpers.Checkpointable):
        """Sleeps on its first run; a requeued run returns at once. ``checkpoint()`` (called by
        submitit on USR2 only) records in the pickled state that it ran."""

        def __init__(self, marker_dir: str) -> None:
            self.marker_dir = marker_dir
            self.checkpointed = 0

        def __call__(self) -> dict:
            restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
            Path(self.marker_dir, f"start-{restarts}").write_text(os.environ["SLURM_JOB_ID"])
            if restarts == 0 and not self.checkpointed:
                time.sleep(300)
            return {"restarts": restarts, "checkpointed": self.checkpointed, "job_id": os.environ["SLURM_JOB_ID"]}

        def checkpoint(self, *args, **kwargs):
            self.checkpointed += 1
            return super().checkpoint(*args, **kwargs)


def _executor(folder: Path, **params):
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    ex.update_parameters(timeout_min=5, slurm_partition="debug", cpus_per_task=1, **params)
    return ex


def _final_state(job, timeout: float = 20) -> str:
    """submitit's cached state lags (the result pickle is written before the step ends, and the
    watcher polls sacct at growing intervals): force sacct until a terminal state shows."""
    return _wait_for(
        lambda: (
            (s := job.get_info(mode="force").get("State", "")) not in ("", "RUNNING", "COMPLETING", "PENDING") and s
        ),
        timeout,
        f"submitit job {job.job_id} final state",
        poll=0.3,
    )


@needs_submitit
def test_submitit_function_result_and_state(slurm_cluster: SlurmCluster, tmp_path: Path):
    ex = _executor(tmp_path / "submitit")
    t0 = time.monotonic()
    job = ex.submit(_add, 2, 3)
    _timing("submitit submit() call", time.monotonic() - t0)
    _timing("submitit submit -> RUNNING", _wait_running(slurm_cluster, job.job_id, t0))
    assert job.result() == 5
    _timing("submitit submit -> result()", time.monotonic() - t0)
    assert _final_state(job) == "COMPLETED"
    assert job.state == "COMPLETED"
    assert job.done()
    _timing("submitit submit -> COMPLETED", time.monotonic() - t0)


@needs_submitit
def test_slurm_executor_directly(slurm_cluster: SlurmCluster, tmp_path: Path):
    ex = submitit.SlurmExecutor(folder=tmp_path / "submitit")
    ex.update_parameters(time=5, partition="debug", cpus_per_task=1, ntasks_per_node=1)
    job = ex.submit(_add, 40, 2)
    assert job.result() == 42
    assert _final_state(job) == "COMPLETED"


@needs_submitit
def test_submitit_cancel_does_not_hang_wait(slurm_cluster: SlurmCluster, tmp_path: Path):
    ex = _executor(tmp_path / "submitit")
    job = ex.submit(_sleep, 300)
    slurm_cluster.wait_state(job.job_id, "RUNNING", source="squeue", timeout=30)
    t0 = time.monotonic()
    job.cancel()
    waited = threading.Event()
    t = threading.Thread(target=lambda: (job.wait(), waited.set()), daemon=True)
    t.start()
    t.join(60)
    assert waited.is_set(), "job.wait() still blocked 60 s after scancel"
    _timing("submitit cancel -> wait() returns", time.monotonic() - t0)
    assert job.state.startswith("CANCELLED"), job.state  # sacct says "CANCELLED by 0"
    assert slurm_cluster.state(job.job_id) == "CANCELLED"


@needs_submitit
def test_submitit_two_tasks(slurm_cluster: SlurmCluster, tmp_path: Path):
    ex = _executor(tmp_path / "submitit", tasks_per_node=2, nodes=1)
    t0 = time.monotonic()
    job = ex.submit(_whoami)
    results = job.results()
    _timing("2-task submitit job submit -> results()", time.monotonic() - t0)
    assert sorted(r["procid"] for r in results) == [0, 1]
    assert sorted(r["global_rank"] for r in results) == [0, 1]
    assert {r["ntasks"] for r in results} == {2}
    assert {r["job_id"] for r in results} == {job.job_id}
    assert _final_state(job) == "COMPLETED"


@needs_submitit
def test_scontrol_requeue_of_checkpointable_submitit_job(slurm_cluster: SlurmCluster, tmp_path: Path):
    """`scontrol requeue` of a running job: Slurm SIGTERMs it (submitit ignores SIGTERM), SIGKILLs
    it after KillWait, puts it back PENDING with the same id (BeginTime = now + cred_expire + 1,
    so ~11 s here instead of 120 s) and reruns it with SLURM_RESTART_COUNT=1. submitit's
    checkpoint() is *not* called on this path (it only reacts to USR2): the job reruns from the
    originally submitted pickle."""
    markers = tmp_path / "markers"
    markers.mkdir()
    ex = _executor(tmp_path / "submitit")
    job = ex.submit(_Resumable(str(markers)))
    _wait_for(lambda: (markers / "start-0").exists(), 30, "first run started")
    t0 = time.monotonic()
    slurm_cluster.run(["scontrol", "requeue", job.job_id])
    fields = _wait_for(
        lambda: (f := slurm_cluster.scontrol_job(job.job_id))["JobState"] == "PENDING" and f,
        30,
        "requeued job back to PENDING",
    )
    assert fields["Restarts"] == "1", fields
    _timing("scontrol requeue -> PENDING", time.monotonic() - t0)
    res = job.result()
    _timing("scontrol requeue -> result() of the rerun", time.monotonic() - t0)
    assert res == {"restarts": 1, "checkpointed": 0, "job_id": job.job_id}
    assert (markers / "start-1").read_text() == job.job_id  # same job id after the requeue
    assert _final_state(job) == "COMPLETED"
    history = slurm_cluster.run(["sacct", "-n", "-P", "-D", "-X", "-j", job.job_id, "-o", "State"]).stdout.split()
    assert history[0] == "REQUEUED" and history[-1] == "COMPLETED", history


@needs_submitit
def test_submitit_preemption_signal_checkpoints_and_requeues(slurm_cluster: SlurmCluster, tmp_path: Path):
    """What a real preemption or an approaching time limit does to a submitit job: SIGTERM then
    USR2 (sbatch --signal=USR2@90). submitit's handler calls checkpoint(), dumps the new state
    and runs `scontrol requeue` itself from inside the job; the rerun resumes the checkpointed
    object under the same job id."""
    markers = tmp_path / "markers"
    markers.mkdir()
    ex = _executor(tmp_path / "submitit")
    job = ex.submit(_Resumable(str(markers)))
    _wait_for(lambda: (markers / "start-0").exists(), 30, "first run started")
    time.sleep(1)  # let submitit install its signal handlers after writing the marker
    t0 = time.monotonic()
    job._interrupt()  # scancel --signal SIGTERM, then --signal USR2 (submitit's own test hook)
    res = job.result()
    _timing("USR2 preemption -> result() of the resumed run", time.monotonic() - t0)
    assert res == {"restarts": 1, "checkpointed": 1, "job_id": job.job_id}
    assert _final_state(job) == "COMPLETED"
    stdout = job.stdout() or ""
    assert "Calling checkpoint method" in (job.stderr() or "") + stdout
