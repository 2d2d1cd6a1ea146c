"""Checkpoint files a crash cannot leave half written, and what a restarted job does with what an older one left.

A job's checkpoints (periodic, best, at the signal) and `last_checkpoint` are written under a temporary name in the
same directory -- ``<name>.tmp-<pid>``, which no ``*.pth`` glob matches -- flushed, fsynced and renamed
(swinctl.models.atomic_save routes MMEngine's writes here). A kill or a full disk mid-save leaves at most a
temporary file; the name it was saving keeps its previous content, and `last_checkpoint` names the last whole one.

`recover` runs before a training job starts: it removes leftover temporary files and, where `last_checkpoint` names
a file that is missing or not a whole checkpoint (what runs before this change could leave), removes that file and
points `last_checkpoint` at the newest whole checkpoint, so the run resumes there. Only the standard library here:
jobs import this module.
"""

from __future__ import annotations

import os
import re
import signal
import zipfile
from pathlib import Path

LAST = "last_checkpoint"  # MMEngine's file naming the newest checkpoint
# The job sets this in training's environment to turn SignalCheckpointHook on (swinctl.models.preemption).
SIGNAL_CHECKPOINT_ENV = "SWINCTL_SIGNAL_CHECKPOINT"
# In the work dir: the checkpoint saved at the last signal (written by the hook, read by the job).
SIGNAL_MARK = ".signal_checkpoint"
_TEMP = re.compile(r".+\.tmp-\d+")
_STEP = re.compile(r"(?:iter|epoch)_\d+\.pth")  # what MMEngine and SignalCheckpointHook resume from (not best_*)
# Tests: stop this process (SIGSTOP) halfway through writing the file of this name, so a test can kill it or fill
# the disk at that exact point; nothing reads it outside tests.
STOP_IN_SAVE = "SWINCTL_TEST_STOP_IN_SAVE"


def temp_name(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a temporary name beside `path`, fsync, rename: `path` is the old file or the new one, whole.

    On any error (ENOSPC included) the temporary file is removed and the error raised, naming the file."""
    path = Path(path)
    tmp = temp_name(path)
    stop = os.environ.get(STOP_IN_SAVE) == path.name
    try:
        with open(tmp, "wb") as out:
            half = len(data) // 2 if stop else len(data)
            out.write(data[:half])
            if stop:
                out.flush()
                os.fsync(out.fileno())
                os.kill(os.getpid(), signal.SIGSTOP)
            out.write(data[half:])
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, f"{exc.strerror}: could not write {path} (its previous content, if any, is "
                                     "kept)") from exc
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (a crash after it must not bring back the old name)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory
    finally:
        os.close(fd)


def is_whole(path: str | os.PathLike) -> bool:
    """Whether `path` is a complete torch checkpoint: a zip archive whose directory is there (a truncated file lacks
    it) with a pickle in it, and whose every member matches its CRC (reads the file once)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return (any(name.endswith("/data.pkl") for name in archive.namelist())
                    and archive.testzip() is None)
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def named(work_dir: Path) -> Path | None:
    """The checkpoint `last_checkpoint` names (None: no such file, or it names nothing)."""
    try:
        text = (work_dir / LAST).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Path(text) if text else None


def recover(work_dir: Path) -> list[str]:
    """Clean up after a job that died mid-save, before its run restarts; what was done, in words (none: nothing).

    Safe to run in every task of a job at once (each step is idempotent, and they all reach the same result)."""
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return []
    said = []
    temps = [p for p in work_dir.iterdir() if _TEMP.fullmatch(p.name) and p.is_file()]
    for temp in temps:
        temp.unlink(missing_ok=True)
    if temps:
        said.append(f"removed {len(temps)} unfinished save(s): {', '.join(sorted(p.name for p in temps))}")
    if not (work_dir / LAST).exists():
        return said
    last = named(work_dir)
    if last is not None and is_whole(last):
        return said
    if last is not None and last.exists():
        size = last.stat().st_size if last.is_file() else 0
        last.unlink(missing_ok=True)
        said.append(f"removed {last.name}, a partial checkpoint ({size:,} bytes) an interrupted save left")
    whole = [p for p in work_dir.iterdir() if _STEP.fullmatch(p.name) and is_whole(p)]
    if not whole:
        (work_dir / LAST).unlink(missing_ok=True)
        said.append("no whole checkpoint left: training starts over")
        return said
    newest = max(whole, key=lambda p: (p.stat().st_mtime, p.name))
    write_atomic(work_dir / LAST, str(newest).encode())
    said.append(f"{LAST} named {last.name if last else 'nothing readable'}: resuming from {newest.name}, the "
                "newest whole checkpoint")
    return said
