"""The local backend: jobs run on this machine through submitit's LocalExecutor, each in a session of its own.

A local run's job id is the process group of its job (submitit's controller, its tasks and the training under
them): the run is alive while any process of that group is, so killing one of them -- even the one whose pid is
recorded -- never makes a run that still trains look FAILED, and `cancel` stops the whole group. Its own session
also keeps the terminal's Ctrl-C away from it: `run --wait` stops watching, the run goes on.

Several points (a sweep) start under one runner job that keeps at most `parallel` of them running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from swinctl.backends.base import Backend, Observed, Submitted, register
from swinctl.job import files as jobstate
from swinctl.job.files import State

if TYPE_CHECKING:
    from swinctl.job.spec import JobSpec, Resources

_GROUPS_TTL_S = 0.5
_groups_cache: tuple[float, frozenset[int]] = (0.0, frozenset())


def live_groups() -> frozenset[int]:
    """Process groups with at least one process that is not a zombie (one scan of /proc, reused for 0.5 s)."""
    global _groups_cache
    taken, groups = _groups_cache
    if time.monotonic() - taken < _GROUPS_TTL_S:
        return groups
    found = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    after = stat.read().rsplit(")", 1)[1].split()  # state ppid pgrp ... (the name may hold spaces)
            except (OSError, IndexError):
                continue
            if after[0] not in ("Z", "X"):
                found.add(int(after[2]))
    _groups_cache = (time.monotonic(), frozenset(found))
    return _groups_cache[1]


def group_alive(pgid: int) -> bool:
    global _groups_cache
    if pgid in live_groups():
        return True
    _groups_cache = (0.0, frozenset())  # a group just started may be newer than the cached scan
    return pgid in live_groups()


def _kill_group(pgid: int) -> bool:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


class _NewSessionSubprocess:
    """The subprocess module, whose Popen starts a detached job (seen only by submitit's start_controller): a new
    session, no terminal input, and output into `log` rather than the terminal (or pipe) swinctl was started on."""

    def __init__(self, log: Path):
        self.log = log

    def Popen(self, *args, **kwargs):  # noqa: N802  (stands in for subprocess.Popen)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            return subprocess.Popen(*args, start_new_session=True, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, **kwargs)

    def __getattr__(self, name: str):
        return getattr(subprocess, name)


def _session_executor(folder: Path, resources: Resources):
    """submitit's LocalExecutor whose job starts in a new session (see `_SessionLocalExecutor`)."""
    import submitit

    class _SessionLocalExecutor(submitit.LocalExecutor):
        # submitit starts its controller in the caller's process group, where the terminal's Ctrl-C reaches it and
        # where it cannot be told apart from swinctl: its own start_controller, with start_new_session=True.
        # (submitit.local internals, no public option: pyproject pins submitit to the 1.5 series they are from.)
        def _submit_command(self, command: str):
            from submitit.local import local as sl

            saved = sl.subprocess
            sl.subprocess = _NewSessionSubprocess(Path(self.folder) / "controller.log")
            try:
                return super()._submit_command(command)
            finally:
                sl.subprocess = saved

    executor = _SessionLocalExecutor(folder=folder, max_num_timeout=resources.max_requeues)
    executor.update_parameters(timeout_min=resources.timeout_min,
                               gpus_per_node=resources.gpus_per_node if resources.gpus else 0,
                               tasks_per_node=resources.tasks_per_node, signal_delay_s=resources.signal_delay_s,
                               setup=list(resources.setup))
    return executor


def start(spec: JobSpec):
    """Start one run's job in its own session; returns submitit's LocalJob (its job id is the process group)."""
    from swinctl.job.task import CodebaseJob

    return _session_executor(spec.submitit_dir, spec.resources).submit(CodebaseJob(spec))


class LocalRunner:
    """The job that starts a sweep's points here, at most `parallel` at a time, each as its own job (so each is
    logged, tracked and cancelled like a `run`). It talks through run directories only: a point whose run has
    `cancel_requested` is not started (or is stopped at once if the request came while it was starting), and
    each point's job id goes into its run's job state for the submit host to fold in."""

    def __init__(self, specs: Sequence[JobSpec], parallel: int):
        self.specs, self.parallel = list(specs), parallel

    def __call__(self) -> dict[str, str]:
        pending, running, outcome = list(self.specs), {}, {}
        while pending or running:
            for run_id, job in list(running.items()):
                if job.done():
                    outcome[run_id] = job.state
                    del running[run_id]
            while pending and len(running) < self.parallel:
                spec = pending.pop(0)
                if jobstate.cancel_requested(spec.run_dir):
                    outcome[spec.run_id] = "skipped (cancelled)"
                    continue
                try:
                    job = start(spec)
                except Exception as exc:  # one point failing to start must not stop the others
                    jobstate.update_state(spec.run_dir, state=State.FAILED, finished_at=time.time(),
                                          error=f"submission failed: {exc}")
                    outcome[spec.run_id] = State.FAILED
                    continue
                jobstate.update_state(spec.run_dir, job_id=str(job.job_id))
                jobstate.add_event(spec.run_dir, "submitted", f"local job {job.job_id} (sweep runner)")
                if jobstate.cancel_requested(spec.run_dir):  # cancelled while it was starting
                    _kill_group(int(job.job_id))
                running[spec.run_id] = job
            time.sleep(0.5)
        return outcome


@register
class LocalBackend(Backend):
    name = "local"
    title = "the local executor"
    group_noun = "runner (pid)"

    def launcher(self, resources: Resources) -> str:
        # Several tasks here: MMEngine reads the env that submitit's TorchDistributedEnvironment exports.
        return "none" if resources.world_size == 1 else "pytorch"

    def default_parallelism(self, points: int) -> int:
        return 1  # one machine: points queue up unless --max-parallel says otherwise

    def submit(self, specs: Sequence[JobSpec], *, job_name: str, folder: Path, parallel: int) -> Submitted:
        if len(specs) == 1:
            job = start(specs[0])
            return Submitted(str(job.job_id), {specs[0].run_id: str(job.job_id)})
        from swinctl.job.spec import Resources

        first = specs[0].resources
        runner = Resources(cpus_per_task=1, timeout_min=sum(s.resources.timeout_min for s in specs) + 60,
                           setup=first.setup, max_requeues=0)
        job = _session_executor(folder, runner).submit(LocalRunner(specs, parallel))
        return Submitted(str(job.job_id), {s.run_id: None for s in specs})

    def state(self, record, submission) -> Observed | None:
        if record.job_id is not None:
            if group_alive(int(record.job_id)):
                return None
            return Observed(State.FAILED, "the job's processes ended without reporting a result (killed?)")
        runner = submission.job_id if submission is not None else None
        if runner is not None and group_alive(int(runner)):
            return None  # queued in a live sweep runner
        if runner is None and submission is not None and submission.state == "submitting":
            return None  # being submitted right now
        return Observed(State.CANCELLED, "not started: the local sweep runner ended first")

    def cancel(self, record, submission) -> str:
        jobstate.request_cancel(record.run_dir)  # a sweep runner will not start it
        if record.job_id is None:
            return "cancelled before it started"
        if not _kill_group(int(record.job_id)):
            return f"local job {record.job_id} had already ended"
        return f"killed local job {record.job_id} (its process group)"

    def describe(self, submitted: Submitted, points: int) -> str:
        return f"local job {submitted.job_id}" if points == 1 else f"local sweep runner {submitted.job_id}"

