"""A run's job logs (submitit's per-task stdout/stderr files): where they are, following them, their tail."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from swinctl.runs.ledger import RunRecord

ERROR_TAIL = 20


def error_tail(record: RunRecord, lines: int = ERROR_TAIL) -> str:
    path = log_path(record, stderr=True)
    if path is None:
        return ""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def log_path(record: RunRecord, task: int = 0, stderr: bool = False) -> Path | None:
    """The newest submitit log of `task` for this run's job (requeues append to the same file).

    A run's own jobs log under its run dir; a sweep's array jobs under the sweep's folder.
    """
    suffix = "err" if stderr else "out"
    folders = [record.run_dir / "submitit"]
    if record.sweep:
        folders.append(record.run_dir.parent / "sweeps" / record.sweep / "submitit")
    if record.job_id:
        for folder in folders:
            exact = folder / f"{record.job_id}_{task}_log.{suffix}"
            if exact.is_file():
                return exact
    own = folders[0]
    candidates = sorted(own.glob(f"*_{task}_log.{suffix}"), key=lambda p: p.stat().st_mtime) if own.is_dir() else []
    return candidates[-1] if candidates else None


def read_log(path: Path, follow: bool = False, until: Callable[[], bool] = lambda: True) -> Iterator[str]:
    with path.open(errors="replace") as stream:
        while True:
            chunk = stream.read()
            if chunk:
                yield chunk
            elif not follow or until():
                rest = stream.read()
                if rest:
                    yield rest
                return
            else:
                time.sleep(0.5)
