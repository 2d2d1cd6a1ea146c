"""What a job and the submit host tell each other, as small files in the run's own directory.

A job never opens the ledger: SQLite's locking does not hold across hosts or over NFS/Lustre/GPFS, and a
100-task array would be 100 nodes writing one file. Instead the job writes its life into its run directory --
`job_state.json` (its latest state, replaced atomically: write a temporary file, then rename) and `job_events.jsonl`
(one JSON line per event, appended) -- and the process on the submit host that looks (`status`, `run --wait`,
`report`, `sweep`) folds them into the ledger, of which it is the only writer (:mod:`swinctl.runs.sync`).

The submit host talks back through one file: `cancel_requested`, which a local sweep runner reads before it starts
a point. Jobs import this module: only the standard library and pydantic (the project's schema library, which
the host checks these files with before folding them in: a job file is input like any other).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError

STATE_FILE = "job_state.json"
EVENTS_FILE = "job_events.jsonl"
CANCEL_FILE = "cancel_requested"


class State(StrEnum):
    """A run's state, named as SLURM names it: every backend maps onto these, and the job, the ledger and every
    view use them (a StrEnum: equal to its name as a string, so job files and ledger rows store plain text)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    REQUEUED = "REQUEUED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"


ACTIVE_STATES = (State.PENDING, State.RUNNING, State.REQUEUED)
FINAL_STATES = (State.COMPLETED, State.FAILED, State.CANCELLED, State.TIMEOUT)
ENDED_EARLY = (State.FAILED, State.CANCELLED, State.TIMEOUT)  # final, without a result
# The training process exits with this code when it stopped at a scheduler's signal after saving a checkpoint:
# EX_TEMPFAIL, "try again later", which is what a requeue is.
EXIT_CHECKPOINTED = 75
# Space the job sets aside when it starts, and gives up to record its end when the disk is full.
RESERVE_FILE = ".job_state.reserve"
RESERVE_BYTES = 64 * 1024
# The most of one job-written text (an error, an event's detail) copied into the ledger.
TEXT_CAP = 4096
NO_SPACE = "no space left on device"


@dataclass(frozen=True)
class JobState:
    """The job's own word on a run (only what the job knows; the ledger holds the rest)."""

    state: str = State.PENDING  # a State (plain text in the file)
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


class JobFileError(ValueError):
    """A job file that exists but is not what a job writes (bad JSON, wrong types, a metric that is no number)."""


class NoSpaceError(OSError):
    """ENOSPC, with the path that could not be written: `no space left on device while writing PATH`."""

    def __init__(self, path: Path | str):
        super().__init__(errno.ENOSPC, f"{NO_SPACE} while writing {path}")
        self.path = str(path)

    def __str__(self) -> str:
        return self.strerror


class _StateFile(BaseModel):
    """The schema of `job_state.json` as the host folds it in (strict: "3" is not a number of requeues)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    state: Literal[*(s.value for s in State)] = "PENDING"
    job_id: str | None = None
    started_at: FiniteFloat | None = None
    finished_at: FiniteFloat | None = None
    elapsed_s: FiniteFloat | None = None
    requeues: int = Field(0, ge=0)
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    error: str | None = None
    host: str | None = None
    updated_at: FiniteFloat = 0.0


class _EventLine(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    at: FiniteFloat
    kind: str = Field(min_length=1, max_length=64)
    detail: str = ""


def _why(error: ValidationError) -> str:
    """A pydantic error in one line: `metrics.mIoU: Input should be a valid number (got 'high')`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "file"
        got = repr(item.get("input"))
        parts.append(f"{where}: {item['msg']}" + (f" (got {got[:40]})" if item["type"] != "missing" else ""))
    return cap("; ".join(parts), 400)


def cap(text: str, limit: int = TEXT_CAP) -> str:
    """`text` cut to about `limit` characters (its start and its end, which hold the cause), saying it was cut."""
    if len(text) <= limit:
        return text
    head, tail = limit // 4, limit - limit // 4
    return f"{text[:head]}\n[... {len(text) - head - tail} characters cut ...]\n{text[-tail:]}"


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


def _no_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _writing(run_dir: Path, path: Path, write) -> None:
    """`write()`; on a full disk, give up the job's reserve (:func:`reserve_space`) and try once more, else raise
    NoSpaceError naming `path`."""
    try:
        return write()
    except OSError as exc:
        if not _no_space(exc):
            raise
    reserve = Path(run_dir) / RESERVE_FILE
    if reserve.exists():
        reserve.unlink(missing_ok=True)
        try:
            return write()
        except OSError as exc:
            if not _no_space(exc):
                raise
    raise NoSpaceError(path) from None


def reserve_space(run_dir: Path) -> None:
    """Set aside a little space in the run dir while there is some, so that a job on a disk that fills up can
    still record why it ended. Best effort: no space now is no reserve."""
    try:
        with open(Path(run_dir) / RESERVE_FILE, "wb") as out:
            out.write(b"\0" * RESERVE_BYTES)
            out.flush()
            os.fsync(out.fileno())
    except OSError:
        Path(run_dir, RESERVE_FILE).unlink(missing_ok=True)


