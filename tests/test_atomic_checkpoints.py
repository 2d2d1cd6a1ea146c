"""Checkpoints are never partial under their names (issue 22): a job killed mid-save, or a disk filling up mid-save,
leaves at most a temporary file, the earlier checkpoints load, and a restarted run resumes from the last whole one.

The fast tests drive MMEngine's own save path (`mmengine.runner.save_checkpoint`, CheckpointHook's `last_checkpoint`
write) in this process and in a child; the slow ones run real training through the CLI on the local executor and
stop it with SWINCTL_TEST_STOP_IN_SAVE halfway through writing a checkpoint (SIGSTOP: deterministic, no timing),
then kill its process group or fill its tmpfs. Nothing is mocked.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.hooks import checkpoint_hook
from mmengine.runner import save_checkpoint
from typer.testing import CliRunner

import swinctl.models  # noqa: F401  (installs the atomic saves, as every job's custom_imports does)
from swinctl.backends import local
from swinctl.cli import app
from swinctl.job import checkpoints as checkpoint_files
from swinctl.job import files as jobstate
from swinctl.models import safe_load
from swinctl.runs.ledger import Ledger

try:
    from polling import wait_for
except ImportError:  # pragma: no cover  (run from outside tests/)
    from tests.polling import wait_for

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs of its own (`size` MiB): a disk that fills up for real."""
    mounted = []

    def mount(size_mb: int) -> Path:
        path = tmp_path / f"tmpfs{len(mounted)}"
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _state(size_kb: int) -> dict:
    return {"state_dict": {"w": torch.arange(size_kb * 256, dtype=torch.float32)}, "meta": {"iter": size_kb}}


