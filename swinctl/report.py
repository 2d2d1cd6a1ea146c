"""The report: runs, seeds and sweeps against the published numbers, as a table, Markdown, CSV, JSON or HTML.

`build_report` gathers runs (from the ledger, imported work dirs, or a W&B project), reads their logs with
:mod:`swinctl.results`, and compares the chosen metrics with the expected values of each run's recipe (one per source:
the seed README, the MMDet/MMSeg metafile) within the recipe's tolerance. `render` turns the result into text or a
file; `rich_tables` gives the renderables the CLI prints. Nothing here imports torch or the OpenMMLab packages;
matplotlib and wandb are imported only by the functions that need them.

Verdicts, per metric and run (precedence top to bottom):

* ``smoke (not a reproduction)``: a smoke run; never counted as a reproduction.
* ``no metrics``: no validation/test metric for it yet.
* ``running``: the run is still active (PENDING/RUNNING/REQUEUED); the value is the latest.
* ``incomplete``: the run ended without finishing (FAILED/CANCELLED/TIMEOUT, or its logs stop early).
* ``no reference``: the recipe has no expected value for that metric.
* ``reproduced`` / ``below`` / ``above``: the value against the first expected value listed for the metric
  (``|delta| <= tolerance``); every source also gets its own delta and verdict.

JSON schema (``schema_version`` 1; `render(report, "json")`, `Report.to_dict()`)::

    {
      "schema_version": 1,
      "generated_at": "2024-05-01T12:00:00+00:00",      # ISO 8601, UTC
      "source": "local" | "wandb",
      "pick": "last" | "best",                          # which value the verdicts use
      "metrics": ["bbox_mAP", ...] | null,              # as requested; null: each recipe's expected metrics
      "selectors": ["..."],
      "runs": [{
          "id": str, "origin": "ledger" | "import" | "wandb", "kind": "train" | "test", "recipe": str | null,
          "codebase": "mmdet" | "mmseg" | null, "sweep": str | null, "seed": int | null,
          "overrides": [str], "state": str, "smoke": bool, "executor": str | null, "gpus": int | null,
          "elapsed_s": float | null, "gpu_hours": float | null, "work_dir": str | null,
          "log_format": "mmengine" | "mmcv1" | "none" | "wandb",
          "progress": {"iter", "total", "epoch", "max_epochs", "eta_s", "phase"} | null,
          "flags": [str], "problems": [str],
          "verdict": str,                                # of the first metric
          "results": [{
              "metric": str, "value": float | null,      # the picked one (last or best)
              "last": float | null, "best": float | null,
              "at": {"iter": int | null, "epoch": int | null} | null,       # where `value` was measured
              "best_at": {"iter": int | null, "epoch": int | null} | null,
              "per_gpu_hour": float | null, "tolerance": float | null, "verdict": str,
              "references": [{"source": str, "expected": float, "delta": float | null, "verdict": str}]
          }]
      }],
      "groups": [{                                       # runs that differ only by seed (two or more)
          "key": str, "recipe": str | null, "kind": str, "sweep": str | null, "smoke": bool, "overrides": [str],
          "run_ids": [str], "seeds": [int | null], "verdict": str,
          "results": [{"metric": str, "mean": float | null, "std": float | null, "n": int, "values": [float],
                       "tolerance": float | null, "verdict": str, "references": [...as above, delta of the mean]}]
      }],
      "sweeps": [{
          "name": str, "metric": str, "varying": [str],  # override keys that differ between the points
          "points": [{"rank": int, "best": bool, "overrides": [str], "varying": {key: value}, "run_ids": [str],
                      "mean": float | null, "std": float | null, "n": int, "verdict": str}]
      }],
      "problems": [str]                                  # report-wide notes
    }

Values are percent points (mAP 42.6, mIoU 44.3). Fields are only ever added within a schema version.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from swinctl import results

SCHEMA_VERSION = 1
FORMATS = ("table", "md", "csv", "json", "html")

SMOKE = "smoke (not a reproduction)"
NO_METRICS = "no metrics"
RUNNING = "running"
INCOMPLETE = "incomplete"
NO_REFERENCE = "no reference"
REPRODUCED, BELOW, ABOVE = "reproduced", "below", "above"
COUNTED = (REPRODUCED, BELOW, ABOVE, NO_REFERENCE)  # verdicts whose value enters a seed mean

_ACTIVE = ("PENDING", "RUNNING", "REQUEUED")
_ENDED_EARLY = ("FAILED", "CANCELLED", "TIMEOUT")


class ReportError(Exception):
    """The report cannot be built as asked; the message says why and what to do."""


# ---------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Expectation:
    metric: str
    value: float
    source: str


@dataclass
class Reference:
    source: str
    expected: float
    delta: float | None
    verdict: str


@dataclass
class MetricResult:
    metric: str
    value: float | None
    last: float | None
    best: float | None
    at: dict | None
    best_at: dict | None
    per_gpu_hour: float | None
    tolerance: float | None
    verdict: str
    references: list[Reference] = field(default_factory=list)


@dataclass
class RunRow:
    id: str
    origin: str  # 'ledger' | 'import' | 'wandb'
    kind: str
    recipe: str | None
    codebase: str | None
    sweep: str | None
    seed: int | None
    overrides: list[str]
    state: str
    smoke: bool
    executor: str | None
    gpus: int | None
    elapsed_s: float | None
    gpu_hours: float | None
    work_dir: str | None
    log_format: str
    progress: dict | None
    flags: list[str]
    problems: list[str]
    verdict: str
    results: list[MetricResult]

    def result(self, metric: str) -> MetricResult | None:
        return next((r for r in self.results if r.metric == metric), None)

    @property
    def primary(self) -> MetricResult | None:
        return self.results[0] if self.results else None


@dataclass
class GroupResult:
    metric: str
    mean: float | None
    std: float | None
    n: int
    values: list[float]
    tolerance: float | None
    verdict: str
    references: list[Reference] = field(default_factory=list)


@dataclass
class GroupRow:
    key: str
    recipe: str | None
    kind: str
    sweep: str | None
    smoke: bool
    overrides: list[str]
    run_ids: list[str]
    seeds: list[int | None]
    verdict: str
    results: list[GroupResult]

    @property
    def primary(self) -> GroupResult | None:
        return self.results[0] if self.results else None


@dataclass
class SweepPoint:
    rank: int
    best: bool
    overrides: list[str]
    varying: dict[str, str]
    run_ids: list[str]
    mean: float | None
    std: float | None
    n: int
    verdict: str


@dataclass
class SweepTable:
    name: str
    metric: str
    varying: list[str]
    points: list[SweepPoint]


@dataclass
class Report:
    source: str
    pick: str
    metrics: list[str] | None
    selectors: list[str]
    diff: bool
    runs: list[RunRow]
    groups: list[GroupRow]
    sweeps: list[SweepTable]
    problems: list[str]
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    expectations: dict[str, list[Expectation]] = field(default_factory=dict)  # per recipe, for the plots

    def to_dict(self) -> dict:
        data = {
            "schema_version": SCHEMA_VERSION, "generated_at": self.generated_at, "source": self.source,
            "pick": self.pick, "metrics": self.metrics, "selectors": self.selectors,
            "runs": _plain(self.runs), "groups": _plain(self.groups), "sweeps": _plain(self.sweeps),
            "problems": self.problems,
        }
        return data


def _plain(value):
    """Dataclasses -> dicts, recursively (dataclasses.asdict deep-copies every leaf: ten times slower here)."""
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is not None:
        return {name: _plain(getattr(value, name)) for name in fields}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------- expectations

_EXPECTED_BLOCK = re.compile(r"^expected:[^\n]*\n(?:(?:[ \t-][^\n]*)?\n)*", re.M)
_TOLERANCE = re.compile(r"^tolerance:[ \t]*([0-9.eE+-]+)[ \t]*$", re.M)


class _Expectations:
    """Expected values and tolerance per run, from its resolved recipe.yaml (or the named recipe), cached.

    Only the `expected:` block and the `tolerance:` line of a run's recipe.yaml are YAML-parsed (a thousand
    identical blocks parse once); a file where they cannot be cut out cleanly is parsed whole.
    """

    def __init__(self) -> None:
        self._blocks: dict[str, list[Expectation]] = {}
        self._named: dict[str, tuple[list[Expectation], float] | None] = {}

    def for_run(self, run_dir: Path | None, recipe: str | None) -> tuple[list[Expectation], float] | None:
        if run_dir is not None:
            try:
                text = (run_dir / "recipe.yaml").read_text()
            except OSError:
                text = None
            if text is not None:
                found = self._from_text(text)
                if found is not None:
                    return found
        return self.for_recipe(recipe)

    def for_recipe(self, name: str | None) -> tuple[list[Expectation], float] | None:
        if not name:
            return None
        if name not in self._named:
            from swinctl import recipes

            try:
                recipe = recipes.load_recipe(name)
            except recipes.RecipeError:
                self._named[name] = None
            else:
                self._named[name] = ([Expectation(e.metric, float(e.value), e.source) for e in recipe.expected],
                                     float(recipe.tolerance))
        return self._named[name]

    def _from_text(self, text: str) -> tuple[list[Expectation], float] | None:
        block = _EXPECTED_BLOCK.search(text)
        tol = _TOLERANCE.search(text)
        key = block.group(0) if block else ""
        if key not in self._blocks:
            self._blocks[key] = _parse_expected(_yaml_load(key).get("expected") if key else [])
        if tol is not None or "\ntolerance:" not in text:
            return self._blocks[key], float(tol.group(1)) if tol else 0.5
        data = _yaml_load(text)  # an unusual layout: read it all
        return _parse_expected(data.get("expected")), float(data.get("tolerance", 0.5))


def _yaml_load(text: str) -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _parse_expected(items: object) -> list[Expectation]:
    out = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("value"), int | float) and item.get("metric"):
            out.append(Expectation(str(item["metric"]), float(item["value"]), str(item.get("source", "?"))))
    return out


# ---------------------------------------------------------------------------------------------- verdicts


def compare(value: float, expected: float, tolerance: float) -> str:
    delta = value - expected
    if abs(delta) <= tolerance + 1e-9:
        return REPRODUCED
    return BELOW if delta < 0 else ABOVE


def _references(value: float | None, expectations: Sequence[Expectation], metric: str,
                tolerance: float) -> list[Reference]:
    refs = []
    for e in expectations:
        if e.metric != metric:
            continue
        if value is None:
            refs.append(Reference(e.source, e.value, None, NO_METRICS))
        else:
            refs.append(Reference(e.source, e.value, round(value - e.value, 4), compare(value, e.value, tolerance)))
    return refs


def _verdict(value: float | None, refs: list[Reference], *, smoke: bool, state: str, incomplete: bool) -> str:
    if smoke:
        return SMOKE
    if value is None:
        return NO_METRICS
    if state in _ACTIVE:
        return RUNNING
    if state in _ENDED_EARLY or incomplete:
        return INCOMPLETE
    if not refs:
        return NO_REFERENCE
    return refs[0].verdict


# ---------------------------------------------------------------------------------------------- rows


def _metrics_for(requested: list[str] | None, expectations: Sequence[Expectation], codebase: str | None) -> list[str]:
    if requested:
        return list(requested)
    names = list(dict.fromkeys(e.metric for e in expectations))
    if names:
        return names
    return [results.PRIMARY_METRIC.get(codebase or "", "bbox_mAP")]


def _at(point: results.ValPoint | None) -> dict | None:
    return None if point is None else {"iter": point.iter, "epoch": point.epoch}


def _progress_dict(p: results.Progress | None) -> dict | None:
    if p is None:
        return None
    return {"iter": p.iter, "total": p.total, "epoch": p.epoch, "max_epochs": p.max_epochs, "eta_s": p.eta_s,
            "phase": p.phase}


def make_row(*, id: str, origin: str, kind: str, recipe: str | None, codebase: str | None, sweep: str | None,
             seed: int | None, overrides: Sequence[str], state: str, smoke: bool, executor: str | None,
             gpus: int | None, elapsed_s: float | None, gpu_hours: float | None, work_dir: str | None,
             log_format: str, progress: results.Progress | None, flags: Iterable[str], problems: list[str],
             last: dict[str, float], best: dict[str, tuple[float, results.ValPoint | None]],
             last_at: results.ValPoint | None, expectation: tuple[list[Expectation], float] | None,
             metrics: list[str] | None, pick: str) -> RunRow:
    """One report row from what is known about a run, whatever its origin (ledger, import, W&B)."""
    expectations, tolerance = expectation if expectation else ([], None)
    incomplete = results.INCOMPLETE in flags
    rows = []
    for metric in _metrics_for(metrics, expectations, codebase):
        last_value = last.get(metric)
        best_value, best_point = best.get(metric, (None, None))
        if pick == "best" and best_value is not None:
            value, at = best_value, _at(best_point)
        else:
            value, at = last_value, _at(last_at) if last_value is not None else None
        refs = _references(value, expectations, metric, tolerance or 0.0) if tolerance is not None else []
        verdict = _verdict(value, refs, smoke=smoke, state=state, incomplete=incomplete)
        per_hour = round(value / gpu_hours, 4) if value is not None and gpu_hours else None
        rows.append(MetricResult(metric, value, last_value, best_value, at, _at(best_point), per_hour, tolerance,
                                 verdict, refs))
    return RunRow(id=id, origin=origin, kind=kind, recipe=recipe, codebase=codebase, sweep=sweep, seed=seed,
                  overrides=list(overrides), state=state, smoke=smoke, executor=executor, gpus=gpus,
                  elapsed_s=elapsed_s, gpu_hours=gpu_hours, work_dir=work_dir, log_format=log_format,
                  progress=_progress_dict(progress), flags=sorted(flags), problems=problems,
                  verdict=rows[0].verdict if rows else NO_METRICS, results=rows)


def _from_log(log: results.RunLog, metrics_wanted: Iterable[str]) -> tuple[dict, dict, results.ValPoint | None]:
    last = log.final_metrics()
    last_at = None if log.test_metrics else (log.val[-1] if log.val else None)
    best = {}
    for metric in metrics_wanted:
        point = log.best_point(metric)
        if point is not None:
            best[metric] = (point.metrics[metric], point)
        elif metric in log.test_metrics:
            best[metric] = (log.test_metrics[metric], None)
    return last, best, last_at


def _all_metric_names(metrics: list[str] | None, expectation) -> list[str]:
    if metrics:
        return metrics
    names = list(results.PRIMARY_METRIC.values())
    if expectation:
        names += [e.metric for e in expectation[0]]
    return list(dict.fromkeys(names))


def row_from_record(record, expectation: tuple[list[Expectation], float] | None, metrics: list[str] | None,
                    pick: str) -> RunRow:
    """A report row from a ledger record and its work dir's logs."""
    from swinctl.status import gpu_hours

    log = results.read_work_dir(record.work_dir, train=False)
    problems = list(log.problems)
    flags = set(log.flags)
    last, best, last_at = _from_log(log, _all_metric_names(metrics, expectation))
    if not last and record.metrics:  # the logs are gone or unreadable, the job's own report is not
        last = dict(record.metrics)
        flags.discard(results.NO_METRICS)
        problems.append("metrics from the ledger (the job's final report); the logs do not have them")
    if record.state == "COMPLETED" and results.INCOMPLETE in flags:
        problems.append("the ledger says COMPLETED but the logs stop before the end of the schedule")
    if record.error and record.state != "COMPLETED":
        problems.append(record.error.strip().splitlines()[0][:200])
    return make_row(
        id=record.id, origin="ledger", kind=record.kind, recipe=record.recipe, codebase=record.codebase,
        sweep=record.sweep, seed=record.seed, overrides=record.overrides, state=record.state, smoke=record.smoke,
        executor=record.executor, gpus=record.gpus, elapsed_s=_elapsed(record), gpu_hours=gpu_hours(record),
        work_dir=str(record.work_dir), log_format=log.format, progress=log.progress, flags=flags,
        problems=problems, last=last, best=best, last_at=last_at, expectation=expectation, metrics=metrics,
        pick=pick,
    )


