"""The backend interface and its registry (one place chooses the executor; nothing else compares its name)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from swinctl.errors import UserError

if TYPE_CHECKING:  # (jobs imports submitit; the CLI must start without it)
    from swinctl.job.spec import JobSpec, Resources
    from swinctl.runs.ledger import RunRecord, SubmissionRecord

BACKENDS: dict[str, type[Backend]] = {}
AUTO_ORDER = ("slurm", "local")  # what `--executor auto` tries, in order


class BackendError(UserError):
    """A backend cannot be used from here, or refused a submission; the message says why."""


@dataclass(frozen=True)
class Submitted:
    """What a submission gave: the scheduler's id for it, and each run's own job id where it is known already
    (SLURM array tasks; a local run's process group). A run of a local sweep runner gets its id when it starts."""

    job_id: str
    run_job_ids: dict[str, str | None]


@dataclass(frozen=True)
class Observed:
    """The scheduler's word on a run: a ledger state, and why where it ended without the job saying so."""

    state: str
    detail: str = ""
    requeues: int | None = None  # times the scheduler itself requeued the job, where it says (None: unknown)


class Backend(ABC):
    """Submits job specs and answers for them. Subclasses register under the name runs record (`executor`)."""

    name: ClassVar[str]
    #: How messages call it ("SLURM").
    title: ClassVar[str] = ""
    #: SIGTERM from this scheduler means "preempted, you will be requeued" (SLURM), not "stop for good".
    sigterm_requeues: ClassVar[bool] = False
    #: What a submission of several points is called in messages.
    group_noun: ClassVar[str] = "job"

    @classmethod
    def available(cls) -> bool:
        """Whether `--executor auto` should pick this backend on this machine."""
        return True

    def require(self) -> None:
        """Raise BackendError if jobs cannot be submitted from this machine (checked before anything is written)."""
        return None

    @abstractmethod
    def launcher(self, resources: Resources) -> str:
        """MMEngine's --launcher for a job with these resources: none, pytorch or slurm."""

    def default_parallelism(self, points: int) -> int:
        """How many points of a sweep run at once unless --max-parallel says."""
        return points

    def max_array_size(self) -> int | None:
        """The most points one submission may hold (SLURM's MaxArraySize), None for no limit."""
        return None

    @abstractmethod
    def submit(self, specs: Sequence[JobSpec], *, job_name: str, folder: Path, parallel: int) -> Submitted:
        """Submit `specs` as one submission (one job, or one array/runner for several)."""

    def observe(self, records: Sequence[RunRecord]) -> None:
        """Ask the scheduler about many active runs at once, before `state` is called for each of them (SLURM: one
        sacct for all, instead of one per run)."""
        return None

    @abstractmethod
    def state(self, record: RunRecord, submission: SubmissionRecord | None) -> Observed | None:
        """The scheduler's view of an active run, or None when it has nothing to add to what the job wrote."""

    @abstractmethod
    def cancel(self, record: RunRecord, submission: SubmissionRecord | None) -> str:
        """Stop the run's job (all its processes); returns what was done, in words. BackendError if it could not."""

    def preview(self, specs: Sequence[JobSpec], *, job_name: str, folder: Path, parallel: int) -> str | None:
        """The submission script a dry run shows (SLURM's sbatch file), or None where there is none."""
        return None

    def adopt(self, submission: SubmissionRecord) -> Submitted | None:
        """Crash recovery for a submission an interrupted swinctl left unrecorded: what reached the scheduler
        (then its ids are recorded) or None when nothing did (then its runs are submitted again)."""
        return None

    def describe(self, submitted: Submitted, points: int) -> str:
        return f"{self.name} {self.group_noun} {submitted.job_id}"


def register(cls: type[Backend]) -> type[Backend]:
    BACKENDS[cls.name] = cls
    return cls


def get(name: str) -> Backend:
    try:
        return BACKENDS[name]()
    except KeyError:
        raise BackendError(f"unknown executor '{name}': choose {', '.join(sorted(BACKENDS))} or auto") from None


def resolve(requested: str) -> Backend:
    """The backend `--executor` names; `auto` is the first of AUTO_ORDER available here."""
    if requested == "auto":
        return get(next(name for name in AUTO_ORDER if BACKENDS[name].available()))
    return get(requested)
