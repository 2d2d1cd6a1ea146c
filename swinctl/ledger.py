"""The ledger: one sqlite file per runs root that records every run swinctl created.

Jobs update their own row from inside the job (start, finish, metrics), so the record stays true when the CLI that
submitted them is gone; `status` reconciles the rest with the scheduler. WAL mode and a busy timeout let several
swinctl processes (a sweep, a watcher, the jobs themselves) write to one ledger without corrupting it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from swinctl.errors import UserError

LEDGER_FILE = "ledger.sqlite"

# Scheduler states as SLURM names them; the local executor maps onto the same names.
ACTIVE_STATES = ("PENDING", "RUNNING", "REQUEUED")
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    recipe TEXT NOT NULL,
    codebase TEXT NOT NULL,
    overrides TEXT NOT NULL,
    signature TEXT NOT NULL,
    executor TEXT NOT NULL,
    job_id TEXT,
    state TEXT NOT NULL,
    smoke INTEGER NOT NULL,
    run_dir TEXT NOT NULL,
    work_dir TEXT NOT NULL,
    sweep TEXT,
    seed INTEGER,
    gpus INTEGER NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    elapsed_s REAL,
    requeues INTEGER NOT NULL DEFAULT 0,
    metrics TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    deviations TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS runs_signature ON runs (signature);
CREATE INDEX IF NOT EXISTS runs_sweep ON runs (sweep);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id);
"""


@dataclass(frozen=True)
class RunRecord:
    id: str
    kind: str  # 'train' | 'test'
    recipe: str
    codebase: str  # 'mmdet' | 'mmseg'
    overrides: list[str]
    signature: str
    executor: str  # 'local' | 'slurm'
    job_id: str | None
    state: str
    smoke: bool
    run_dir: Path
    work_dir: Path
    sweep: str | None = None
    seed: int | None = None
    gpus: int = 0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    elapsed_s: float | None = None
    requeues: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    deviations: list[dict] = field(default_factory=list)  # the run vs its published setting (swinctl.guard)

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class Event:
    run_id: str
    at: float
    kind: str
    detail: str


_COLUMNS = [f.name for f in fields(RunRecord)]
_JSON_COLUMNS = {"overrides", "metrics", "deviations"}
# Columns added after the first release: a ledger created before gets them (with their default) when opened.
_ADDED_COLUMNS = {"deviations": "TEXT NOT NULL DEFAULT '[]'"}
_PATH_COLUMNS = {"run_dir", "work_dir"}


def _to_row(record: RunRecord) -> dict:
    row = asdict(record)
    for key in _JSON_COLUMNS:
        row[key] = json.dumps(row[key])
    for key in _PATH_COLUMNS:
        row[key] = str(row[key])
    row["smoke"] = int(row["smoke"])
    return row


def _from_row(row: sqlite3.Row) -> RunRecord:
    values = dict(row)
    for key in _JSON_COLUMNS:
        values[key] = json.loads(values[key])
    for key in _PATH_COLUMNS:
        values[key] = Path(values[key])
    values["smoke"] = bool(values["smoke"])
    return RunRecord(**values)


class LedgerError(UserError):
    """The runs root or its ledger cannot be used (a file, read-only, locked, corrupt); the message says why."""


def _lock_timeout_s() -> float:
    """How long to wait for another swinctl's write lock ($SWINCTL_LEDGER_TIMEOUT, default 30 s)."""
    try:
        return max(0.0, float(os.environ.get("SWINCTL_LEDGER_TIMEOUT", "30")))
    except ValueError:
        return 30.0


def open_runs_root(runs_root: Path) -> Path:
    """`runs_root` as a writable directory (created if missing), or one LedgerError that says what to change."""
    hint = "pass --runs-root DIR or set SWINCTL_RUNS"
    try:
        if runs_root.exists() and not runs_root.is_dir():
            raise LedgerError(f"runs root {runs_root} is a file, not a directory: {hint}")
        runs_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # (also from exists(): a name too long for the filesystem)
        raise LedgerError(f"cannot create the runs root {runs_root}: {exc.strerror or exc}; {hint}") from None
    if not os.access(runs_root, os.W_OK | os.X_OK):
        raise LedgerError(f"runs root {runs_root} is not writable (the ledger and run directories live there); "
                          f"{hint}")
    return runs_root


