"""Planning a sweep: every point rendered, checked and signed, then marked submit or skip from the ledger.

Every point becomes an ordinary run (`runs.PreparedRun`) with the stable signature of its resolved config
(`render.signature`), so a point that already ran -- in this sweep or any other -- is shared, not trained again.
Nothing here writes anything.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from swinctl import recipes, trust
from swinctl.job.files import State
from swinctl.sweep.space import Space, SweepError, format_value, point_overrides, point_tags

SWEEPS_DIR = "sweeps"  # RUNS_ROOT/sweeps/<name>/submitit holds a sweep's array logs
_TEMPLATE_ID = "__swinctl_sweep_point__"
_TAGS_MARK = "__swinctl_point_tags__"


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
        groups: dict[str, list[PointPlan]] = {}
        for point in self.to_submit:
            groups.setdefault(_resources_key(point.prepared.spec.resources), []).append(point)
        return list(groups.values())

    def parallelism(self, group_size: int) -> int:
        if self.max_parallel:
            return min(self.max_parallel, group_size)
        return self.backend.default_parallelism(group_size)


def _resources_key(resources) -> str:
    return json.dumps(asdict(resources), sort_keys=True, default=str)


def _placeholder(index: int) -> str:
    return f"__swinctl_sweep_value_{index}__"


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """A config as dotted keys -> values, through dicts and lists of dicts (`param_scheduler.1.eta_min`); other
    values (numbers, strings, lists of numbers) are leaves: where the pretty-printer writes a plain literal."""
    if isinstance(node, dict) and node:
        items = node.items()
    elif isinstance(node, (list, tuple)) and node and all(isinstance(v, dict) for v in node):
        items = enumerate(node)
    else:
        return {prefix[:-1]: node}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(_leaves(value, f"{prefix}{key}."))
    return out


class _Renderer:
    """A sweep's points without a full render and format each (about 0.6 s apiece; a 1,000-point sweep would
    take ten minutes): the recipe is resolved and checked once, each recipe variant is rendered from the base
    configs render() caches, and every point's config text is one formatted template -- the first point's config
    with a placeholder at each key where any point differs -- with that point's values put in as literals.
    Signatures come from each point's own config, so they are exactly what `run --set ...` computes."""

    def __init__(self, space: Space, name: str, *, executor: str, wandb: str, root: Path, scale_lr: bool = True):
        from swinctl import guard, render
        from swinctl.runs import lifecycle as runs

        runs.check_wandb_mode(wandb)
        self.base, self.config_items = runs.resolve_recipe(space.recipe, list(space.sets), space.smoke)
        if not space.smoke:
            runs.check_data(self.base)
        self.name, self.smoke, self.root, self.sets = name, space.smoke, root, tuple(space.sets)
        self.backend = runs.resolve_backend(executor)
        self.template_dir = root / _TEMPLATE_ID
        self.ctx = render.RunContext(run_id=_TEMPLATE_ID, run_dir=self.template_dir, group=name,
                                     tags=(("smoke",) if space.smoke else ()) + (_TAGS_MARK,), wandb=wandb)
        self.tags_in_recipe = {*self.base.tracking.tags, "smoke"}
        self.variants: dict[tuple[str, ...], tuple[Any, Any, Any, list[dict]]] = {}
        # each point against the published setting (swinctl.guard; it also renders the LR scaling rule)
        self.space_recipe = space.recipe
        self.guard = dict(smoke=space.smoke, scale_lr=scale_lr, published=guard.published_of(space.recipe,
                                                                                            self.base))

    def variant(self, recipe_texts: tuple[str, ...]):
        """(recipe, rendered config, resources, deviations) of the base recipe with these recipe-field overrides."""
        if recipe_texts not in self.variants:
            from swinctl import guard, render
            from swinctl.runs import lifecycle as runs

            recipe = self.base
            if recipe_texts:
                on_recipe, _ = recipes.split_overrides(self.base, list(recipe_texts))
                recipe = recipes.apply_recipe_overrides(self.base, on_recipe)
            config = render.render(recipe, self.ctx, self.config_items)
            resources = runs.resources_of(recipe)
            deviations = guard.check(self.space_recipe, recipe, config, resources, **self.guard,
                                     config_overrides=self.config_items)
            self.variants[recipe_texts] = (recipe, config, resources, deviations)
        return self.variants[recipe_texts]

    def points(self, split: list[tuple[tuple[str, ...], list[tuple[str, Any]]]], values_list: list[dict],
               run_ids: list[str]) -> list:
        from swinctl import guard, render
        from swinctl.runs import lifecycle as runs

        configs, leaves, found, checked = [], [], [], set()
        for recipe_texts, config_values in split:
            recipe, cfg, resources, deviations = self.variant(recipe_texts)
            if config_values:
                cfg = copy.deepcopy(cfg)
                render.apply_config_overrides(cfg, config_values)
                deviations = guard.check(self.space_recipe, recipe, cfg, resources, **self.guard,
                                         config_overrides=[*self.config_items, *config_values])
            found.append(deviations)
            refs = [ref for ref in runs.checkpoint_refs(cfg) if ref not in checked]  # each file read once
            runs.check_checkpoints(refs)
            checked.update(refs)
            configs.append(cfg)
            leaves.append(_leaves(cfg.to_dict()))
        first = leaves[0]
        marks = sorted({k for flat in leaves[1:] if flat.keys() == first.keys() for k in flat if flat[k] != first[k]})
        template = copy.deepcopy(configs[0])
        template.merge_from_dict({k: _placeholder(i) for i, k in enumerate(marks)}, allow_list_keys=True)
        text = render.to_text(template)
        prepared = []
        for (recipe_texts, _), values, run_id, cfg, flat, deviations in zip(split, values_list, run_ids, configs,
                                                                            leaves, found, strict=True):
            recipe, _, resources, _ = self.variant(recipe_texts)
            run_dir = self.root / run_id
            if flat.keys() == first.keys():  # same structure: the template holds it
                point_text = text
                for i, key in enumerate(marks):
                    point_text = point_text.replace(repr(_placeholder(i)), repr(flat[key]))
            else:  # a point that adds or drops keys: format its own config
                point_text = render.to_text(cfg)
            prepared.append(runs.PreparedRun(
                recipe=recipe, run_id=run_id, smoke=self.smoke, overrides=(*self.sets, *point_overrides(values)),
                config_text=self._personal(point_text, run_id, run_dir, point_tags(values)),
                signature=render.signature(cfg, resources.world_size),
                spec=runs.job_spec(recipe, run_id, self.root, resources, self.backend), sweep=self.name,
                deviations=deviations))
        return prepared

    def _personal(self, text: str, run_id: str, run_dir: Path, tags: list[str]) -> str:
        """The template's run name, folder and tags made this point's."""
        text = text.replace(repr(_TEMPLATE_ID), repr(run_id)).replace(repr(str(self.template_dir)), repr(str(run_dir)))
        return text.replace(repr(_TAGS_MARK), ", ".join(repr(t) for t in tags if t not in self.tags_in_recipe))


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
    split: list[tuple[tuple[str, ...], list[tuple[str, Any]]]] = []
    for values in values_list:
        recipe_texts = tuple(f"{k}={format_value(v)}" for k, v in values.items() if sides[k] is None)
        split.append((recipe_texts, [(sides[k], v) for k, v in values.items() if sides[k] is not None]))
    renderer = _Renderer(space, name, executor=executor, wandb=wandb, root=root, scale_lr=scale_lr)
    prepared = renderer.points(split, values_list, [new_run_id() for _ in values_list])
    points = [PointPlan(index=i, values=v, prepared=p) for i, (v, p) in enumerate(zip(values_list, prepared,
                                                                                       strict=True))]

    groups: dict[str, list[PointPlan]] = {}
    for point in points:
        groups.setdefault(_resources_key(point.prepared.spec.resources), []).append(point)
    if len(groups) > 1 and not split_arrays:
        first, other = (asdict(g[0].prepared.spec.resources) for g in list(groups.values())[:2])
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
                  max_parallel=space.max_parallel, points=points, renders=len(renderer.variants))
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
