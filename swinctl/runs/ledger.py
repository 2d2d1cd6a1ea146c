"""The ledger: one sqlite file per runs root that records every run, sweep and submission swinctl made.

Only the submit host writes it (the process that submits, and the ones that look: `status`, `run --wait`,
`report`, `sweep`). Jobs never open it: they write their own state into their run directory
(:mod:`swinctl.job.files`) and the next look folds that in (:mod:`swinctl.runs.sync`). So it uses SQLite's rollback
journal, not WAL, whose shared memory does not work over NFS/Lustre/GPFS or across hosts; a busy timeout queues
concurrent swinctl processes on its lock. Every table is created and migrated here, under a schema version.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from swinctl.errors import UserError
from swinctl.job.files import (  # noqa: F401  (ACTIVE_STATES, FINAL_STATES: the ledger's state names, re-exported)
    ACTIVE_STATES,
    FINAL_STATES,
    NO_SPACE,
    State,
    disk_full,
    finite_metrics,
)

LEDGER_FILE = "ledger.sqlite"
SCHEMA_VERSION = 3  # 1: runs + events (no version recorded); 2: + submissions, sweeps, fold bookkeeping, deviations;
# 3: + runs.follows (a test that evaluates a training run's checkpoint when it ends)


_TABLES = """
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
    submission TEXT,
    events_folded INTEGER NOT NULL DEFAULT 0,
    deviations TEXT NOT NULL DEFAULT '[]',
    follows TEXT
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
CREATE TABLE IF NOT EXISTS submissions (
    token TEXT PRIMARY KEY,
    sweep TEXT,
    executor TEXT NOT NULL,
    job_name TEXT NOT NULL,
    folder TEXT NOT NULL,
    run_ids TEXT NOT NULL,
    created_at REAL NOT NULL,
    job_id TEXT,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sweeps (
    name TEXT PRIMARY KEY,
    recipe TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sweep_points (
    sweep TEXT NOT NULL,
    point_index INTEGER NOT NULL,
    overrides_json TEXT NOT NULL,
    signature TEXT NOT NULL,
    run_id TEXT,
    PRIMARY KEY (sweep, point_index)
);
CREATE INDEX IF NOT EXISTS sweep_points_run ON sweep_points (run_id);
"""


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    """Version 1 had no submissions table (sweeps kept `sweep_submissions`), no fold bookkeeping, no deviations."""
    have = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    if "submission" not in have:
        db.execute("ALTER TABLE runs ADD COLUMN submission TEXT")
    if "events_folded" not in have:
        db.execute("ALTER TABLE runs ADD COLUMN events_folded INTEGER NOT NULL DEFAULT 0")
    if "deviations" not in have:
        db.execute("ALTER TABLE runs ADD COLUMN deviations TEXT NOT NULL DEFAULT '[]'")
    legacy = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'sweep_submissions'")
    if legacy.fetchone():
        db.execute("INSERT OR IGNORE INTO submissions SELECT token, sweep, executor, job_name, '', run_ids_json, "
                   "created_at, job_id, CASE state WHEN 'running' THEN 'submitted' ELSE state END "
                   "FROM sweep_submissions")
        db.execute("DROP TABLE sweep_submissions")


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    """Version 3 links a `--test-after` test to the training run it evaluates."""
    if "follows" not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}:
        db.execute("ALTER TABLE runs ADD COLUMN follows TEXT")


# version -> the step that brings a ledger of that version to the next one
_MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3}


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
    submission: str | None = None  # the token of the submission that queued it
    events_folded: int = 0  # lines of the run dir's job events already folded into `events`
    deviations: list[dict] = field(default_factory=list)  # the run vs its published setting (swinctl.guard)
    follows: str | None = None  # a test run: the training run whose checkpoint it evaluates when that one ends

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def completed(self) -> bool:
        return self.state == State.COMPLETED


@dataclass(frozen=True)
class Event:
    run_id: str
    at: float
    kind: str
    detail: str


@dataclass(frozen=True)
class SubmissionRecord:
    """One sbatch (or local start) swinctl made, written before it happens: the crash-recovery record."""

    token: str
    sweep: str | None
    executor: str
    job_name: str
    folder: str  # where the scheduler's logs go
    run_ids: list[str]
    created_at: float
    job_id: str | None = None
    state: str = "submitting"  # submitting | submitted | failed | lost


@dataclass(frozen=True)
class SweepInfo:
    name: str
    recipe: str
    spec: dict
    created_at: float


@dataclass(frozen=True)
class SweepPoint:
    index: int
    overrides: list[str]
    signature: str
    run_id: str | None


_COLUMNS = [f.name for f in fields(RunRecord)]
_SUBMISSION_COLUMNS = [f.name for f in fields(SubmissionRecord)]
_JSON_COLUMNS = {"overrides", "metrics", "deviations"}
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
    """A run from its row. A row some older swinctl (or a hand) wrote badly -- JSON that does not parse, a metric
    that is no finite number -- still lists: what parses is kept and its `error` says what could not be read
    (in this record only: the row is not rewritten), so one bad row never hides the others."""
    values = dict(row)
    problems = []
    for key, default in (("overrides", []), ("metrics", {}), ("deviations", [])):
        try:
            values[key] = json.loads(values[key])
        except (TypeError, ValueError, RecursionError):
            problems.append(f"{key} is not JSON ({str(values[key])[:40]!r})")
            values[key] = default
            continue
        if not isinstance(values[key], type(default)):
            problems.append(f"{key} is a JSON {type(values[key]).__name__}")
            values[key] = default
    metrics = finite_metrics(values["metrics"])
    if metrics != values["metrics"]:
        bad = {k: v for k, v in values["metrics"].items() if k not in metrics}
        problems.append(f"metrics that are no finite number: {str(bad)[:120]}")
        values["metrics"] = metrics
    for key in _PATH_COLUMNS:
        values[key] = Path(str(values[key]))
    values["smoke"] = bool(values["smoke"])
    if problems:
        values["error"] = f"ledger row unreadable: {'; '.join(problems)}" + (
            f"\n{values['error']}" if values.get("error") else "")
    return RunRecord(**values)


def _rollback(db: sqlite3.Connection) -> None:
    """Undo an open transaction, if SQLite has not already (it rolls back itself when a write or COMMIT fails
    for want of space or I/O, and a second ROLLBACK would only say "no transaction is active")."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # (the connection closes next, which rolls back whatever is left)


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
        self._migrate()

    @classmethod
    def existing(cls, runs_root: Path | str) -> Ledger | None:
        """The ledger under `runs_root` if there is one, else None: what only looks (`status`, `logs`, `report`)
        creates nothing. A runs root that is there but unusable (a file, not writable, a name too long) is still
        the error `open_runs_root` says."""
        root = Path(runs_root)
        try:
            there = root.exists()
        except OSError:
            there = True  # (a name too long): open_runs_root says so
        if not there:
            return None
        open_runs_root(root)  # an existing directory: checked, nothing created
        return cls(root) if (root / LEDGER_FILE).exists() else None

    def _migrate(self) -> None:
        """Create the tables, or bring an older ledger to SCHEMA_VERSION (each step in one transaction)."""
        with self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise LedgerError(f"ledger {self.path} has schema version {version}, newer than this swinctl "
                                  f"knows ({SCHEMA_VERSION}): upgrade swinctl")
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                db.execute("PRAGMA journal_mode=DELETE")  # see the module docstring
            db.execute("BEGIN IMMEDIATE")
            try:
                if version == 0:  # new, or version 1 from before versions were recorded
                    had_runs = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone()
                    version = 1 if had_runs else SCHEMA_VERSION
                for statement in filter(str.strip, _TABLES.split(";")):
                    db.execute(statement)
                while version < SCHEMA_VERSION:
                    _MIGRATIONS[version](db)
                    version += 1
                db.execute("CREATE INDEX IF NOT EXISTS runs_signature ON runs (signature)")
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
            for row in db.execute("SELECT token, sweep FROM submissions WHERE folder = ''").fetchall():
                folder = self.runs_root / "sweeps" / (row["sweep"] or "") / "submitit"
                db.execute("UPDATE submissions SET folder = ? WHERE token = ?", (str(folder), row["token"]))

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        timeout = _lock_timeout_s()
        try:
            db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._error(exc, timeout) from None
        db.row_factory = sqlite3.Row
        try:
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
        io = "disk I/O error" in text or "unable to open" in text
        if "disk is full" in text or (io and disk_full(self.runs_root)):
            # (SQLite may end a transaction itself when it cannot write; nothing half-written stays)
            return LedgerError(f"{NO_SPACE} while writing {self.path} (the ledger is unchanged: free space on the "
                               f"filesystem of {self.runs_root} and retry)")
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
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)  # the error that ended the transaction is the one to report
                raise

    def add(self, record: RunRecord) -> RunRecord:
        row = _to_row(record)
        with self.transaction() as db:
            db.execute(
                f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})",
                [row[c] for c in _COLUMNS],
            )
            db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (record.id, time.time(), "created", record.state))
        return record

    def add_many(self, records: Sequence[RunRecord]) -> list[RunRecord]:
        """`add` for many runs, in one transaction: all of them or none."""
        now = time.time()
        with self.transaction() as db:
            db.executemany(f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})",
                           [[row[c] for c in _COLUMNS] for row in map(_to_row, records)])
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                           [(record.id, now, "created", record.state) for record in records])
        return list(records)

    def set_job_ids(self, job_ids: dict[str, str | None], event: str) -> None:
        """Each run's job id (None: not known yet, nothing changes) and an `event`, as `update(run_id, event=event,
        job_id=...)` writes them, for many runs in one transaction."""
        now = time.time()
        known = [(job_id, run_id) for run_id, job_id in job_ids.items() if job_id is not None]
        with self.transaction() as db:
            db.executemany("UPDATE runs SET job_id = ? WHERE id = ?", known)
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)",
                           [(run_id, now, event, json.dumps({"job_id": job_id} if job_id is not None else {},
                                                           default=str)) for run_id, job_id in job_ids.items()])

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

    def fold(self, run_id: str, changes: dict, events: Sequence[tuple[float, str, str]], start: int,
             own_events: Sequence[tuple[float, str, str]] = ()) -> RunRecord:
        """What a run's job wrote (state changes; its event lines from line `start` on), in one transaction.

        Only events past the row's `events_folded` are inserted, so two processes folding at once add each once.
        A run cancelled here stays CANCELLED whatever its job wrote after the cancel."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown ledger fields: {sorted(unknown)}")
        with self.transaction() as db:
            current = db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if current is None:
                raise KeyError(run_id)
            record = _from_row(current)
            new = list(events)[max(0, record.events_folded - start):] + list(own_events)
            if record.state == State.CANCELLED:
                changes = {k: v for k, v in changes.items() if k not in ("state", "error", "finished_at")}
            changes = {**changes, "events_folded": max(start + len(events), record.events_folded)}
            record = replace(record, **changes)
            row = _to_row(record)
            db.execute(f"UPDATE runs SET {', '.join(f'{c} = ?' for c in changes)} WHERE id = ?",
                       [row[c] for c in changes] + [run_id])
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [(run_id, at, kind, detail)
                                                                       for at, kind, detail in new])
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

    def get_many(self, run_ids: Iterable[str]) -> dict[str, RunRecord]:
        """The runs with these ids that exist, by id, in a few queries (a sweep's 10,000 points: not 10,000)."""
        wanted = list(dict.fromkeys(run_ids))
        found: dict[str, RunRecord] = {}
        with self._connect() as db:
            for start in range(0, len(wanted), 500):  # (SQLite's limit on bound parameters is 999 in old versions)
                chunk = wanted[start:start + 500]
                rows = db.execute(f"SELECT * FROM runs WHERE id IN ({', '.join('?' for _ in chunk)})", chunk)
                found.update((row["id"], _from_row(row)) for row in rows.fetchall())
        return found

    def run_ids(self) -> list[str]:
        """Every run's id, oldest first (what short ids are made among, without reading whole rows)."""
        with self._connect() as db:
            return [row[0] for row in db.execute("SELECT id FROM runs ORDER BY created_at").fetchall()]

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

    # ------------------------------------------------------------------------------------------ submissions

    def add_submission(self, submission: SubmissionRecord) -> None:
        row = asdict(submission)
        row["run_ids"] = json.dumps(row["run_ids"])
        with self.transaction() as db:
            db.execute(f"INSERT INTO submissions ({', '.join(_SUBMISSION_COLUMNS)}) "
                       f"VALUES ({', '.join('?' for _ in _SUBMISSION_COLUMNS)})", [row[c] for c in _SUBMISSION_COLUMNS])

    def set_submission(self, token: str, **changes) -> None:
        unknown = set(changes) - {"job_id", "state"}
        if unknown:
            raise ValueError(f"submission fields that cannot change: {sorted(unknown)}")
        with self.transaction() as db:
            db.execute(f"UPDATE submissions SET {', '.join(f'{k} = ?' for k in changes)} WHERE token = ?",
                       [*changes.values(), token])

    def submissions(self, *, state: str | None = None, sweep: str | None = None) -> list[SubmissionRecord]:
        clauses, params = [], []
        for column, value in (("state", state), ("sweep", sweep)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM submissions {where} ORDER BY created_at", params).fetchall()
        return [SubmissionRecord(**{**dict(r), "run_ids": json.loads(r["run_ids"])}) for r in rows]

    def submission(self, token: str | None) -> SubmissionRecord | None:
        if token is None:
            return None
        with self._connect() as db:
            row = db.execute("SELECT * FROM submissions WHERE token = ?", (token,)).fetchone()
        return None if row is None else SubmissionRecord(**{**dict(row), "run_ids": json.loads(row["run_ids"])})

    # ------------------------------------------------------------------------------------------ sweeps

    def get_sweep(self, name: str) -> SweepInfo | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM sweeps WHERE name = ?", (name,)).fetchone()
        return None if row is None else SweepInfo(row["name"], row["recipe"], json.loads(row["spec_json"]),
                                                   row["created_at"])

    def register_sweep(self, name: str, recipe: str, spec: dict, points: Sequence[SweepPoint],
                       submissions: Sequence[SubmissionRecord] = ()) -> None:
        """A sweep, its points (with the runs that serve them) and its coming submissions, in one transaction."""
        now = time.time()
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO sweeps VALUES (?, ?, ?, ?)",
                       (name, recipe, json.dumps(spec, sort_keys=True), now))
            db.executemany("INSERT OR REPLACE INTO sweep_points VALUES (?, ?, ?, ?, ?)",
                           [(name, p.index, json.dumps(p.overrides), p.signature, p.run_id) for p in points])
            for sub in submissions:
                row = asdict(sub)
                row["run_ids"] = json.dumps(row["run_ids"])
                db.execute(f"INSERT INTO submissions ({', '.join(_SUBMISSION_COLUMNS)}) "
                           f"VALUES ({', '.join('?' for _ in _SUBMISSION_COLUMNS)})",
                           [row[c] for c in _SUBMISSION_COLUMNS])

    def sweep_points(self, name: str) -> list[SweepPoint]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM sweep_points WHERE sweep = ? ORDER BY point_index", (name,)).fetchall()
        return [SweepPoint(r["point_index"], json.loads(r["overrides_json"]), r["signature"], r["run_id"])
                for r in rows]