def _elapsed(record) -> float | None:
    if record.elapsed_s is not None:
        return record.elapsed_s
    if record.started_at is None:
        return None
    end = record.finished_at or (time.time() if record.state in _ACTIVE else None)
    return None if end is None else max(end - record.started_at, 0.0)


def row_from_import(path: Path, expectation: tuple[list[Expectation], float] | None, recipe: str | None,
                    metrics: list[str] | None, pick: str) -> RunRow:
    """A work dir trained elsewhere (any MMEngine or MMCV 1.x work dir); its state is 'IMPORTED'."""
    log = results.read_work_dir(path, train=False)
    last, best, last_at = _from_log(log, _all_metric_names(metrics, expectation))
    name = path.parent.name if path.name == "work_dir" else path.name  # a swinctl run dir: name it after the run
    return make_row(
        id=f"import:{name}", origin="import", kind="test" if log.test_metrics and not log.has_train else "train",
        recipe=recipe, codebase=_codebase_of(log), sweep=None, seed=None, overrides=[], state="IMPORTED",
        smoke=False, executor=None, gpus=None, elapsed_s=None, gpu_hours=None, work_dir=str(path),
        log_format=log.format, progress=log.progress, flags=log.flags, problems=list(log.problems), last=last,
        best=best, last_at=last_at, expectation=expectation, metrics=metrics, pick=pick,
    )


