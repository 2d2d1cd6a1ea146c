"""Sweeps: a space of overrides on one recipe -> one run per point, deduplicated by signature, submitted as job
arrays (or a local runner), resumable after a crash.

- :mod:`.space`: the space's grammar (grid, zip, random, seeds, ties; sweep files);
- :mod:`.plan`: every point rendered, checked and signed, then marked submit or skip;
- :mod:`.submit`: under the runs root's lock, the lifecycle `run` shares (swinctl.runs.submission);
- :mod:`.table`: the sweep's and the plan's tables.
"""

from swinctl.sweep.plan import SWEEPS_DIR, Plan, PointPlan, decide, plan, sweep_dir
from swinctl.sweep.space import (
    Distribution,
    Space,
    SweepError,
    Tie,
    format_value,
    is_sweep_file,
    load_space,
    parse_distribution,
    parse_tie,
    parse_values,
    point_overrides,
    point_tags,
)
from swinctl.sweep.submit import CONFIRM_ABOVE, Submission, run_sweep, submit
from swinctl.sweep.table import SweepRow, active, default_metric, plan_table, sweep_rows, sweep_table

__all__ = ["SWEEPS_DIR", "CONFIRM_ABOVE", "Distribution", "Plan", "PointPlan", "Space", "Submission", "SweepError",
           "SweepRow", "Tie", "active", "decide", "default_metric", "format_value", "is_sweep_file", "load_space",
           "parse_distribution", "parse_tie", "parse_values", "plan", "plan_table", "point_overrides", "point_tags",
           "run_sweep", "submit", "sweep_dir", "sweep_rows", "sweep_table"]
