"""Planning a sweep: every point rendered, checked and signed, then marked submit or skip from the ledger.

Every point becomes an ordinary run (`runs.PreparedRun`) with the stable signature of its resolved config
(`render.signature`), so a point that already ran -- in this sweep or any other -- is shared, not trained again.
Nothing here writes anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swinctl import recipes, trust
from swinctl.job.files import State
from swinctl.sweep.space import Space, SweepError, format_value, point_overrides, point_tags

SWEEPS_DIR = "sweeps"  # RUNS_ROOT/sweeps/<name>/submitit holds a sweep's array logs


def sweep_dir(root: Path, name: str) -> Path:
    return Path(root) / SWEEPS_DIR / name



@dataclass
class PointPlan:
    index: int
    values: dict[str, Any]
    prepared: Any  # runs.PreparedRun: a new run for this point, materialized only if it is submitted
    current: Any = None  # ledger.RunRecord already serving this signature, if any
    action: str = "submit"  # submit | skip
    note: str = "new"

    @property
    def signature(self) -> str:
        return self.prepared.signature

    @property
    def overrides(self) -> list[str]:
        return point_overrides(self.values)


@dataclass
class Plan:
    name: str
    space: Space
    recipe: Any  # the base recipe (smoke and --set applied)
    root: Path
    executor: str
    max_parallel: int | None
    points: list[PointPlan]
    renders: int = 0
    existing_sweep: Any = None  # ledger.SweepInfo of an earlier invocation of this sweep

    @property
    def backend(self):
        from swinctl import backends

        return backends.get(self.executor)

    @property
    def to_submit(self) -> list[PointPlan]:
        return [p for p in self.points if p.action == "submit"]

    def groups(self) -> list[list[PointPlan]]:
        """Points to submit, grouped by the resources they ask for (one job array each)."""
        return _by_resources(self.to_submit)

    def parallelism(self, group_size: int, arrays: int = 1) -> int:
        """Points of a submission running at once; `arrays`: how many submissions share `--max-parallel` (a
        resource group cut into several job arrays): each gets its share, at least one."""
        if self.max_parallel:
            return min(max(1, self.max_parallel // arrays), group_size)
        return self.backend.default_parallelism(group_size)

    def arrays(self) -> list[tuple[list[PointPlan], int]]:
        """(points, how many run at once) of each submission: a resource group, cut into job arrays the scheduler
        takes (SLURM's MaxArraySize) that share its `--max-parallel`."""
        limit = self.backend.max_array_size()
        out = []
        for group in self.groups():
            size = limit or len(group)
            chunks = [group[start:start + size] for start in range(0, len(group), size)]
            out += [(chunk, self.parallelism(len(chunk), len(chunks))) for chunk in chunks]
        return out


def _by_resources(points: list[PointPlan]) -> list[list[PointPlan]]:
    """Points grouped by the resources they ask for, in order (variants share one Resources object: each is
    made a key once)."""
    keys: dict[int, str] = {}
    groups: dict[str, list[PointPlan]] = {}
    for point in points:
        resources = point.prepared.spec.resources
        if id(resources) not in keys:
            keys[id(resources)] = json.dumps(asdict(resources), sort_keys=True, default=str)
        groups.setdefault(keys[id(resources)], []).append(point)
    return list(groups.values())


def plan(space: Space, *, executor: str = "auto", wandb: str = "auto", root: Path | None = None,
         retry_failed: bool = False, force: bool = False, split_arrays: bool = False, ledger=None,
         scale_lr: bool = True) -> Plan:
    """Render and check every point; with a ledger, also decide which to submit. Writes nothing."""
    from swinctl.runs import lifecycle as runs

    root = runs.runs_root(root)
    base, _ = runs.resolve_recipe(space.recipe, list(space.sets), space.smoke)
    name = space.name or space.default_name(base.name)
    if not trust.SAFE_NAME.fullmatch(name):
        raise SweepError(f"sweep name '{name}': {trust.SAFE_NAME_RULE}")
    values_list = space.points(base.seed)
    run_ids: set[str] = set()

    def new_run_id() -> str:  # the ids `run` gives (the report parses them), distinct within the sweep
        while (run_id := runs.new_run_id(base, space.smoke)) in run_ids:
            pass
        run_ids.add(run_id)
        return run_id

    # Sort each point's overrides into recipe fields (a recipe variant, rendered once) and config keys.
    sides: dict[str, str | None] = {}  # swept key -> its config key, or None for a recipe field (same every point)
    for key, value in values_list[0].items():
        on_recipe, on_config = recipes.split_overrides(base, [f"{key}={format_value(value)}"])
        sides[key] = None if on_recipe else on_config[0][0]
    to_prepare = [runs.Point(new_run_id(), recipe_texts=tuple(f"{k}={format_value(v)}" for k, v in values.items()
                                                              if sides[k] is None),
                             config_values=tuple((sides[k], v) for k, v in values.items() if sides[k] is not None),
                             overrides=tuple(point_overrides(values)), tags=tuple(point_tags(values)))
                  for values in values_list]
    preparer = runs.Preparer(space.recipe, overrides=space.sets, smoke=space.smoke, executor=executor, wandb=wandb,
                             root=root, sweep=name, scale_lr=scale_lr)
    prepared = preparer.prepare(to_prepare)
    points = [PointPlan(index=i, values=v, prepared=p) for i, (v, p) in enumerate(zip(values_list, prepared,
                                                                                       strict=True))]

    groups = _by_resources(points)
    if len(groups) > 1 and not split_arrays:
        first, other = (asdict(g[0].prepared.spec.resources) for g in groups[:2])
        differ = "; ".join(f"resources.{k}: {first[k]!r} vs {other[k]!r}" for k in first if first[k] != other[k])
        raise SweepError(f"points ask for different resources ({differ}), which would split the sweep into "
                         f"{len(groups)} job arrays; sweep resources in separate sweeps, or pass --split-arrays")

    seen: dict[str, int] = {}
    for point in points:
        if point.signature in seen:
            first = points[seen[point.signature]]
            raise SweepError(f"points {first.index} ({', '.join(first.overrides)}) and {point.index} "
                             f"({', '.join(point.overrides)}) resolve to the same config: a swept key that does not "
                             "change what is trained, or a repeated value?")
        seen[point.signature] = point.index

    result = Plan(name=name, space=space, recipe=base, root=root, executor=points[0].prepared.spec.executor,
                  max_parallel=space.max_parallel, points=points, renders=len(preparer.variants))
    if ledger is not None:
        check_existing(result, ledger)
        decide(result, ledger, retry_failed=retry_failed, force=force)
    return result


def check_existing(plan_: Plan, ledger) -> None:
    plan_.existing_sweep = ledger.get_sweep(plan_.name)
    wanted = spec_json(plan_.space, plan_.recipe.name)
    if plan_.existing_sweep and plan_.existing_sweep.spec != wanted:
        had = plan_.existing_sweep.spec
        differ = "; ".join(f"{k}: {json.dumps(had.get(k))} before, {json.dumps(wanted.get(k))} now"
                           for k in sorted(set(had) | set(wanted)) if had.get(k) != wanted.get(k))
        raise SweepError(f"a sweep named '{plan_.name}' already exists with a different space ({differ}); give this "
                         "one another --name (or name: in the sweep file)")


def spec_json(space: Space, recipe_name: str) -> dict:
    return json.loads(json.dumps(space.canonical(recipe_name), sort_keys=True, default=str))


def _serving(records: list) -> tuple[Any, Any]:
    """(the run that serves a signature -- completed, or queued/running --, the newest failed one), of runs just
    refreshed."""
    serving = failed = None
    for record in sorted(records, key=lambda r: r.created_at, reverse=True):
        if record.job_id is None and not record.is_active:
            continue  # ended before it reached a scheduler: it never ran
        if record.state == State.COMPLETED and (serving is None or serving.state != State.COMPLETED):
            serving = record
        elif record.is_active and serving is None:
            serving = record
        elif record.state in (State.FAILED, State.CANCELLED, State.TIMEOUT) and failed is None:
            failed = record
    return serving, failed


def decide(plan_: Plan, ledger, *, retry_failed: bool, force: bool) -> None:
    """Mark each point submit or skip, from the runs the ledger holds with the same signature."""
    from swinctl.runs import sync

    wanted = {p.signature for p in plan_.points}
    by_signature: dict[str, list] = {}
    for record in sync.refresh_all(ledger, [r for r in ledger.list_runs() if r.kind == "train"
                                            and r.signature in wanted]):
        by_signature.setdefault(record.signature, []).append(record)
    for point in plan_.points:
        serving, failed = _serving(by_signature.get(point.signature, []))
        if force:
            point.action, point.current = "submit", serving or failed
            point.note = f"rerun (--force; was {point.current.id})" if point.current else "new"
            continue
        if serving is not None:
            point.action, point.current = "skip", serving
            own = serving.sweep == plan_.name
            verb = "done" if serving.state == State.COMPLETED else serving.state.lower()
            point.note = f"{verb}: {serving.id}" if own else f"shared with {serving.id} ({verb})"
        elif failed is not None and not retry_failed:
            point.action, point.current = "skip", failed
            point.note = f"{failed.state.lower()}: {failed.id} (--retry-failed to rerun)"
        elif failed is not None:
            point.action, point.current, point.note = "submit", failed, f"retry of {failed.id}"
        else:
            point.action, point.note = "submit", "new"