def _recipe_name(run_dir: Path) -> str | None:
    try:
        match = re.search(r"^name:[ \t]*(\S+)", (run_dir / "recipe.yaml").read_text(), re.M)
    except OSError:
        return None
    return match.group(1).strip("'\"") if match else None


def _codebase_of(log: results.RunLog) -> str | None:
    names = set(log.test_metrics)
    for point in log.val:
        names |= set(point.metrics)
    if "bbox_mAP" in names or "segm_mAP" in names:
        return "mmdet"
    if "mIoU" in names:
        return "mmseg"
    return None


# ---------------------------------------------------------------------------------------------- W&B

_RUN_ID = re.compile(r"^(?P<recipe>.+?)(?P<smoke>-smoke)?-\d{8}-\d{6}-[0-9a-f]{4}$")
_WANDB_STATES = {"finished": "COMPLETED", "running": "RUNNING", "crashed": "FAILED", "failed": "FAILED",
                 "killed": "CANCELLED", "preempted": "REQUEUED", "pending": "PENDING"}


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


def row_from_wandb(run, expectations: _Expectations, metrics: list[str] | None, pick: str,
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


def _wandb_path(selectors: list[str]) -> tuple[str, list[str]]:
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


# ---------------------------------------------------------------------------------------------- selection


def _ledger_records(root: Path) -> list:
    if not (root / "ledger.sqlite").is_file():
        return []
    from swinctl.ledger import Ledger

    return Ledger(root).list_runs()


def _select(records: list, selectors: list[str]) -> tuple[list, list[str]]:
    """The records named by the selectors (in ledger order), and the selectors that named nothing."""
    if not selectors:
        return records, []
    by_id = {r.id: r for r in records}
    chosen: set[str] = set()
    unmatched = []
    for selector in selectors:
        hits = [by_id[selector]] if selector in by_id else [r for r in records if r.id.startswith(selector)]
        if not hits:
            hits = [r for r in records if r.sweep == selector]
        if not hits:
            hits = [r for r in records if r.recipe == selector]
        if not hits:
            unmatched.append(selector)
        chosen.update(r.id for r in hits)
    return [r for r in records if r.id in chosen], unmatched


def _unmatched_message(unmatched: list[str], records: list, root: Path) -> str:
    import difflib

    if not records:
        return (f"no runs under {root} (no ledger there yet): {', '.join(unmatched)} cannot be found; "
                "set --root/SWINCTL_RUNS, or --import a work dir")
    names = sorted({r.id for r in records} | {r.sweep for r in records if r.sweep} | {r.recipe for r in records})
    hints = []
    for selector in unmatched:
        close = difflib.get_close_matches(selector, names, n=3, cutoff=0.5)
        if close:
            hints.append(f"did you mean {', '.join(close)}" + (f" for '{selector}'" if len(unmatched) > 1 else ""))
    verb = "matches" if len(unmatched) == 1 else "match"
    message = f"{', '.join(repr(s) for s in unmatched)} {verb} no run id, sweep or recipe in {root}"
    return message + (f" ({'; '.join(hints)}?)" if hints else "")


# ---------------------------------------------------------------------------------------------- aggregation


def _override_key(item: str) -> str:
    return item.partition("=")[0].strip()


def _is_seed(item: str) -> bool:
    key = _override_key(item).removeprefix("recipe.").removeprefix("cfg.")
    return key == "seed" or key.endswith(".seed")


def _aggregate(runs: list[RunRow], expectations_of: dict[str, tuple[list[Expectation], float] | None],
               ) -> list[GroupRow]:
    buckets: dict[tuple, list[RunRow]] = {}
    for row in runs:
        rest = tuple(sorted(o for o in row.overrides if not _is_seed(o)))
        key = (row.origin, row.recipe, row.kind, row.smoke, row.sweep, rest)
        buckets.setdefault(key, []).append(row)
    groups = []
    for (origin, recipe, kind, smoke, sweep, rest), rows in buckets.items():
        expectation = expectations_of.get(rows[0].id)
        expectations, tolerance = expectation if expectation else ([], None)
        aggregated = []
        for metric in [r.metric for r in rows[0].results]:
            values = [res.value for row in rows for res in row.results
                      if res.metric == metric and res.value is not None and (res.verdict in COUNTED or smoke)]
            mean = round(statistics.fmean(values), 4) if values else None
            std = round(statistics.stdev(values), 4) if len(values) > 1 else None
            refs = _references(mean, expectations, metric, tolerance or 0.0) if tolerance is not None else []
            if smoke:
                verdict = SMOKE
            elif mean is None:
                verdict = RUNNING if any(r.state in _ACTIVE for r in rows) else NO_METRICS
            else:
                verdict = refs[0].verdict if refs else NO_REFERENCE
            aggregated.append(GroupResult(metric, mean, std, len(values), values, tolerance, verdict, refs))
        label = " ".join(rest) or "(recipe defaults)"
        groups.append(GroupRow(
            key=f"{recipe or origin}{'-smoke' if smoke else ''}{f' [{sweep}]' if sweep else ''} {label}",
            recipe=recipe, kind=kind, sweep=sweep, smoke=smoke, overrides=list(rest), run_ids=[r.id for r in rows],
            seeds=[r.seed for r in rows], verdict=aggregated[0].verdict if aggregated else NO_METRICS,
            results=aggregated))
    return groups


def _varying(override_lists: list[list[str]]) -> list[str]:
    """Override keys whose value is not the same in every list (absent counts as a value)."""
    parsed = [dict((_override_key(o), o.partition("=")[2]) for o in items) for items in override_lists]
    keys = list(dict.fromkeys(k for d in parsed for k in d))
    return [k for k in keys if len({d.get(k) for d in parsed}) > 1]


def _sweeps(groups: list[GroupRow]) -> list[SweepTable]:
    tables = []
    for name in dict.fromkeys(g.sweep for g in groups if g.sweep):
        members = [g for g in groups if g.sweep == name]
        varying = _varying([g.overrides for g in members])
        metric = members[0].results[0].metric if members[0].results else "-"

        def score(g: GroupRow, metric: str = metric) -> float:
            res = next((r for r in g.results if r.metric == metric), None)
            return res.mean if res is not None and res.mean is not None else -math.inf

        ordered = sorted(members, key=score, reverse=True)
        points = []
        for rank, g in enumerate(ordered, 1):
            res = next((r for r in g.results if r.metric == metric), None)
            mean = res.mean if res else None
            points.append(SweepPoint(
                rank=rank, best=rank == 1 and mean is not None, overrides=g.overrides,
                varying={k: v for k, _, v in (o.partition("=") for o in g.overrides) if k.strip() in varying},
                run_ids=g.run_ids, mean=mean, std=res.std if res else None, n=res.n if res else 0,
                verdict=res.verdict if res else NO_METRICS))
        tables.append(SweepTable(name, metric, varying, points))
    return tables


# ---------------------------------------------------------------------------------------------- build


def build_report(
    runs_root: Path | str,
    selectors: Sequence[str] = (),
    *,
    metric: str | Sequence[str] | None = None,
    pick: str = "last",
    diff: bool = False,
    import_dirs: Sequence[Path | str] = (),
    source: str = "local",
) -> Report:
    """Gather, read and judge the runs named by `selectors` (run ids or id prefixes, sweep names, recipe names).

    No selectors: every run in the ledger. `metric`: the metric(s) to show (default: each recipe's expected
    metrics); the first decides sorting, sweeps and plots. `pick`: 'last' (the final validation or the test) or
    'best' (the best validation) is the value judged. `diff`: sweeps and tables show only the overrides that vary.
    `import_dirs`: work dirs trained elsewhere (or folders of them); a recipe selector, or a swinctl run dir's
    recipe.yaml next to them, gives their expected values. `source`: 'local' (logs + ledger) or 'wandb' (the W&B
    project named by a `wandb:ENTITY/PROJECT` selector, $WANDB_ENTITY/$WANDB_PROJECT, or 'swinctl').
    """
    if pick not in ("last", "best"):
        raise ReportError(f"pick must be 'last' or 'best', not '{pick}'")
    if source not in ("local", "wandb"):
        raise ReportError(f"unknown source '{source}': choose local or wandb")
    metrics = [metric] if isinstance(metric, str) else (list(metric) if metric else None)
    if metrics:
        unknown = [m for m in metrics if m not in results.CANONICAL_METRICS]
        if unknown:
            raise ReportError(f"unknown metric {', '.join(unknown)}: choose from "
                              f"{', '.join(results.CANONICAL_METRICS)}")
    selectors = list(selectors)
    expectations = _Expectations()
    rows: list[RunRow] = []
    problems: list[str] = []
    expectation_of: dict[str, tuple[list[Expectation], float] | None] = {}

    if source == "wandb":
        from swinctl import recipes

        if import_dirs:
            problems.append("--import reads local work dirs: ignored with --source wandb")
        path, rest = _wandb_path(selectors)
        known = list(recipes.available())
        for run in wandb_runs(path):
            row = row_from_wandb(run, expectations, metrics, pick, known)
            if rest and not any(s in (row.id, row.sweep, row.recipe) or row.id.startswith(s) for s in rest):
                continue
            rows.append(row)
            expectation_of[row.id] = expectations.for_recipe(row.recipe)
        if not rows:
            problems.append(f"no W&B runs in '{path}' match {', '.join(rest) or 'anything'}")
    else:
        records = _ledger_records(Path(runs_root))
        selected, unmatched = _select(records, selectors)
        if not selectors and import_dirs:
            selected = []  # `--import DIR` alone reports just the imported runs
        import_recipes = [s for s in selectors if s in {r.recipe for r in records}]
        if unmatched:
            from swinctl import recipes

            known = recipes.available()
            if not import_dirs or any(s not in known for s in unmatched):
                raise ReportError(_unmatched_message([s for s in unmatched if not import_dirs or s not in known],
                                                     records, Path(runs_root)))
            import_recipes += unmatched
        for record in selected:
            expectation = expectations.for_run(record.run_dir, record.recipe)
            rows.append(row_from_record(record, expectation, metrics, pick))
            expectation_of[record.id] = expectation
        import_recipes = list(dict.fromkeys(import_recipes))
        if import_dirs and len(import_recipes) > 1:
            problems.append("imported runs have no expected values: several recipes named "
                            f"({', '.join(import_recipes)})")
        recipe = import_recipes[0] if len(import_recipes) == 1 else None
        for entry in import_dirs:
            for work_dir in _import_targets(Path(entry)):
                run_dir = work_dir.parent if (work_dir.parent / "recipe.yaml").is_file() else None
                expectation = expectations.for_run(run_dir, recipe)
                name = recipe or (_recipe_name(run_dir) if run_dir else None)  # a swinctl run dir names its recipe
                row = row_from_import(work_dir, expectation, name, metrics, pick)
                rows.append(row)
                expectation_of[row.id] = expectation
        if not rows:
            problems.append("no runs to report")
    groups = _aggregate(rows, expectation_of)
    report = Report(source=source, pick=pick, metrics=metrics, selectors=selectors, diff=diff, runs=rows,
                    groups=[g for g in groups if g.primary is not None and g.primary.n > 1], sweeps=_sweeps(groups),
                    problems=problems)
    for row in rows:
        if row.recipe and row.recipe not in report.expectations and expectation_of.get(row.id):
            report.expectations[row.recipe] = expectation_of[row.id][0]
    return report


def _import_targets(path: Path) -> list[Path]:
    """`path` itself when it holds logs, else its sub-directories that do."""
    if not path.is_dir():
        raise ReportError(f"--import {path}: not a directory")
    if results.detect_format(path) != "none":
        return [path]
    found = sorted(p for p in path.iterdir() if p.is_dir() and results.detect_format(p) != "none")
    if not found and (path / "work_dir").is_dir():
        found = [path / "work_dir"]
    if not found:
        raise ReportError(f"--import {path}: no MMEngine or MMCV 1.x logs in it or in its sub-directories")
    return found


# ---------------------------------------------------------------------------------------------- plots


def figures(report: Report, *, max_runs: int = 12) -> list[tuple[str, bytes]]:
    """PNG learning curves, one figure per recipe: the first metric per validation (with the expected values as
    horizontal lines) and the training loss, one line per run (at most `max_runs`). Runs without local logs
    (W&B rows) are left out. Returns (name, PNG bytes) pairs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_recipe: dict[str, list[RunRow]] = {}
    for row in report.runs:
        if row.work_dir and row.results:
            by_recipe.setdefault(row.recipe or "imported", []).append(row)
    out = []
    for recipe, rows in by_recipe.items():
        metric = rows[0].results[0].metric
        fig = Figure(figsize=(11, 4.2), dpi=100)
        FigureCanvasAgg(fig)
        ax_metric, ax_loss = fig.subplots(1, 2)
        drawn = 0
        for row in rows[:max_runs]:
            log = results.read_work_dir(row.work_dir)
            label = _short_id(row)
            style = ":" if row.smoke else "-"  # smoke runs are no reproduction: dotted
            curve = [(it, v) for it, _, v in log.metric_curve(metric) if it is not None]
            if curve:
                ax_metric.plot(*zip(*curve, strict=True), style, marker="o", markersize=3, label=label)
            points = [(p.iter, p.loss) for p in log.train if p.loss is not None]
            if points:
                ax_loss.plot(*zip(*points, strict=True), style, linewidth=0.8, label=label)
            drawn += bool(curve or log.train)
        if not drawn:
            continue
        for i, e in enumerate(e for e in report.expectations.get(recipe, []) if e.metric == metric):
            ax_metric.axhline(e.value, linestyle="--", linewidth=1, color=f"C{(i + 7) % 10}",
                              label=f"expected {e.value:g} ({e.source})")
        ax_metric.set(title=f"{recipe}: {metric}", xlabel="iteration", ylabel=f"{metric} (%)")
        ax_loss.set(title=f"{recipe}: training loss", xlabel="iteration", ylabel="loss")
        for ax in (ax_metric, ax_loss):
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        if len(rows) > max_runs:
            fig.suptitle(f"first {max_runs} of {len(rows)} runs", fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        out.append((f"{_slug(recipe)}-{metric}.png", buf.getvalue()))
    return out


def save_plots(report: Report, out_dir: Path | str) -> list[Path]:
    """Write the learning-curve PNGs into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in figures(report):
        path = out_dir / name
        path.write_bytes(png)
        paths.append(path)
    return paths


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def _short_id(row: RunRow) -> str:
    if row.recipe and row.id.startswith(row.recipe + "-"):
        return row.id[len(row.recipe) + 1:]
    return row.id


# ---------------------------------------------------------------------------------------------- text helpers


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if std is not None else f"{mean:.2f}"


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _shown_overrides(report: Report) -> dict[str, list[str]]:
    """Each run's overrides as displayed: with `diff`, only the keys that vary across the report's runs."""
    if not report.diff:
        return {r.id: r.overrides for r in report.runs}
    varying = set(_varying([r.overrides for r in report.runs]))
    return {r.id: [o for o in r.overrides if _override_key(o) in varying] for r in report.runs}


def _group_label(report: Report, group: GroupRow) -> str:
    """A seed group as displayed: recipe [sweep] and its overrides (with `diff`, those that vary between groups)."""
    shown = group.overrides
    if report.diff:
        varying = set(_varying([g.overrides for g in report.groups]))
        shown = [o for o in group.overrides if _override_key(o) in varying]
    head = f"{group.recipe or '?'}{' (smoke)' if group.smoke else ''}{f' [{group.sweep}]' if group.sweep else ''}"
    return f"{head} {' '.join(shown) or '(recipe defaults)' if not report.diff or shown else ''}".strip()


def _point_overrides(report: Report, point: SweepPoint) -> list[str]:
    return [f"{k}={v}" for k, v in point.varying.items()] if report.diff else point.overrides


def _versus(refs: list[Reference], sep: str = "\n") -> str:
    """'-0.30 vs 42.6 (seed README)' per source."""
    return sep.join(f"{_num(r.delta, signed=True)} vs {r.expected:g} ({r.source})" for r in refs) or "-"


def _expected_cell(refs: list[Reference], sep: str) -> tuple[str, str]:
    return (sep.join(f"{r.expected:g} ({r.source})" for r in refs) or "-",
            sep.join(_num(r.delta, signed=True) for r in refs) or "-")


def _run_lines(report: Report) -> list[dict]:
    """One flat record per (run, metric): what every tabular format shows."""
    shown = _shown_overrides(report)
    lines = []
    for row in report.runs:
        for i, res in enumerate(row.results or [None]):
            lines.append({"row": row, "res": res, "first": i == 0, "last": i == len(row.results or [None]) - 1,
                          "overrides": shown[row.id]})
    return lines


# ---------------------------------------------------------------------------------------------- rich

_VERDICT_STYLES = {REPRODUCED: "bold green", BELOW: "bold red", ABOVE: "bold cyan", SMOKE: "dim", RUNNING: "yellow",
                   INCOMPLETE: "magenta", NO_METRICS: "dim", NO_REFERENCE: ""}


def rich_tables(report: Report) -> list:
    """The report as rich renderables (sweeps, seed groups, runs, problems), for `console.print(*...)`."""
    from rich.table import Table
    from rich.text import Text

    def verdict(text: str) -> Text:
        return Text(text, style=_VERDICT_STYLES.get(text, ""))

    def cells(*values) -> list[Text]:  # plain text: run ids, overrides ("[2,2,6,2]") and notes are not markup
        return [v if isinstance(v, Text) else Text(str(v)) for v in values]

    out: list = []
    for sweep in report.sweeps:
        table = Table(title=f"sweep {sweep.name}: {sweep.metric} ({report.pick})", title_justify="left")
        for column in ("#", "overrides" if not report.diff else "varying", sweep.metric, "n", "verdict", "runs"):
            table.add_column(column, overflow="fold")
        for p in sweep.points:
            table.add_row(*cells(Text(f"{p.rank}{' ★' if p.best else ''}", style="bold" if p.best else ""),
                                 "\n".join(_point_overrides(report, p)) or "(defaults)", _mean_std(p.mean, p.std),
                                 p.n, verdict(p.verdict), "\n".join(p.run_ids)))
        out.append(table)
    if report.groups:
        table = Table(title=f"seeds ({report.pick})", title_justify="left")
        for column in ("runs", "n", "seeds", "metric", "mean ± std", "Δ vs expected", "verdict"):
            table.add_column(column, overflow="fold")
        for g in report.groups:
            for i, res in enumerate(g.results):
                seeds = ", ".join("-" if s is None else str(s) for s in g.seeds)
                table.add_row(*cells(_group_label(report, g) if i == 0 else "", res.n, seeds if i == 0 else "",
                                     res.metric, _mean_std(res.mean, res.std), _versus(res.references),
                                     verdict(res.verdict)), end_section=i == len(g.results) - 1)
        out.append(table)
    table = Table(title=f"runs ({'best' if report.pick == 'best' else 'last'} value judged)", title_justify="left",
                  caption=_expected_caption(report), caption_justify="left")
    table.add_column("run", no_wrap=True)
    for column in ("overrides", "state", "metric", "last", "best", "Δ vs expected", "verdict", "GPU-h", "per GPU-h",
                   "notes"):
        table.add_column(column, overflow="fold")
    for line in _run_lines(report):  # one line per run and metric: rich costs about a millisecond per line
        row, res = line["row"], line["res"]
        first = line["first"]
        name = Text(row.id + (" [smoke]" if row.smoke else ""), style="dim" if row.smoke else "")
        table.add_row(*cells(
            name if first else "", " ".join(line["overrides"]) if first else "", row.state if first else "",
            res.metric if res else "-", _num(res.last) if res else "-", _num(res.best) if res else "-",
            " / ".join(_num(r.delta, signed=True) for r in res.references) if res and res.references else "-",
            verdict(res.verdict if res else row.verdict), _hours(row.gpu_hours) if first else "",
            _num(res.per_gpu_hour) if res else "-", "; ".join(row.problems) if first else ""))
    if not report.runs:
        table.add_row("(no runs)", *[""] * 10)
    out.append(table)
    for problem in report.problems:
        out.append(Text(problem, style="yellow"))
    return out


def _expected_caption(report: Report) -> str:
    """'expected: maskrcnn-swin-t bbox_mAP 42.6 (seed README ...) / 42.7 (MMDet 3.x metafile); ...' in table order."""
    parts = []
    for recipe, expectations in report.expectations.items():
        for metric in dict.fromkeys(e.metric for e in expectations):
            values = " / ".join(f"{e.value:g} ({e.source})" for e in expectations if e.metric == metric)
            parts.append(f"{recipe} {metric} {values}")
    return ("Δ vs expected: " + "; ".join(parts)) if parts else ""


def _rich_text(report: Report, width: int = 200) -> str:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, legacy_windows=False)
    for renderable in rich_tables(report):
        console.print(renderable)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- markdown / csv


