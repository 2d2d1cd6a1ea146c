"""Report rows from a W&B project (`--source wandb`); wandb is imported only when a project is read."""

from __future__ import annotations

import re
from collections.abc import Iterable

from swinctl import results
from swinctl.job.files import State
from swinctl.report.judging import Expectations
from swinctl.report.model import ReportError, RunRow
from swinctl.report.sources import make_row

_RUN_ID = re.compile(r"^(?P<recipe>.+?)(?P<smoke>-smoke)?-\d{8}-\d{6}-[0-9a-f]{4}$")
# W&B's run states -> the ledger's names
_WANDB_STATES = {"finished": State.COMPLETED, "running": State.RUNNING, "crashed": State.FAILED, "failed": State.FAILED,
                 "killed": State.CANCELLED, "preempted": State.REQUEUED, "pending": State.PENDING}


def _as_dict(obj: object) -> dict:
    if obj is None:
        return {}
    json_dict = getattr(obj, "_json_dict", None)  # wandb's summary objects
    if isinstance(json_dict, dict):
        return dict(json_dict)
    try:
        return dict(obj)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return {}


def row_from_wandb(run, expectations: Expectations, metrics: list[str] | None, pick: str,
                   known_recipes: Iterable[str] = ()) -> RunRow:
    """A report row from a W&B run (``wandb.apis.public.Run`` or anything with its attributes).

    swinctl names W&B runs after their run id (``<recipe>[-smoke]-<date>-<time>-<hex>``), groups them by sweep or
    recipe, tags smoke runs ``smoke`` and logs the MMEngine config (``default_scope``, ``randomness.seed``) and the
    MMEngine scalars (``coco/bbox_mAP`` as fractions, ``mIoU`` in percent) whose last values are the summary.
    """
    name = str(getattr(run, "name", "") or getattr(run, "id", ""))
    group = getattr(run, "group", None) or None
    tags = list(getattr(run, "tags", None) or [])
    config = _as_dict(getattr(run, "config", None))
    summary = _as_dict(getattr(run, "summary", None))
    match = _RUN_ID.match(name)
    known = set(known_recipes)
    recipe = match["recipe"] if match else (group if group in known else None)
    smoke = "smoke" in tags or bool(match and match["smoke"])
    sweep = group if group and group != recipe else None
    scope = config.get("default_scope")
    codebase = scope if scope in ("mmdet", "mmseg") else None
    randomness = config.get("randomness") if isinstance(config.get("randomness"), dict) else {}
    seed = randomness.get("seed") if isinstance(randomness.get("seed"), int) else None
    last = results.normalise_metrics(summary, "mmengine")
    problems = []
    if pick == "best" and last:
        problems.append("W&B summaries hold the last values: 'best' shows the last")
    runtime = summary.get("_runtime")
    elapsed = float(runtime) if isinstance(runtime, int | float) else None
    state = _WANDB_STATES.get(str(getattr(run, "state", "")), str(getattr(run, "state", "UNKNOWN")).upper())
    flags = set() if last else {results.NO_METRICS}
    if not last:
        problems.append("no bbox/segm mAP or mIoU in the W&B summary")
    return make_row(
        id=name, origin="wandb", kind="train", recipe=recipe, codebase=codebase, sweep=sweep, seed=seed,
        overrides=[], state=state, smoke=smoke, executor=None, gpus=None, elapsed_s=elapsed, gpu_hours=None,
        work_dir=None, log_format="wandb", progress=None, flags=flags, problems=problems, last=last,
        best={m: (v, None) for m, v in last.items()}, last_at=None,
        expectation=expectations.for_recipe(recipe), metrics=metrics, pick=pick,
    )


def wandb_runs(path: str, *, timeout: int = 20) -> list:
    """The runs of W&B project `path` ("entity/project" or "project"); a ReportError says why it cannot."""
    import os

    try:
        import wandb
    except ImportError as exc:
        raise ReportError(f"--source wandb needs the wandb package: {exc}") from None

    def failure(reason: str) -> ReportError:
        return ReportError(
            f"cannot read the W&B project '{path}': {reason}. Log in with `wandb login` (or set WANDB_API_KEY), "
            "check the project path (entity/project) and the network, or report from the local logs "
            "(--source local)")

    # wandb's service process retries an unreachable server with back-off and the interpreter waits for it at
    # exit, so a server that cannot be reached is found first with one plain connection, and retries are capped
    # (read from the environment when wandb's settings are first made, just below).
    os.environ.setdefault("WANDB__GRAPHQL_RETRY_MAX", "2")
    from wandb.sdk import wandb_setup  # its settings know the base URL from the environment and settings files

    unreachable = _unreachable(wandb_setup.singleton().settings.base_url, timeout)
    if unreachable:
        raise failure(unreachable)
    try:
        api = wandb.Api(timeout=timeout)
        return list(api.runs(path))
    except Exception as exc:  # wandb raises UsageError, CommError, requests' errors, ValueError...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise failure(reason) from None


def _unreachable(base_url: str, timeout: float) -> str | None:
    """Why no TCP connection to `base_url`'s host can be opened within `timeout` seconds; None when it can."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(base_url if "://" in base_url else f"https://{base_url}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except OSError as exc:
        return f"cannot reach {base_url} ({exc.strerror or exc})"
    return None


def wandb_path(selectors: list[str]) -> tuple[str, list[str]]:
    """The project from a selector `wandb:ENTITY/PROJECT`, else $WANDB_ENTITY/$WANDB_PROJECT, else 'swinctl'."""
    import os

    rest = []
    path = None
    for s in selectors:
        if s.startswith("wandb:"):
            path = s.removeprefix("wandb:")
        else:
            rest.append(s)
    if path is None:
        project = os.environ.get("WANDB_PROJECT", "swinctl")
        entity = os.environ.get("WANDB_ENTITY")
        path = f"{entity}/{project}" if entity else project
    return path, rest
