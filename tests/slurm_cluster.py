"""The real local SLURM cluster for tests (started by ``scripts/local-slurm.sh``; two nodes, ``HOST-1`` and
``HOST-2``, unless ``SWINCTL_SLURM_NODES`` says otherwise).

Import it as ``slurm_cluster`` (pytest puts tests/ on sys.path: tests/ has no __init__.py and
the rootdir conftest lives there). ``from tests.slurm_cluster import ...`` does NOT work in the
project venv: mmsegmentation installs an unrelated top-level ``tests`` package into
site-packages, and a regular package there wins over the tests/ directory.

Plain API (no pytest needed)::

    from slurm_cluster import start_cluster, stop_cluster
    env = start_cluster()             # or start_cluster("/some/dir"); idempotent, ~2 s when not running
    subprocess.run(["sbatch", ...], env={**os.environ, **env})

Pytest::

    from slurm_cluster import slurm_cluster   # (or a conftest.py that does this import)

    @pytest.mark.slurm
    def test_something(slurm_cluster, tmp_path):
        job_id = slurm_cluster.sbatch("--wrap", "true")
        assert slurm_cluster.wait_state(job_id, "COMPLETED") == "COMPLETED"

The session-scoped fixture starts the cluster once (reusing one that is already running in the
same directory), sets ``os.environ["SLURM_CONF"]`` for the session so submitit and any
``sbatch``/``sacct`` called by the code under test talk to it, and leaves the cluster running
afterwards so the next test run starts in ~0.1 s (``SWINCTL_SLURM_STOP=1`` stops it at session end).

The cluster directory is ``$SWINCTL_SLURM_DIR`` or ``/tmp/swinctl-slurm``. It skips (loudly) only
where the script cannot run at all: not root, no bash, or packages missing with no apt-get. Any
other failure to start is a test error, with the script's output.

Caveat for callers: a fresh cluster directory restarts job ids at 1, so never reuse a submitit
folder across clusters (use ``tmp_path``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "local-slurm.sh"
DEFAULT_DIR = Path("/tmp/swinctl-slurm")

#: states after which a job never runs again (sacct's first word: "CANCELLED by 0" -> "CANCELLED")
TERMINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
    }
)

_SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


class ClusterUnavailable(RuntimeError):
    """The local cluster cannot be started on this machine at all (not root, no apt-get, no bash)."""


def cluster_dir(dir: str | os.PathLike[str] | None = None) -> Path:
    """The cluster directory: ``dir``, else ``$SWINCTL_SLURM_DIR``, else ``/tmp/swinctl-slurm``."""
    if dir is not None:
        return Path(dir).absolute()
    return Path(os.environ.get("SWINCTL_SLURM_DIR") or DEFAULT_DIR).absolute()


def cluster_env(dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Environment entries that point SLURM clients at the cluster in ``dir``: SLURM_CONF and a
    PATH that contains the slurm binaries (``/usr/bin``, ``/usr/sbin``)."""
    d = cluster_dir(dir)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    path += [p for p in _SYSTEM_PATH if p not in path]
    return {"SLURM_CONF": str(d / "etc" / "slurm.conf"), "PATH": os.pathsep.join(path)}


