"""The ledger: one sqlite file per runs root that records every run swinctl created.

Jobs update their own row from inside the job (start, finish, metrics), so the record stays true when the CLI that
submitted them is gone; `status` reconciles the rest with the scheduler. WAL mode and a busy timeout let several
swinctl processes (a sweep, a watcher, the jobs themselves) write to one ledger without corrupting it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

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
    error TEXT
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
_JSON_COLUMNS = {"overrides", "metrics"}
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


class Ledger:
    """The sqlite record of runs under one runs root."""

    def __init__(self, runs_root: Path | str):
        self.runs_root = Path(runs_root)
        self.path = self.runs_root / LEDGER_FILE
        self.runs_root.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

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