def _md_cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def _md_table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(report: Report) -> str:
    parts = [f"# swinctl report\n\n{report.generated_at}, {len(report.runs)} runs, {report.pick} value judged\n"]
    for sweep in report.sweeps:
        parts.append(f"## Sweep {sweep.name}: {sweep.metric}\n")
        parts.append(_md_table(["#", "overrides", sweep.metric, "n", "verdict", "runs"], [
            [f"{p.rank}{' **best**' if p.best else ''}", " ".join(_point_overrides(report, p)) or "(defaults)",
             _mean_std(p.mean, p.std), p.n, p.verdict, " ".join(p.run_ids)] for p in sweep.points]) + "\n")
    if report.groups:
        parts.append("## Seeds\n")
        parts.append(_md_table(["runs", "n", "metric", "mean ± std", "expected", "Δ", "verdict"], [
            [_group_label(report, g), res.n, res.metric, _mean_std(res.mean, res.std),
             *_expected_cell(res.references, "; "),
             res.verdict] for g in report.groups for res in g.results]) + "\n")
    parts.append("## Runs\n")
    rows = []
    for line in _run_lines(report):
        row, res = line["row"], line["res"]
        expected, delta = _expected_cell(res.references, "; ") if res else ("-", "-")
        rows.append([row.id + (" (smoke)" if row.smoke else ""), " ".join(line["overrides"]), row.state,
                     res.metric if res else "-", _num(res.last) if res else "-", _num(res.best) if res else "-",
                     expected, delta, res.verdict if res else row.verdict, _hours(row.gpu_hours),
                     _num(res.per_gpu_hour) if res else "-", "; ".join(row.problems)])
    parts.append(_md_table(["run", "overrides", "state", "metric", "last", "best", "expected", "Δ", "verdict",
                            "GPU-h", "per GPU-h", "notes"], rows) + "\n")
    if report.problems:
        parts.append("## Notes\n\n" + "\n".join(f"- {p}" for p in report.problems) + "\n")
    return "\n".join(parts)


