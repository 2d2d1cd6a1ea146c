"""Reference training logs: a recipe's published log (`reference_log:`), downloaded once and cached, read as JSON
lines by :mod:`swinctl.results`, and a run's validations compared with it at the same epoch (epoch-based runs) or
iteration (iteration-based), so a reproduction that falls behind is flagged after its first evaluation.

Cache: ``$SWINCTL_CACHE/reference-logs/<hash of the URL>/`` laid out as a work dir of the log's format (an MMCV 1.x
``<name>.log.json``, or MMEngine's ``<ts>/vis_data/scalars.json``), so the one results parser reads it. A local file
is read in place (through the same layout). Downloads happen where a reference is first needed (`run`, `status`,
`report`) unless ``SWINCTL_OFFLINE=1``; a failed download is reported once per process and never retried in a loop.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swinctl import results
from swinctl.guard.pretrained import PretrainedError, cache_dir, download, offline

_URL = re.compile(r"[a-z][a-z0-9+.-]*://")
METRIC_WORDS = results.METRIC_WORDS
_failed: dict[str, str] = {}  # url -> why, for this process


class ReferenceUnavailable(Exception):
    """The reference log cannot be had (not cached offline, download failed, file missing)."""


@dataclass(frozen=True)
class ReferenceSpec:
    """A run's reference log as its recipe names it, with what to compare."""

    url: str
    format: str | None
    source: str
    tolerance: float
    metrics: tuple[str, ...]


@dataclass
class PointComparison:
    metric: str
    epoch: int | None
    iter: int | None
    value: float
    reference: float
    delta: float  # value - reference (percent points)
    behind: bool

    @property
    def at(self) -> str:
        return f"epoch {self.epoch}" if self.epoch is not None else f"iteration {self.iter:,}"

    def sentence(self) -> str:
        word = METRIC_WORDS.get(self.metric, self.metric)
        return f"{self.at}: {self.value:.1f} {word} vs {self.reference:.1f} in the reference log"


@dataclass
class Comparison:
    """A run against its reference log: every matched evaluation, and whether the latest is behind."""

    source: str
    url: str
    tolerance: float
    points: list[PointComparison] = field(default_factory=list)
    problem: str | None = None  # why nothing could be compared

    @property
    def latest(self) -> list[PointComparison]:
        if not self.points:
            return []
        last = max((p.epoch or 0, p.iter or 0) for p in self.points)
        return [p for p in self.points if ((p.epoch or 0), (p.iter or 0)) == last]

    @property
    def behind(self) -> bool:
        return any(p.behind for p in self.latest)

    def summary(self) -> str:
        if self.problem:
            return f"reference log: {self.problem}"
        if not self.points:
            return "reference log: no evaluation at an epoch or iteration the reference has yet"
        worst = min(self.latest, key=lambda p: p.delta)
        head = "behind reference" if self.behind else "on track"
        return f"{head}: {worst.sentence()} (tolerance {self.tolerance:g})"

    def to_dict(self) -> dict:
        return {"source": self.source, "url": self.url, "tolerance": self.tolerance, "behind": self.behind,
                "summary": self.summary(), "problem": self.problem, "points": [asdict(p) for p in self.points]}


def _format_of(url: str, given: str | None) -> str:
    if given:
        return given
    name = os.path.basename(url.split("?", 1)[0])
    return "mmengine" if name.endswith("scalars.json") or not name.endswith(".log.json") else "mmcv1"


def _layout_path(folder: Path, url: str, fmt: str) -> Path:
    if fmt == "mmengine":
        return folder / "19700101_000000" / "vis_data" / "scalars.json"
    name = os.path.basename(url.split("?", 1)[0])
    return folder / (name if name.endswith(".log.json") else "reference.log.json")


