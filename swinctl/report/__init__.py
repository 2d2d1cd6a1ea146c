"""The report: runs, seeds and sweeps against the published numbers, as a table, Markdown, CSV, JSON or HTML.

`build_report` gathers runs (from the ledger, imported work dirs, or a W&B project), reads their logs with
:mod:`swinctl.results`, and compares the chosen metrics with the expected values of each run's recipe (one per source:
the seed README, the MMDet/MMSeg metafile) within the recipe's tolerance. `render` turns the result into text or a
file; `rich_tables` gives the renderables the CLI prints. Nothing here imports torch or the OpenMMLab packages;
matplotlib, jinja2 and wandb are imported only by the functions that need them.

The package: :mod:`~swinctl.report.model` (the data model, verdict and state names, the JSON schema),
:mod:`~swinctl.report.sources` and :mod:`~swinctl.report.wandb_source` (rows from the ledger, --import, W&B),
:mod:`~swinctl.report.judging` (expected values, verdicts, seeds, sweeps), :mod:`~swinctl.report.build`,
:mod:`~swinctl.report.columns` (every table's columns, once for all formats), :mod:`~swinctl.report.render` (terminal,
Markdown and HTML from templates/, CSV, JSON) and :mod:`~swinctl.report.plots`.

Verdicts, per metric and run (precedence top to bottom):

* ``smoke (not a reproduction)``: a smoke run; never counted as a reproduction.
* ``diverged``: the last validation logged NaN or Infinity (training diverged).
* ``no metrics``: no validation/test metric for it yet.
* ``running``: the run is still active (PENDING/RUNNING/REQUEUED); the value is the latest.
* ``incomplete``: the run ended without finishing (FAILED/CANCELLED/TIMEOUT, or its logs stop early).
* ``no reference``: the recipe has no expected value for that metric.
* ``reproduced`` / ``below`` / ``above``: the value against the first expected value listed for the metric
  (``|delta| <= tolerance``); every source also gets its own delta and verdict.

JSON (`render(report, "json")`, `Report.to_dict()`): one object with "schema_version" (1), "generated_at", "source",
"pick", "metrics", "selectors", "runs" (each run with its "cost" and, per metric, "results": value, last, best,
per_gpu_hour, verdict and "references", one per published source; a test of the recipe's released checkpoint has
its "published_weights" and "notes" that say what its verdicts mean: "published weights: 42.7 box mAP vs 42.7
expected: data and evaluation OK"), "groups" (seeds), "sweeps" and "problems".
Its JSON Schema is generated from the data model: :func:`json_schema`, or ``swinctl report --schema``. Values are
percent points (mAP 42.6, mIoU 44.3). Fields are only ever added within a schema version.
"""

from swinctl.report.build import build_report
from swinctl.report.columns import CSV_COLUMNS
from swinctl.report.judging import Expectations, compare
from swinctl.report.model import (
    ABOVE,
    BELOW,
    COUNTED,
    DIVERGED,
    FORMATS,
    INCOMPLETE,
    NO_METRICS,
    NO_REFERENCE,
    REPRODUCED,
    RUNNING,
    SCHEMA_VERSION,
    SMOKE,
    VERDICTS,
    Expectation,
    GroupResult,
    GroupRow,
    MetricResult,
    Reference,
    Report,
    ReportError,
    RunRow,
    SweepPoint,
    SweepTable,
    json_schema,
)
from swinctl.report.plots import check_plots_dir, figures, save_plots
from swinctl.report.render import check_out, render, rich_tables
from swinctl.report.sources import make_row, row_from_import, row_from_record
from swinctl.report.wandb_source import row_from_wandb, wandb_runs

_Expectations = Expectations  # the name the tests and older callers use

__all__ = [
    "ABOVE", "BELOW", "COUNTED", "CSV_COLUMNS", "FORMATS", "INCOMPLETE", "NO_METRICS", "NO_REFERENCE", "REPRODUCED",
    "RUNNING", "SCHEMA_VERSION", "SMOKE", "VERDICTS", "DIVERGED",
    "Expectation", "Expectations", "GroupResult", "GroupRow",
    "MetricResult", "Reference", "Report", "ReportError", "RunRow", "SweepPoint", "SweepTable", "build_report",
    "check_out", "check_plots_dir", "compare", "figures", "json_schema", "make_row", "render", "rich_tables",
    "row_from_import", "row_from_record", "row_from_wandb", "save_plots", "wandb_runs",
]