CSV_COLUMNS = ("run_id", "origin", "kind", "recipe", "sweep", "seed", "overrides", "state", "smoke", "metric",
               "value", "last", "best", "verdict", "source", "expected", "delta", "source_verdict", "tolerance",
               "gpus", "elapsed_s", "gpu_hours", "per_gpu_hour", "flags", "problems")


def _csv(report: Report) -> str:
    """Tidy CSV: one line per run, metric and expected-value source (one line with empty source columns when the
    metric has no reference). Overrides are joined with ';'."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.runs:
        for res in row.results:
            for ref in res.references or [None]:
                writer.writerow([
                    row.id, row.origin, row.kind, row.recipe or "", row.sweep or "",
                    "" if row.seed is None else row.seed,
                    ";".join(row.overrides), row.state, int(row.smoke), res.metric, _csv_num(res.value),
                    _csv_num(res.last), _csv_num(res.best), res.verdict, ref.source if ref else "",
                    _csv_num(ref.expected) if ref else "", _csv_num(ref.delta) if ref else "",
                    ref.verdict if ref else "", _csv_num(res.tolerance), "" if row.gpus is None else row.gpus,
                    _csv_num(row.elapsed_s), _csv_num(row.gpu_hours), _csv_num(res.per_gpu_hour),
                    ";".join(row.flags), " | ".join(row.problems)])
    return buf.getvalue()


def _csv_num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


# ---------------------------------------------------------------------------------------------- html

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0 2em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.reproduced { color: #1a7f37; font-weight: bold; } .below { color: #cf222e; font-weight: bold; }
.above { color: #0969da; font-weight: bold; } .smoke, .no-metrics { color: #888; }
.running { color: #9a6700; } .incomplete { color: #8250df; }
tr.best td { background: #eef9f0; } img { max-width: 100%; border: 1px solid #eee; }
"""