def _temps(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def _fill(directory: Path, leave: int) -> Path:
    """Fill the file system of `directory` up to `leave` bytes free."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * (1 << 16))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_mmengine_save_checkpoint_lands_whole_and_leaves_no_temporary_file(tmp_path):
    save_checkpoint(_state(64), str(tmp_path / "iter_1.pth"))
    assert checkpoint_files.is_whole(tmp_path / "iter_1.pth") and _temps(tmp_path) == []
    assert torch.equal(safe_load.load(tmp_path / "iter_1.pth")["state_dict"]["w"], _state(64)["state_dict"]["w"])


def test_a_full_disk_during_a_save_leaves_the_earlier_checkpoint_and_no_partial_file(tmpfs):
    disk = tmpfs(2)
    save_checkpoint(_state(1024), str(disk / "iter_1.pth"))  # 1 MiB of 2
    save_checkpoint(_state(16), str(disk / "iter_2.pth"))
    with pytest.raises(OSError) as failed:
        save_checkpoint(_state(4096), str(disk / "iter_2.pth"))  # 4 MiB: the disk fills up mid-write
    assert failed.value.errno == errno.ENOSPC and "No space left on device" in str(failed.value)
    assert "iter_2.pth" in str(failed.value)
    assert _temps(disk) == []
    assert sorted(p.name for p in disk.iterdir()) == ["iter_1.pth", "iter_2.pth"]
    assert safe_load.load(disk / "iter_2.pth")["meta"] == {"iter": 16}  # the previous content, whole
    assert safe_load.load(disk / "iter_1.pth")["meta"] == {"iter": 1024}


def test_checkpoint_hooks_last_checkpoint_write_is_atomic(tmp_path):
    last = tmp_path / "last_checkpoint"
    last.write_text("/old/iter_1.pth")
    with checkpoint_hook.open(str(last), "w") as f:  # what CheckpointHook runs, in its module
        f.write("/new/iter_2.pth")
        assert last.read_text() == "/old/iter_1.pth"  # nothing under the name until the write is complete
    assert last.read_text() == "/new/iter_2.pth" and _temps(tmp_path) == []
    with pytest.raises(RuntimeError), checkpoint_hook.open(str(last), "w") as f:
        f.write("/half")
        raise RuntimeError("killed mid-write")
    assert last.read_text() == "/new/iter_2.pth"


def test_a_process_killed_mid_save_leaves_only_a_temporary_file(tmp_path):
    save_checkpoint(_state(64), str(tmp_path / "iter_2.pth"))
    code = ("import sys, torch, swinctl.models\nfrom mmengine.runner import save_checkpoint\n"
            "save_checkpoint({'w': torch.zeros(1 << 20)}, sys.argv[1])\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "iter_2.pth")], cwd=REPO,
                             env={**os.environ, checkpoint_files.STOP_IN_SAVE: "iter_2.pth"})
    try:
        wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T", 120,
                 "the child to stop halfway through its save")
        assert _temps(tmp_path) == [f"iter_2.pth.tmp-{child.pid}"]
    finally:
        child.kill()
        child.wait()
    assert safe_load.load(tmp_path / "iter_2.pth")["meta"] == {"iter": 64}
    assert not checkpoint_files.is_whole(tmp_path / f"iter_2.pth.tmp-{child.pid}")


def test_recover_removes_temporary_and_partial_files_and_points_at_the_newest_whole_checkpoint(tmp_path):
    save_checkpoint(_state(64), str(tmp_path / "iter_2.pth"))
    save_checkpoint(_state(64), str(tmp_path / "best_mIoU_iter_2.pth"))
    whole = (tmp_path / "iter_2.pth").read_bytes()
    (tmp_path / "iter_4.pth").write_bytes(whole[: len(whole) // 2])  # what a save under the final name left
    (tmp_path / "iter_6.pth.tmp-4242").write_bytes(whole[:100])
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_4.pth"))
    said = checkpoint_files.recover(tmp_path)
    assert said == ["removed 1 unfinished save(s): iter_6.pth.tmp-4242",
                    f"removed iter_4.pth, a partial checkpoint ({len(whole) // 2:,} bytes) an interrupted save left",
                    "last_checkpoint named iter_4.pth: resuming from iter_2.pth, the newest whole checkpoint"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best_mIoU_iter_2.pth", "iter_2.pth", "last_checkpoint"]
    assert (tmp_path / "last_checkpoint").read_text() == str(tmp_path / "iter_2.pth")
    assert checkpoint_files.recover(tmp_path) == []  # a second task of the job finds it done


def test_recover_with_no_whole_checkpoint_left_starts_over(tmp_path):
    (tmp_path / "iter_2.pth").write_bytes(b"")  # the 0-byte file of issue 22
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_2.pth"))
    assert checkpoint_files.recover(tmp_path)[-1] == "no whole checkpoint left: training starts over"
    assert list(tmp_path.iterdir()) == []


# --- real training, killed or starved of disk halfway through writing a checkpoint ------------------------------

TRAIN = ["upernet-swin-t", "--smoke", "--executor", "local", "--wandb", "disabled", "--set", "schedule.max_iters=6",
         "--set", "schedule.checkpoint_interval=2", "--set", "schedule.val_interval=100"]


def _invoke(root: Path, *args, **env):
    return CliRunner().invoke(app, [str(a) for a in args], env={**os.environ, "SWINCTL_RUNS": str(root),
                                                               "COLUMNS": "200", **env})


def _stopped_in_save(work_dir: Path, name: str) -> int | None:
    """The pid of the training process once it has stopped halfway through writing `name`."""
    for temp in work_dir.glob(f"{name}.tmp-*") if work_dir.is_dir() else ():
        pid = int(temp.name.rsplit("-", 1)[1])
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
                return pid
        except OSError:
            pass
    return None


def _checkpoints_all_load(work_dir: Path) -> list[str]:
    names = sorted(p.name for p in work_dir.glob("*.pth"))
    for name in names:
        safe_load.load(work_dir / name)  # raises on a partial file
    return names


def _started_and_stopped_in_save(root: Path, name: str):
    result = _invoke(root, "run", *TRAIN, **{checkpoint_files.STOP_IN_SAVE: name})
    assert result.exit_code == 0, result.output
    [record] = Ledger(root).list_runs()
    pid = wait_for(lambda: _stopped_in_save(record.work_dir, name), 900, f"training to stop while saving {name}")
    return record, pid


@pytest.mark.slow
def test_kill_9_of_the_job_mid_save_leaves_whole_checkpoints_and_a_restart_resumes_from_the_last_one(tmp_path):
    root = tmp_path / "runs"
    record, pid = _started_and_stopped_in_save(root, "iter_4.pth")
    work_dir, pgid = record.work_dir, int(record.job_id)
    try:
        assert (work_dir / "last_checkpoint").read_text().strip() == str(work_dir / "iter_2.pth")
        os.killpg(pgid, signal.SIGKILL)
        wait_for(lambda: not local.group_alive(pgid), 60, "every process of the job to end")
    finally:
        if local.group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
    assert _checkpoints_all_load(work_dir) == ["iter_2.pth"]
    assert _temps(work_dir) == [f"iter_4.pth.tmp-{pid}"]
    # What swinctl before this change left at that point: the half-written file under its name, named as the last.
    (work_dir / "iter_4.pth").write_bytes((work_dir / f"iter_4.pth.tmp-{pid}").read_bytes())
    (work_dir / "last_checkpoint").write_text(str(work_dir / "iter_4.pth"))

    [submitted] = record.run_dir.glob("submitit/*_submitted.pkl")
    spec = pickle.loads(submitted.read_bytes()).function.spec
    restarted = local.start(spec)  # the job again, as a requeue starts it: it resumes from what it finds
    try:
        done = wait_for(lambda: (s := jobstate.read_state(record.run_dir)) and s.state in jobstate.FINAL_STATES
                        and s.job_id == str(restarted.job_id) and s, 900, "the restarted run to end")
    finally:
        if local.group_alive(int(restarted.job_id)):
            os.killpg(int(restarted.job_id), signal.SIGKILL)
    assert done.state == "COMPLETED", done.error
    events = [(e.kind, e.detail) for e in jobstate.read_events(record.run_dir)]
    assert ("checkpoint", f"removed 1 unfinished save(s): iter_4.pth.tmp-{pid}") in events
    assert ("checkpoint", "last_checkpoint named iter_4.pth: resuming from iter_2.pth, the newest whole "
                          "checkpoint") in events
    assert ("resume", "from iter_2.pth") in events
    assert _checkpoints_all_load(work_dir) == ["iter_2.pth", "iter_4.pth", "iter_6.pth"]
    assert _temps(work_dir) == []
    assert safe_load.load(work_dir / "iter_6.pth")["meta"]["iter"] == 6
    log = "\n".join(p.read_text() for p in work_dir.glob("*/*.log"))
    assert "Auto resumed from the latest checkpoint" in log and "resumed epoch: 0, iter: 2" in log


@pytest.mark.slow
def test_a_full_disk_mid_save_fails_the_run_saying_so_and_leaves_the_earlier_checkpoint_whole(tmpfs):
    root = tmpfs(200) / "runs"
    record, pid = _started_and_stopped_in_save(root, "iter_4.pth")
    work_dir, pgid = record.work_dir, int(record.job_id)
    try:
        filler = _fill(root, leave=64 << 10)  # the rest of the checkpoint cannot be written
        os.kill(pid, signal.SIGCONT)
        done = wait_for(lambda: (s := jobstate.read_state(record.run_dir)) and s.state in jobstate.FINAL_STATES
                        and s, 600, "the run to end")
    finally:
        if local.group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
    filler.unlink()
    assert done.state == "FAILED"
    assert "No space left on device" in done.error and "iter_4.pth" in done.error, done.error
    assert _checkpoints_all_load(work_dir) == ["iter_2.pth"]
    assert _temps(work_dir) == []
    assert (work_dir / "last_checkpoint").read_text().strip() == str(work_dir / "iter_2.pth")