def fetch(url: str, fmt: str | None = None) -> Path:
    """The work dir (in the cache) that holds the reference log `url`; downloads or copies it once."""
    fmt = _format_of(url, fmt)
    folder = cache_dir() / "reference-logs" / hashlib.sha256(f"{url}|{fmt}".encode()).hexdigest()[:16]
    target = _layout_path(folder, url, fmt)
    if _URL.match(url):
        if target.is_file():
            return folder
        if url in _failed:
            raise ReferenceUnavailable(_failed[url])
        if offline():
            raise ReferenceUnavailable("not cached and SWINCTL_OFFLINE is set")
        try:
            download(url, target)
        except PretrainedError as exc:
            _failed[url] = f"cannot be downloaded ({str(exc).split('(', 1)[-1].split(')', 1)[0]})"
            raise ReferenceUnavailable(_failed[url]) from None
        return folder
    source = Path(url).expanduser()
    if source.is_dir():
        return source  # a work dir: read as it is
    if not source.is_file():
        raise ReferenceUnavailable(f"{source} not found")
    stat = source.stat()
    if not target.is_file() or target.stat().st_size != stat.st_size or target.stat().st_mtime < stat.st_mtime:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return folder


def read(url: str, fmt: str | None = None) -> results.RunLog:
    return results.read_work_dir(fetch(url, fmt), train=False)


def compare(run: results.RunLog, reference: results.RunLog, metrics: tuple[str, ...], tolerance: float
            ) -> list[PointComparison]:
    """Each of the run's validations that the reference has at the same epoch (or, iteration-based, iteration)."""
    by_epoch = {p.epoch: p for p in reference.val if p.epoch is not None}
    by_iter = {p.iter: p for p in reference.val if p.epoch is None and p.iter is not None}
    out = []
    for point in run.val:
        ref = by_epoch.get(point.epoch) if point.epoch is not None else by_iter.get(point.iter)
        if ref is None:
            continue
        for metric in metrics:
            if metric in point.metrics and metric in ref.metrics:
                value, expected = point.metrics[metric], ref.metrics[metric]
                delta = round(value - expected, 4)
                out.append(PointComparison(metric, point.epoch, point.iter if point.epoch is None else None, value,
                                           expected, delta, delta < -tolerance - 1e-9))
    return out


def spec_of(recipe_data: dict[str, Any]) -> ReferenceSpec | None:
    """The reference log a resolved recipe (a dict, as in a run dir's recipe.yaml) names, or None."""
    ref = recipe_data.get("reference_log") if isinstance(recipe_data, dict) else None
    if not isinstance(ref, dict) or not isinstance(ref.get("url"), str):
        return None
    tolerance = ref.get("tolerance")
    if not isinstance(tolerance, (int, float)):
        tolerance = recipe_data.get("tolerance", 0.5)
    expected = recipe_data.get("expected") or []
    metrics = tuple(dict.fromkeys(e["metric"] for e in expected if isinstance(e, dict) and e.get("metric")))
    if not metrics:
        metrics = (results.PRIMARY_METRIC.get(str(recipe_data.get("codebase")), "bbox_mAP"),)
    return ReferenceSpec(ref["url"], ref.get("format"), str(ref.get("source") or "reference log"),
                         float(tolerance), metrics)


def _recipe_data(run_dir: Path) -> dict:
    import yaml

    try:
        text = (Path(run_dir) / "recipe.yaml").read_text()
        data = yaml.safe_load(text) if len(text) <= 1 << 20 else None
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def compare_run(run_dir: Path, work_dir: Path, *, run_log: results.RunLog | None = None) -> Comparison | None:
    """The run (its recipe.yaml and logs) against its recipe's reference log; None when it names none."""
    spec = spec_of(_recipe_data(run_dir))
    if spec is None:
        return None
    comparison = Comparison(spec.source, spec.url, spec.tolerance)
    try:
        reference = read(spec.url, spec.format)
    except (ReferenceUnavailable, OSError) as exc:
        comparison.problem = f"{spec.url}: {exc}"
        return comparison
    if not reference.val:
        comparison.problem = f"{spec.url}: no validation metrics in it"
        return comparison
    run_log = run_log if run_log is not None else results.read_work_dir(work_dir, train=False)
    comparison.points = compare(run_log, reference, spec.metrics, spec.tolerance)
    return comparison


def reference_curve(run_dir: Path, metric: str) -> tuple[str, list[tuple[int | None, int | None, float]]] | None:
    """(source, [(iter, epoch, value)]) of `metric` in the run's reference log, for plots; None without one."""
    spec = spec_of(_recipe_data(run_dir))
    if spec is None:
        return None
    try:
        reference = read(spec.url, spec.format)
    except (ReferenceUnavailable, OSError):
        return None
    curve = reference.metric_curve(metric)
    return (spec.source, curve) if curve else None