def _html_table(header: list[str], rows: list[tuple[list[object], str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for cells, css in rows:
        tds = []
        for cell in cells:
            if isinstance(cell, tuple):  # (text, class)
                tds.append(f'<td class="{cell[1]}">{html.escape(str(cell[0])).replace(chr(10), "<br>")}</td>')
            else:
                tds.append(f"<td>{html.escape(str(cell)).replace(chr(10), '<br>')}</td>")
        body.append(f'<tr class="{css}">' + "".join(tds) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _vclass(verdict: str) -> str:
    return re.sub(r"[^a-z]+", "-", verdict.split(" (")[0]).strip("-")


def _html(report: Report) -> str:
    parts = [f"<h1>swinctl report</h1><p>{html.escape(report.generated_at)} &middot; {len(report.runs)} runs "
             f"&middot; {report.pick} value judged</p>"]
    for sweep in report.sweeps:
        parts.append(f"<h2>Sweep {html.escape(sweep.name)}: {html.escape(sweep.metric)}</h2>")
        parts.append(_html_table(["#", "overrides", sweep.metric, "n", "verdict", "runs"], [
            ([f"{p.rank}{' ★' if p.best else ''}", "\n".join(_point_overrides(report, p)) or "(defaults)",
              (_mean_std(p.mean, p.std), "num"), p.n, (p.verdict, _vclass(p.verdict)), "\n".join(p.run_ids)],
             "best" if p.best else "") for p in sweep.points]))
    if report.groups:
        parts.append("<h2>Seeds</h2>")
        parts.append(_html_table(["runs", "n", "metric", "mean ± std", "expected", "Δ", "verdict"], [
            ([_group_label(report, g), res.n, res.metric, (_mean_std(res.mean, res.std), "num"),
              *_expected_cell(res.references, "\n"), (res.verdict, _vclass(res.verdict))], "")
            for g in report.groups for res in g.results]))
    parts.append("<h2>Runs</h2>")
    rows = []
    for line in _run_lines(report):
        row, res = line["row"], line["res"]
        expected, delta = _expected_cell(res.references, "\n") if res else ("-", "-")
        verdict = res.verdict if res else row.verdict
        rows.append(([row.id + (" (smoke)" if row.smoke else ""), "\n".join(line["overrides"]), row.state,
                      res.metric if res else "-", (_num(res.last) if res else "-", "num"),
                      (_num(res.best) if res else "-", "num"), expected, (delta, "num"), (verdict, _vclass(verdict)),
                      (_hours(row.gpu_hours), "num"), (_num(res.per_gpu_hour) if res else "-", "num"),
                      "\n".join(row.problems)], ""))
    parts.append(_html_table(["run", "overrides", "state", "metric", "last", "best", "expected", "Δ", "verdict",
                              "GPU-h", "per GPU-h", "notes"], rows))
    plots = figures(report)
    if plots:
        parts.append("<h2>Learning curves</h2>")
        for name, png in plots:
            data = base64.b64encode(png).decode("ascii")
            parts.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(name)}</figcaption></figure>")
    if report.problems:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(p)}</li>" for p in report.problems) + "</ul>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>swinctl report</title>'
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")


# ---------------------------------------------------------------------------------------------- render


def render(report: Report, fmt: str = "table", out: Path | str | None = None) -> str | Path:
    """The report as text in `fmt` (table, md, csv, json, html); written to `out` (and its path returned) if given.

    'table' is the rich tables as plain text (the CLI prints `rich_tables(report)` to the terminal instead);
    'html' is one self-contained file with the tables and the learning curves embedded as PNG.
    """
    if fmt not in FORMATS:
        raise ReportError(f"unknown format '{fmt}': choose one of {', '.join(FORMATS)}")
    if fmt == "table":
        text = _rich_text(report)
    elif fmt == "md":
        text = _markdown(report)
    elif fmt == "csv":
        text = _csv(report)
    elif fmt == "json":
        text = json.dumps(report.to_dict(), indent=2) + "\n"
    else:
        text = _html(report)
    if out is None:
        return text
    path = Path(out)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