def release_space(run_dir: Path) -> None:
    Path(run_dir, RESERVE_FILE).unlink(missing_ok=True)


def load_state(run_dir: Path) -> JobState | None:
    """The job's last written state, None before it wrote one; JobFileError (saying why) for a file that is not a
    job state: not JSON, not an object, a field of the wrong type, a metric that is no finite number."""
    path = Path(run_dir) / STATE_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JobFileError(f"{path.name}: {exc.strerror or exc}") from None
    if len(raw) > 1024 * 1024:
        raise JobFileError(f"{path.name} is {len(raw)} bytes, far more than a job writes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise JobFileError(f"{path.name} is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise JobFileError(f"{path.name} holds a JSON {type(data).__name__}, not an object")
    try:
        checked = _StateFile.model_validate(data)
    except ValidationError as exc:
        raise JobFileError(f"{path.name}: {_why(exc)}") from None
    return JobState(**checked.model_dump())


def read_state(run_dir: Path) -> JobState | None:
    """The job's last written state, or None before it wrote one or if it cannot be read (what a job reads: it
    never fails on its own file, and its next write replaces a bad one)."""
    try:
        return load_state(run_dir)
    except JobFileError:
        return None


def write_state(run_dir: Path, state: JobState) -> JobState:
    state = JobState(**{**asdict(state), "updated_at": time.time()})
    text = json.dumps(asdict(state), default=str)
    path = Path(run_dir) / STATE_FILE
    _writing(run_dir, path, lambda: _write_atomic(path, text))
    return state


def update_state(run_dir: Path, **changes) -> JobState:
    """Change some fields of the job's state (the job is the only writer of this file)."""
    current = read_state(run_dir) or JobState()
    return write_state(run_dir, JobState(**{**asdict(current), **changes}))


def add_event(run_dir: Path, kind: str, detail: str = "") -> None:
    """Append one event line (O_APPEND: whole lines, in order, even with a reader tailing the file)."""
    line = (json.dumps(asdict(JobEvent(time.time(), kind, detail))) + "\n").encode()
    path = Path(run_dir) / EVENTS_FILE

    def append() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    _writing(run_dir, path, append)


def _event(line: str, number: int) -> JobEvent:
    """One event line, checked; a line that is not one becomes an `unreadable` event saying why."""
    try:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise JobFileError(f"a JSON {type(data).__name__}, not an object")
        checked = _EventLine.model_validate(data)
    except ValidationError as exc:
        why = _why(exc)
    except (ValueError, RecursionError) as exc:  # (JobFileError and JSONDecodeError are ValueErrors)
        why = str(exc)[:200]
    else:
        return JobEvent(checked.at, checked.kind, cap(checked.detail))
    return JobEvent(time.time(), "unreadable", cap(f"line {number + 1} of {EVENTS_FILE}: {why}: {line}", 400))


def read_events(run_dir: Path, start: int = 0) -> list[JobEvent]:
    """Events from line `start` on; a last line still being written (no newline yet) is left for next time. Each
    is checked (an unreadable line becomes an `unreadable` event, keeping line numbering) and its detail capped."""
    try:
        text = (Path(run_dir) / EVENTS_FILE).read_text(errors="replace")
    except OSError:
        return []
    lines = text.split("\n")[:-1]  # whole lines only
    return [_event(line, start + i) for i, line in enumerate(lines[start:])]


# what a job (NoSpaceError) or Python (`[Errno 28] No space left on device: 'PATH'`) says of a full disk
_NO_SPACE = (re.compile(rf"{NO_SPACE} while writing (\S+)"),
             re.compile(r"(?:No space left on device|Disk quota exceeded)(?:: '([^']+)')?"))


def no_space_cause(directory: Path, tail: str, look: bool = True) -> str | None:
    """`no space left on device while writing PATH` when a job's last words in `tail` say so (the path they
    name, else `directory`), or -- with `look` -- when the filesystem of `directory` is full now; else None."""
    for pattern in _NO_SPACE:  # the job's own words first, then the last path Python named
        found = [m.group(1) or "" for m in pattern.finditer(tail)]
        if found:
            return f"{NO_SPACE} while writing {next((p for p in reversed(found) if p), directory)}"
    return f"{NO_SPACE} while writing {directory}" if look and disk_full(Path(directory)) else None


def disk_full(directory: Path) -> bool:
    """Whether the filesystem holding `directory` has (next to) no space left for an unprivileged writer."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def finite_metrics(metrics: object) -> dict[str, float]:
    """The metrics that are finite numbers (what the ledger folds in and shows)."""
    if not isinstance(metrics, dict):
        return {}
    return {k: float(v) for k, v in metrics.items() if isinstance(k, str) and isinstance(v, int | float)
            and not isinstance(v, bool) and math.isfinite(v)}


def request_cancel(run_dir: Path) -> None:
    try:
        (Path(run_dir) / CANCEL_FILE).touch()
    except OSError:
        pass  # a run dir that is gone has nothing left to start


def cancel_requested(run_dir: Path) -> bool:
    return (Path(run_dir) / CANCEL_FILE).exists()