def _script(cmd: str, dir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    if bash is None:
        raise ClusterUnavailable("bash is not available to run scripts/local-slurm.sh")
    return subprocess.run(
        [bash, str(SCRIPT), cmd, str(dir)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **cluster_env(dir)},
    )


_start_lock = threading.Lock()
_started: dict[Path, dict[str, str]] = {}


def start_cluster(dir: str | os.PathLike[str] | None = None, *, timeout: float = 600) -> dict[str, str]:
    """Start the cluster in ``dir`` (see :func:`cluster_dir`) unless it is already running, and
    return the environment entries for its clients (``SLURM_CONF``, ``PATH``).

    Installs the Debian packages on first use (~40 s), then starts in ~2-3 s; ~0.1 s when it is
    already up. Raises :class:`ClusterUnavailable` where the script cannot run here (not root,
    packages missing and no apt-get), ``RuntimeError`` (with the script's output) on any other
    failure.
    """
    d = cluster_dir(dir)
    with _start_lock:
        if d in _started:
            return dict(_started[d])
        if hasattr(os, "geteuid") and os.geteuid() != 0:
            raise ClusterUnavailable(f"not root (euid {os.geteuid()}); the daemons run as root")
        proc = _script("start", d, timeout)
        if proc.returncode in (2, 3):  # 2: needs root, 3: packages missing and apt-get unavailable
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise ClusterUnavailable(lines[-1] if lines else f"scripts/local-slurm.sh exited {proc.returncode}")
        if proc.returncode != 0:
            raise RuntimeError(
                f"scripts/local-slurm.sh start {d} failed (exit {proc.returncode}):\n{proc.stderr}{proc.stdout}"
            )
        env = cluster_env(d)
        _started[d] = env
        return dict(env)


def stop_cluster(dir: str | os.PathLike[str] | None = None, *, timeout: float = 120) -> None:
    """Stop every daemon started in ``dir`` (by pid files) and wait for them."""
    d = cluster_dir(dir)
    with _start_lock:
        _started.pop(d, None)
        proc = _script("stop", d, timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/local-slurm.sh stop {d} failed (exit {proc.returncode}):\n{proc.stderr}")


@dataclass
class SlurmCluster:
    """A running local cluster: ``.dir``, ``.env`` (SLURM_CONF, PATH) and helpers around its clients."""

    dir: Path
    env: dict[str, str]
    start_s: float = 0.0  # wall time the fixture spent starting (or finding) the cluster
    _full_env: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._full_env = {**os.environ, **self.env}

    @property
    def slurm_conf(self) -> Path:
        return Path(self.env["SLURM_CONF"])

    @property
    def log_dir(self) -> Path:
        return self.dir / "log"

    def run(
        self,
        cmd: str | Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command (a list, or a string split with shlex, no shell) against the cluster;
        text output captured. ``check`` raises with stdout/stderr in the message."""
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env={**self._full_env, **(env or {})},
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(argv)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def sbatch(self, *args: str, cwd: str | os.PathLike[str] | None = None) -> str:
        """``sbatch --parsable ARGS...``; returns the job id."""
        out = self.run(["sbatch", "--parsable", *args], cwd=cwd).stdout.strip()
        return out.split(";")[0]

    def state(self, job_id: str | int) -> str:
        """The job's state from sacct (allocation line only, first word: "CANCELLED by 0" ->
        "CANCELLED"); "" when sacct does not know the job yet."""
        out = self.run(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "JobID,State"], check=False).stdout
        for line in out.splitlines():
            jid, _, st = line.partition("|")
            if jid.strip() == str(job_id):
                return st.split()[0] if st.strip() else ""
        return ""

    def squeue_state(self, job_id: str | int) -> str:
        """The job's state from slurmctld (squeue), "" once it has left the queue."""
        out = self.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], check=False).stdout
        return out.strip().splitlines()[0] if out.strip() else ""

    def wait_state(
        self,
        job_id: str | int,
        states: str | Iterable[str] = TERMINAL_STATES,
        *,
        timeout: float = 60,
        poll: float = 0.2,
        source: str = "sacct",
    ) -> str:
        """Poll until the job's state (``source``: "sacct" or "squeue") is one of ``states``;
        returns it. Raises TimeoutError with the last state seen."""
        wanted = {states} if isinstance(states, str) else set(states)
        get = self.state if source == "sacct" else self.squeue_state
        deadline = time.monotonic() + timeout
        st = ""
        while True:
            st = get(job_id)
            if st in wanted:
                return st
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id}: still {st or 'unknown'} after {timeout} s, wanted {sorted(wanted)}")
            time.sleep(poll)

    def scontrol_job(self, job_id: str | int) -> dict[str, str]:
        """``scontrol show job -o`` as a dict (JobState, RestartCnt, Reason, ...)."""
        out = self.run(["scontrol", "show", "job", "-o", str(job_id)]).stdout
        fields: dict[str, str] = {}
        for tok in out.split():
            k, sep, v = tok.partition("=")
            if sep:
                fields[k] = v
        return fields


def _skip_reason(why: object) -> str:
    return f"SLURM tests need root to start the local cluster (scripts/local-slurm.sh): {why}"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Session-scoped: the running local cluster (started once). Sets ``os.environ["SLURM_CONF"]``
    (and extends PATH) for the session so submitit's sbatch/sacct/scancel calls reach it."""
    d = cluster_dir()
    t0 = time.monotonic()
    try:
        env = start_cluster(d)
    except ClusterUnavailable as e:
        pytest.skip(_skip_reason(e))
    cluster = SlurmCluster(dir=d, env=env, start_s=time.monotonic() - t0)
    print(f"\n[slurm_cluster] cluster at {d} ready in {cluster.start_s:.1f} s (SLURM_CONF={env['SLURM_CONF']})")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield cluster
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if os.environ.get("SWINCTL_SLURM_STOP") == "1":
            stop_cluster(d)