class Ledger:
    """The sqlite record of runs under one runs root."""

    def __init__(self, runs_root: Path | str):
        self.runs_root = open_runs_root(Path(runs_root))
        self.path = self.runs_root / LEDGER_FILE
        if self.path.exists() and not self.path.is_file():
            raise LedgerError(f"ledger {self.path} is not a file; move it aside")
        with self._connect() as db:
            db.executescript(_SCHEMA)
            have = {row["name"] for row in db.execute("PRAGMA table_info(runs)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in have:
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        timeout = _lock_timeout_s()
        try:
            db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc, timeout) from None
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            yield db
        except sqlite3.Error as exc:
            raise self._error(exc, timeout) from None
        finally:
            db.close()

    def _error(self, exc: sqlite3.Error, timeout: float) -> LedgerError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return LedgerError(f"ledger {self.path} stayed locked by another process for {timeout:g} s; retry when "
                               "it is done (or raise SWINCTL_LEDGER_TIMEOUT)")
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return LedgerError(f"ledger {self.path} is damaged ({text}); move it aside and re-import the runs "
                               "with `swinctl report --import DIR`")
        if "readonly" in text or "unable to open" in text:
            return LedgerError(f"ledger {self.path} cannot be written ({text}); check its permissions or pass "
                               "--runs-root DIR")
        return LedgerError(f"ledger {self.path}: {text}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An IMMEDIATE transaction: writers queue on the lock instead of failing half-way."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add(self, record: RunRecord) -> RunRecord:
        row = _to_row(record)
        with self.transaction() as db:
            db.execute(
                f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})",
                [row[c] for c in _COLUMNS],
            )
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (record.id, time.time(), "created", record.state))
        return record

    def update(self, run_id: str, *, event: str | None = None, **changes) -> RunRecord:
        """Change fields of one run (and optionally log an event) in one transaction."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown ledger fields: {sorted(unknown)}")
        with self.transaction() as db:
            current = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if current is None:
                raise KeyError(run_id)
            record = replace(_from_row(current), **changes)
            row = _to_row(record)
            if changes:
                db.execute(
                    f"UPDATE runs SET {', '.join(f'{c} = ?' for c in changes)} WHERE id = ?",
                    [row[c] for c in changes] + [run_id],
                )
            if event:
                detail = changes.get("state", "") if event == "state" else json.dumps(
                    {k: v for k, v in changes.items() if k != "metrics"}, default=str)
                db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (run_id, time.time(), event, detail))
        return record

    def count_requeue(self, run_id: str) -> RunRecord:
        """The job is going back to the queue: REQUEUED, one more requeue. A cancelled run stays cancelled (scancel
        stops a job with the same SIGTERM as a preemption, and the job may notice after `swinctl cancel` wrote)."""
        with self.transaction() as db:
            current = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if current is None:
                raise KeyError(run_id)
            record = _from_row(current)
            if record.state == "CANCELLED":
                return record
            record = replace(record, state="REQUEUED", requeues=record.requeues + 1)
            db.execute("UPDATE runs SET state = ?, requeues = ? WHERE id = ?", ("REQUEUED", record.requeues, run_id))
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?)",
                       (run_id, time.time(), "requeue", json.dumps({"requeues": record.requeues})))
        return record

    def add_event(self, run_id: str, kind: str, detail: str = "") -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (run_id, time.time(), kind, detail))

    def get(self, run_id: str) -> RunRecord:
        with self._connect() as db:
            row = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise KeyError(run_id)
        return _from_row(row)

    def find(self, prefix: str) -> list[RunRecord]:
        """Runs whose id is `prefix` exactly, or starts with it."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM runs WHERE id = ? OR id LIKE ? ESCAPE '\\' ORDER BY created_at",
                (prefix, prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"),
            ).fetchall()
        exact = [r for r in rows if r["id"] == prefix]
        return [_from_row(r) for r in (exact or rows)]

    def list_runs(
        self,
        recipe: str | None = None,
        sweep: str | None = None,
        states: Iterable[str] | None = None,
        signature: str | None = None,
    ) -> list[RunRecord]:
        clauses, params = [], []
        for column, value in (("recipe", recipe), ("sweep", sweep), ("signature", signature)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if states is not None:
            states = list(states)
            clauses.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(states)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM runs {where} ORDER BY created_at", params).fetchall()
        return [_from_row(r) for r in rows]

    def events(self, run_id: str) -> list[Event]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM events WHERE run_id = ? ORDER BY at", (run_id,)).fetchall()
        return [Event(**dict(r)) for r in rows]
