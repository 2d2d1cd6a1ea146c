"""What a job and the submit host tell each other, as small files in the run's own directory.

A job never opens the ledger: SQLite's locking does not hold across hosts or over NFS/Lustre/GPFS, and a
100-task array would be 100 nodes writing one file. Instead the job writes its life into its run directory --
`job_state.json` (its latest state, replaced atomically: write a temporary file, then rename) and `job_events.jsonl`
(one JSON line per event, appended) -- and the process on the submit host that looks (`status`, `run --wait`,
`report`, `sweep`) folds them into the ledger, of which it is the only writer (:mod:`swinctl.sync`).

The submit host talks back through one file: `cancel_requested`, which a local sweep runner reads before it starts
a point. Only the standard library here: jobs import this module.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

STATE_FILE = "job_state.json"
EVENTS_FILE = "job_events.jsonl"
CANCEL_FILE = "cancel_requested"
# Run states as SLURM names them; every backend maps onto them, and jobs and the ledger both use these.
ACTIVE_STATES = ("PENDING", "RUNNING", "REQUEUED")
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
# The training process exits with this code when it stopped at a scheduler's signal after saving a checkpoint:
# EX_TEMPFAIL, "try again later", which is what a requeue is.
EXIT_CHECKPOINTED = 75


@dataclass(frozen=True)
class JobState:
    """The job's own word on a run (only what the job knows; the ledger holds the rest)."""

    state: str = "PENDING"  # RUNNING | REQUEUED | COMPLETED | FAILED (the ledger's names)
    job_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    elapsed_s: float | None = None
    requeues: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    host: str | None = None
    updated_at: float = 0.0


@dataclass(frozen=True)
class JobEvent:
    at: float
    kind: str
    detail: str = ""


def _write_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one (rename is atomic on POSIX and NFS)."""
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state(run_dir: Path) -> JobState | None:
    """The job's last written state, or None before it wrote one (or if the file cannot be read)."""
    try:
        data = json.loads((Path(run_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    known = {f.name for f in fields(JobState)}
    return JobState(**{k: v for k, v in data.items() if k in known}) if isinstance(data, dict) else None


def write_state(run_dir: Path, state: JobState) -> JobState:
    state = JobState(**{**asdict(state), "updated_at": time.time()})
    _write_atomic(Path(run_dir) / STATE_FILE, json.dumps(asdict(state), default=str))
    return state


def update_state(run_dir: Path, **changes) -> JobState:
    """Change some fields of the job's state (the job is the only writer of this file)."""
    current = read_state(run_dir) or JobState()
    return write_state(run_dir, JobState(**{**asdict(current), **changes}))


def add_event(run_dir: Path, kind: str, detail: str = "") -> None:
    """Append one event line (O_APPEND: whole lines, in order, even with a reader tailing the file)."""
    line = json.dumps(asdict(JobEvent(time.time(), kind, detail))) + "\n"
    fd = os.open(Path(run_dir) / EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_events(run_dir: Path, start: int = 0) -> list[JobEvent]:
    """Events from line `start` on; a last line still being written (no newline yet) is left for next time."""
    try:
        text = (Path(run_dir) / EVENTS_FILE).read_text(errors="replace")
    except OSError:
        return []
    lines = text.split("\n")[:-1]  # whole lines only
    out = []
    for line in lines[start:]:
        try:
            data = json.loads(line)
            out.append(JobEvent(float(data["at"]), str(data["kind"]), str(data.get("detail", ""))))
        except (ValueError, KeyError, TypeError):
            out.append(JobEvent(time.time(), "unreadable", line[:200]))  # keeps line numbering
    return out


def request_cancel(run_dir: Path) -> None:
    try:
        (Path(run_dir) / CANCEL_FILE).touch()
    except OSError:
        pass  # a run dir that is gone has nothing left to start


def cancel_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / CANCEL_FILE).exists()
