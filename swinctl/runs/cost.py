"""What a run cost: device-hours of the GPUs it held, or of the CPU cores its recipe asked for."""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from pathlib import Path

from swinctl.runs.ledger import RunRecord


@dataclass(frozen=True)
class Cost:
    """What a run cost: device-hours of the GPUs it held, or of its CPU cores where it used no GPU."""

    unit: str  # "GPU-h" or "CPU-h"
    hours: float  # devices x wall-clock hours
    devices: int  # GPUs, or CPU cores (nodes x tasks per node x CPUs per task)
    node_hours: float  # nodes x wall-clock hours


def elapsed_s(record: RunRecord) -> float | None:
    """Wall-clock seconds the run has been running (or ran); None before it started."""
    if record.elapsed_s is not None:
        return record.elapsed_s
    if record.started_at is None:
        return None
    end = record.finished_at or (time.time() if record.is_active else None)
    return None if end is None else max(end - record.started_at, 0.0)


def gpu_hours(record: RunRecord) -> float | None:
    elapsed = elapsed_s(record)
    return round(max(record.gpus, 0) * elapsed / 3600, 4) if record.gpus and elapsed is not None else None


_RESOURCES = re.compile(r"^resources:[ \t]*\n(?:[ \t]+[^\n]*(?:\n|$))*", re.M)


@functools.lru_cache(maxsize=256)
def _parse_resources(block: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError:
        return {}
    resources = data.get("resources") if isinstance(data, dict) else None
    return resources if isinstance(resources, dict) else {}


def resources_of(run_dir: Path, text: str | None = None) -> dict:
    """The `resources:` of a run's resolved recipe.yaml (its `text` when already read; {} when it cannot be read).
    Only that block is parsed, once for every run that has the same."""
    if text is None:
        try:
            text = (run_dir / "recipe.yaml").read_text()
        except OSError:
            return {}
    match = _RESOURCES.search(text)
    return _parse_resources(match.group(0)) if match else {}


def _count(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def cost(record: RunRecord, resources: dict | None = None) -> Cost | None:
    """GPU-hours where the run held GPUs, else CPU-hours of the cores its recipe asked for (nodes x tasks per
    node x CPUs per task), with node-hours either way; None before it started or when a CPU run's recipe.yaml
    is gone (its cores are not known)."""
    elapsed = elapsed_s(record)
    if elapsed is None:
        return None
    if resources is None:
        resources = resources_of(record.run_dir)
    nodes = _count(resources.get("nodes"), 1)
    hours = elapsed / 3600
    if record.gpus and record.gpus > 0:
        return Cost("GPU-h", round(record.gpus * hours, 4), record.gpus, round(nodes * hours, 4))
    if not resources:
        return None
    cores = nodes * _count(resources.get("tasks_per_node"), 1) * _count(resources.get("cpus_per_task"), 1)
    return Cost("CPU-h", round(cores * hours, 4), cores, round(nodes * hours, 4))
