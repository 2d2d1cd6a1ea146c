"""A runs root on a full disk (issue 22, part 2): a real 30 MB tmpfs, filled with a dummy file.

The cause is said as itself -- `no space left on device while writing PATH` -- by the ledger (never "cannot
rollback - no transaction is active"), by the job in its state file where it can, and by the submit host from the
job's last words where it cannot (never "killed?"). The ledger stays intact; once space is back everything works.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from swinctl.job import files as jobstate
from swinctl.runs.ledger import Ledger, RunRecord

try:
    from polling import wait_for
except ImportError:  # pragma: no cover  (run from outside tests/)
    from tests.polling import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount a tmpfs")


@pytest.fixture
def disk(tmp_path):
    """A 30 MB tmpfs, unmounted (lazily, should a job still hold a file there) whatever the test did."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill `disk` with a dummy file up to `leave` bytes free (0: until the write fails)."""
    dummy = disk / "dummy"
    chunk = b"\0" * (1 << 20)
    with dummy.open("wb") as out:
        try:
            while True:
                free = shutil.disk_usage(disk).free
                if free <= leave:
                    break
                out.write(chunk[: min(len(chunk), free - leave)])
                out.flush()
        except OSError:
            pass
    return dummy


def _add(root: Path, name: str, state: str, job_id: str | None = None) -> RunRecord:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    return Ledger(root).add(RunRecord(id=name, kind="train", recipe="upernet-swin-t", codebase="mmseg",
                                      overrides=[], signature="s", executor="local", job_id=job_id, state=state,
                                      smoke=True, run_dir=run_dir, work_dir=run_dir / "work_dir", gpus=0))


def _one_error(result, path: Path) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "rollback" not in result.output, result.output
    assert result.stderr.count("error:") == 1, result.stderr
    assert f"no space left on device while writing {path}" in " ".join(result.stderr.split()), result.stderr


def _intact(root: Path) -> None:
    with sqlite3.connect(root / "ledger.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert not (root / "ledger.sqlite-journal").exists()


def test_a_ledger_write_on_a_full_disk_is_one_error_naming_it(cli, disk, monkeypatch):
    root = disk / "runs"
    Ledger(root)
    monkeypatch.setenv("SWINCTL_RUNS", str(root))
    dummy = fill(disk)

    _one_error(cli("run", "upernet-swin-t", "--smoke", "--executor", "local"), root / "ledger.sqlite")
    _intact(root)

    dummy.unlink()
    assert Ledger(root).list_runs() == []
    assert cli("status", "--all").exit_code == 0 and cli("report").exit_code == 0


def test_folding_on_a_full_disk_is_one_error_and_works_once_space_is_back(cli, disk, monkeypatch):
    """`status` must write the job's end into the ledger; on a full disk it says why, and the run is untouched."""
    root = disk / "runs"
    run = _add(root, "run", "RUNNING", job_id="999999999")
    (run.run_dir / jobstate.STATE_FILE).write_text(json.dumps({"state": "COMPLETED", "metrics": {"mIoU": 40.0}}))
    monkeypatch.setenv("SWINCTL_RUNS", str(root))
    dummy = fill(disk)

    _one_error(cli("status"), root / "ledger.sqlite")
    _intact(root)
    assert Ledger(root).get("run").state == "RUNNING"

    dummy.unlink()
    result = cli("status", "--all", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["state"] == "COMPLETED" and row["metrics"] == {"mIoU": 40.0}


def test_a_job_that_could_not_write_its_end_is_explained_not_killed(cli, disk, monkeypatch):
    """The job's process group is gone and its state says RUNNING: its stderr's last words name the full disk."""
    root = disk / "runs"
    proc = subprocess.Popen(["true"], start_new_session=True)
    proc.wait()
    run = _add(root, "run", "RUNNING", job_id=str(proc.pid))
    (run.run_dir / jobstate.STATE_FILE).write_text(json.dumps({"state": "RUNNING", "job_id": str(proc.pid)}))
    (run.run_dir / "submitit").mkdir()
    (run.run_dir / "submitit" / f"{proc.pid}_0_log.err").write_text(
        "Traceback (most recent call last):\n  ...\nOSError: [Errno 28] No space left on device\n"
        f"swinctl job: no space left on device while writing {run.run_dir / jobstate.STATE_FILE}\n")
    monkeypatch.setenv("SWINCTL_RUNS", str(root))

    result = cli("status", "--all", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["state"] == "FAILED" and "killed?" not in row["error"]
    assert row["error"].startswith("the job could not record its end: no space left on device while writing "
                                   f"{run.run_dir / jobstate.STATE_FILE}")


def test_a_job_state_write_uses_its_reserve_on_a_full_disk(disk):
    run_dir = disk / "run"
    run_dir.mkdir()
    jobstate.reserve_space(run_dir)
    fill(disk)
    with pytest.raises(OSError):
        (run_dir / "more").write_bytes(b"\0" * 8192)
    jobstate.update_state(run_dir, state="FAILED", error="x" * 3000)
    assert jobstate.load_state(run_dir).state == "FAILED" and not (run_dir / jobstate.RESERVE_FILE).exists()
    with pytest.raises(jobstate.NoSpaceError, match=f"no space left on device while writing {run_dir}"):
        jobstate.update_state(run_dir, error="y" * 200_000)


@pytest.mark.slow
def test_a_training_that_fills_the_disk(disk, tmp_path):
    """A real smoke run with 2 MB free: its first checkpoint does not fit. `run --wait` ends with the cause (one
    `error:` line if the ledger could not be written then, else the FAILED outcome), never a rollback error; once
    space is back `status` says "no space left on device while writing ..." and `report` works."""
    root = disk / "runs"
    Ledger(root)
    dummy = fill(disk, leave=2 * 1024 * 1024)
    env = dict(os.environ, COLUMNS="200", PYTHONPATH=os.environ.get("PYTHONPATH", str(Path(__file__).parents[1])))
    swinctl = [str(Path(sys.executable)), "-m", "swinctl.cli"]
    done = subprocess.run([*swinctl, "run", "upernet-swin-t", "--smoke", "--executor", "local", "--wandb",
                           "disabled", "--wait", "--runs-root", str(root)], capture_output=True, text=True, env=env,
                          timeout=600)
    out = done.stdout + done.stderr
    assert "rollback" not in out and "Traceback" not in out, out
    assert done.returncode in (1, 2), out
    if done.returncode == 2:
        assert done.stderr.count("error:") == 1 and "no space left on device while writing" in done.stderr, out
    [record] = Ledger(root).list_runs()

    from swinctl.backends.local import group_alive

    wait_for(lambda: not group_alive(int(record.job_id)), 300, "the job to end")
    dummy.unlink()
    status = subprocess.run([*swinctl, "status", "--all", "--json", "--runs-root", str(root)], capture_output=True,
                            text=True, env=env, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    [row] = json.loads(status.stdout)
    assert row["state"] == "FAILED" and "killed?" not in row["error"], row["error"]
    assert "no space left on device while writing" in row["error"].splitlines()[0], row["error"]
    report = subprocess.run([*swinctl, "report", "--runs-root", str(root)], capture_output=True, text=True, env=env,
                            timeout=120)
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stdout + report.stderr
    _intact(root)
