"""The report's data model: what a report holds, the names of its verdicts and run states, its JSON and the JSON
schema generated from these classes (:func:`json_schema`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Literal

from typing_extensions import TypedDict  # pydantic reads typing.TypedDict only from Python 3.12

from swinctl.errors import UserError
from swinctl.job.files import ACTIVE_STATES, ENDED_EARLY  # noqa: F401  (ENDED_EARLY: re-exported)
from swinctl.runs.cost import Cost

SCHEMA_VERSION = 1
FORMATS = ("table", "md", "csv", "json", "html")

# Run states: the ledger's (SLURM's names), and the one a report gives runs trained elsewhere.
ACTIVE = ACTIVE_STATES
IMPORTED = "IMPORTED"

# Verdicts, per metric and run (precedence top to bottom), see swinctl.report's docstring.
SMOKE = "smoke (not a reproduction)"
NO_METRICS = "no metrics"
RUNNING = "running"
INCOMPLETE = "incomplete"
NO_REFERENCE = "no reference"
REPRODUCED, BELOW, ABOVE = "reproduced", "below", "above"
DIVERGED = "diverged"
VERDICTS = (SMOKE, DIVERGED, NO_METRICS, RUNNING, INCOMPLETE, NO_REFERENCE, REPRODUCED, BELOW, ABOVE)
COUNTED = (REPRODUCED, BELOW, ABOVE, NO_REFERENCE)  # verdicts whose value enters a seed mean

Verdict = Literal["smoke (not a reproduction)", "diverged", "no metrics", "running", "incomplete", "no reference",
                  "reproduced", "below", "above"]


class ReportError(UserError):
    """The report cannot be built or written as asked; the message (one line) says why and what to do."""


def _internal(default=None, factory=None):
    """A field the report uses but its JSON leaves out."""
    if factory is not None:
        return field(default_factory=factory, metadata={"json": False})
    return field(default=default, metadata={"json": False})


@dataclass(frozen=True)
class Expectation:
    metric: str
    value: float
    source: str


@dataclass
class Reference:
    """One published value a result is compared with."""

    source: str
    expected: float
    delta: float | None  # value (or mean) minus expected
    verdict: Verdict


class At(TypedDict):
    """Where a value was measured."""

    iter: int | None
    epoch: int | None


class Progress(TypedDict):
    iter: int | None
    total: int | None
    epoch: int | None
    max_epochs: int | None
    eta_s: float | None
    phase: str | None


class ReferenceCheck(TypedDict):
    """A run's validations against its recipe's reference training log (swinctl.guard.reference)."""

    source: str
    url: str
    tolerance: float
    behind: bool
    summary: str
    problem: str | None
    points: list[dict]


@dataclass
class MetricResult:
    metric: str
    value: float | None  # the picked one (last or best)
    last: float | None
    best: float | None
    at: At | None  # where `value` was measured
    best_at: At | None
    per_gpu_hour: float | None
    tolerance: float | None
    verdict: Verdict
    references: list[Reference] = field(default_factory=list)


@dataclass
class RunRow:
    id: str
    origin: Literal["ledger", "import", "wandb"]
    kind: Literal["train", "test"]
    recipe: str | None
    codebase: Literal["mmdet", "mmseg"] | None
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
    log_format: Literal["mmengine", "mmcv1", "none", "wandb"]
    progress: Progress | None
    flags: list[str]
    problems: list[str]
    verdict: Verdict  # of the first metric
    results: list[MetricResult]
    cost: Cost | None = None  # GPU-hours, or CPU-hours where no GPU was used; with node-hours
    # how the run differs from its recipe's published setting (swinctl.guard), listed next to every verdict
    deviations: list[str] = field(default_factory=list)
    reference: ReferenceCheck | None = None  # its validations against the recipe's reference log
    tested_by: str | None = None  # the `--test-after` test whose result is judged (not the last validation)
    published_weights: str | None = None  # a test of the recipe's released checkpoint (its URL or file)
    notes: list[str] = field(default_factory=list)  # what its verdicts mean, in words (published weights)
    short_id: str | None = _internal()  # as tables show it (full ids in JSON)
    config_key: str | None = _internal()  # an import's configuration (its config's name): its seeds share it

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
    verdict: Verdict
    references: list[Reference] = field(default_factory=list)  # delta of the mean


@dataclass
class GroupRow:
    """Runs that differ only by seed (two or more)."""

    key: str
    recipe: str | None
    kind: str
    sweep: str | None
    smoke: bool
    overrides: list[str]
    run_ids: list[str]
    seeds: list[int | None]
    verdict: Verdict
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
    verdict: Verdict


@dataclass
class SweepTable:
    name: str
    metric: str
    varying: list[str]  # override keys that differ between the points
    points: list[SweepPoint]
    deviations: list[str] = field(default_factory=list)  # from the published setting, shared by every point's runs


@dataclass
class Report:
    source: Literal["local", "wandb"]
    pick: Literal["last", "best"]  # which value the verdicts use
    metrics: list[str] | None  # as requested; None: each recipe's expected metrics
    selectors: list[str]
    runs: list[RunRow]
    groups: list[GroupRow]
    sweeps: list[SweepTable]
    problems: list[str]  # report-wide notes
    generated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    diff: bool = _internal(False)
    expectations: dict[str, list[Expectation]] = _internal(factory=dict)  # per recipe, for captions and plots

    def to_dict(self) -> dict:
        """The JSON document (:func:`json_schema` describes it)."""
        return {"schema_version": SCHEMA_VERSION, **_plain(self)}


_EXPORTED: dict[type, tuple[str, ...]] = {}  # a dataclass's fields that its JSON has


def _plain(value):
    """Dataclasses -> dicts, recursively, without the internal fields (dataclasses.asdict deep-copies every leaf:
    ten times slower here)."""
    if hasattr(value, "__dataclass_fields__"):
        names = _EXPORTED.get(type(value))
        if names is None:
            names = _EXPORTED[type(value)] = tuple(f.name for f in fields(value) if f.metadata.get("json", True))
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of `render(report, "json")`, generated from the classes above.

    Values are percent points (mAP 42.6, mIoU 44.3); `generated_at` is ISO 8601 in UTC. Fields are only ever
    added within a schema version.
    """
    from pydantic import TypeAdapter

    schema = TypeAdapter(Report).json_schema(mode="serialization")
    _drop_internal(schema, Report)
    for name, definition in schema.get("$defs", {}).items():
        if name in _CLASSES:
            _drop_internal(definition, _CLASSES[name])
    for name in [n for n in schema.get("$defs", {}) if f'"#/$defs/{n}"' not in json.dumps(schema)]:
        del schema["$defs"][name]  # only internal fields used it
    for definition in schema.get("$defs", {}).values():
        definition["additionalProperties"] = False
    schema["properties"] = {"schema_version": {"const": SCHEMA_VERSION, "type": "integer"}, **schema["properties"]}
    schema["required"] = list(schema["properties"])
    schema["title"] = f"swinctl report, schema_version {SCHEMA_VERSION}"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def _drop_internal(schema: dict, cls: type) -> None:
    for f in fields(cls):
        if not f.metadata.get("json", True):
            schema.get("properties", {}).pop(f.name, None)
    schema["additionalProperties"] = False
    schema["required"] = list(schema.get("properties", {}))  # every field is written, None where unknown


_CLASSES = {cls.__name__: cls for cls in (Reference, MetricResult, RunRow, GroupResult, GroupRow, SweepPoint,
                                          SweepTable, Report, Cost)}
