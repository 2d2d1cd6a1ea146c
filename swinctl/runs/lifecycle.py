"""From a recipe reference to a submitted job: the one path `run`, `test` and `sweep` share.

recipe (validated, overridden) -> rendered config -> job spec -> run directory + ledger row -> backend.
Everything that can be wrong is checked before the run directory or the ledger row is written, so bad input leaves
nothing behind; the ledger row is written before submission, so a submitted job is never unrecorded
(:mod:`swinctl.runs.submission`, the lifecycle `run` shares with `sweep`).
"""

from __future__ import annotations

import copy
import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from swinctl import backends, recipes, results
from swinctl.backends import Backend
from swinctl.job.files import State
from swinctl.job.spec import After, JobSpec, Resources
from swinctl.published import TestWeights, planned_path
from swinctl.published import resolve as resolve_test_weights
from swinctl.recipes import Recipe, RecipeError
from swinctl.runs import submission, sync
from swinctl.runs.ledger import Ledger, RunRecord
from swinctl.runs.select import cancel_targets

# Every torch.load in a job is weights-only, even one that asks for weights_only=False (mmengine's URL loader,
# torch.hub): a checkpoint is data, never code. MMEngine's own types are allowed by swinctl.models.safe_load.
JOB_ENV = {"WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1", "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "1"}
WANDB_MODES = ("auto", "online", "offline", "disabled")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://")  # http://, s3://, open-mmlab://, torchvision://: loaded in the job

DATA_CHECKS = {
    "coco": ("annotations/instances_train2017.json", "COCO"),
    "coco_panoptic": ("annotations/panoptic_train2017.json", "COCO panoptic"),
    "ade20k": ("images/training", "ADE20K"),
    "cityscapes": ("leftImg8bit/train", "Cityscapes"),
}


def runs_root(explicit: Path | str | None = None) -> Path:
    return Path(explicit or os.environ.get("SWINCTL_RUNS") or "runs").expanduser().absolute()


def resolve_backend(requested: str) -> Backend:
    """The backend `--executor` names (auto: SLURM where a controller answers, else local), as a RecipeError."""
    try:
        return backends.resolve(requested)
    except backends.base.BackendError as exc:
        raise RecipeError(str(exc)) from None


def check_wandb_mode(mode: str) -> str:
    if mode not in WANDB_MODES:
        raise RecipeError(f"--wandb {mode}: choose one of {', '.join(WANDB_MODES)}")
    return mode


def checkpoint_refs(cfg, checkpoint: Path | None = None) -> list[tuple[str, str, str]]:
    """(what, path, role) of every local checkpoint the job will load: `--checkpoint`, `load_from` and the
    models' Pretrained init_cfgs ('backbone' role under a backbone). URLs and hub names are loaded weights-only in
    the job; local files are checked before it is queued."""
    refs = [("--checkpoint", str(checkpoint), "model")] if checkpoint is not None else []
    if cfg.get("load_from"):
        refs.append(("load_from", str(cfg["load_from"]), "model"))

    def walk(node, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "Pretrained" and isinstance(node.get("checkpoint"), str):
                refs.append((f"{where}.checkpoint", node["checkpoint"], "backbone" if "backbone" in where else "model"))
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{where}.{i}")

    walk(cfg.to_dict().get("model", {}), "model")
    return [ref for ref in refs if not _URL.match(ref[1])]


def check_checkpoints(refs: list[tuple[str, str, str]]) -> None:
    """Each local checkpoint exists, reads weights-only and has its role's layout, before anything is written."""
    if not refs:
        return
    from swinctl.models.checkpoints import CheckpointError, check_checkpoint

    for what, path, role in refs:
        try:
            check_checkpoint(Path(path).expanduser(), role)
        except CheckpointError as exc:
            raise RecipeError(f"{what}: {exc}") from None


def parse_time_limit(text: str) -> int:
    """SLURM time formats (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) -> whole minutes."""
    try:
        days, _, rest = text.rpartition("-") if "-" in text else ("0", "", text)
        parts = [int(p) for p in rest.split(":")]
        if "-" in text:
            hours, minutes, seconds = (parts + [0, 0])[:3]
        elif len(parts) == 3:
            hours, minutes, seconds = parts
        else:
            hours, (minutes, seconds) = 0, (parts + [0])[:2]
        total = int(days or 0) * 1440 + hours * 60 + minutes + (seconds + 59) // 60
    except ValueError:
        total = 0
    if total <= 0:
        raise RecipeError(f"resources.time_limit '{text}' is not a SLURM time (e.g. 90, 12:00:00, 1-00:00:00)")
    return total


def resources_of(recipe: Recipe) -> Resources:
    r = recipe.resources
    if r.gpus and r.gpus_per_node and r.gpus > r.gpus_per_node * r.nodes:
        raise RecipeError(f"resources: {r.gpus} GPUs do not fit on {r.nodes} node(s) of {r.gpus_per_node} GPUs; "
                          f"set resources.nodes={-(-r.gpus // r.gpus_per_node)}")
    if r.gpus and r.gpus_per_node and r.gpus != r.gpus_per_node * r.nodes:
        raise RecipeError(f"resources: {r.gpus} GPUs on {r.nodes} node(s) x {r.gpus_per_node} GPUs leaves GPUs idle; "
                          f"set resources.gpus_per_node={r.gpus // r.nodes} or resources.nodes to match")
    if r.gpus and r.tasks_per_node and r.tasks_per_node != r.gpus_per_node:
        raise RecipeError(f"resources: tasks_per_node={r.tasks_per_node} with {r.gpus_per_node} GPUs per node; "
                          "GPU jobs run one task per GPU: drop resources.tasks_per_node")
    return Resources(
        gpus=r.gpus, gpus_per_node=r.gpus_per_node if r.gpus else 0, nodes=r.nodes,
        cpu_tasks_per_node=1 if r.gpus else (r.tasks_per_node or 1), cpus_per_task=r.cpus_per_task,
        mem_gb=r.mem_gb, timeout_min=parse_time_limit(r.time_limit), partition=r.partition, account=r.account,
        qos=r.qos, constraint=r.constraint, exclude=r.exclude, exclusive=r.exclusive, sbatch_args=dict(r.sbatch_args),
        setup=tuple(r.setup), max_requeues=r.max_requeues,
    )


def missing_data(recipe: Recipe) -> str | None:
    """'COCO not found at /data/coco (expected annotations/...)' when the data root is not on this machine."""
    marker, name = DATA_CHECKS[recipe.data.dataset]
    if (Path(recipe.data.root).expanduser() / marker).exists():
        return None
    return f"{name} not found at {recipe.data.root} (expected {marker})"


def check_data(recipe: Recipe, smoke: bool = False) -> None:
    missing = missing_data(recipe)
    if missing:
        fix = ("drop --set data.root to use the generated demo set, or point it at the dataset" if smoke else
               "pass --set data.root=... or use --smoke")
        raise RecipeError(f"{missing}: {fix}")


def _not_here(recipe: Recipe, cfg, checkpoint_refs_: list[tuple[str, str, str]]) -> tuple[list, list[dict]]:
    """A dry run's view of what lives elsewhere (a data root or checkpoint on the cluster's file system): the
    local checkpoint refs that are on this machine (checked as usual), and a 'not verified' note for the rest."""
    from swinctl.guard.deviations import NOTE, Deviation

    notes = []
    if missing_data(recipe):
        marker, name = DATA_CHECKS[recipe.data.dataset]
        notes.append(Deviation("dataset", f"data not verified: {recipe.data.root} is not on this machine (no "
                                          f"{marker}); a real run needs {name} there", NOTE,
                               None, recipe.data.root).to_dict())
    here = []
    for what, path, role in checkpoint_refs_:
        if Path(path).expanduser().exists():
            here.append((what, path, role))
        else:
            notes.append(Deviation("checkpoint", f"{what} not verified: {path} is not on this machine; a real run "
                                                 "needs it there", NOTE, None, path).to_dict())
    return here, notes


def _with_not_here(deviations: list[dict], not_here: list[dict]) -> list[dict]:
    """The guard's deviations with a dry run's 'not verified' notes: a data root not here is said once (its splits
    cannot be counted either), a checkpoint the guard named already is not said twice."""
    if any(d["kind"] == "dataset" for d in not_here):
        deviations = [d for d in deviations if not (d["kind"] == "dataset" and d["severity"] == "note")]
    guarded = {d["actual"] for d in deviations if d["kind"] == "pretrained"}
    return deviations + [d for d in not_here if d["kind"] != "checkpoint" or d["actual"] not in guarded]


def new_run_id(recipe: Recipe, smoke: bool) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{recipe.name}{'-smoke' if smoke else ''}-{stamp}-{secrets.token_hex(2)}"


def job_spec(recipe: Recipe, run_id: str, root: Path, resources: Resources, backend: Backend, *,
             kind: Literal["train", "test"] = "train", checkpoint: Path | None = None, tta: bool = False,
             cfg_options: tuple[str, ...] = (), after: After | None = None) -> JobSpec:
    """Where a run lives under `root` and what its job asks for (run, test and sweep all build specs here)."""
    run_dir = root / run_id
    return JobSpec(
        run_id=run_id, kind=kind, codebase=recipe.codebase, runs_root=root, run_dir=run_dir,
        config=run_dir / "config.py", work_dir=run_dir / "work_dir", resources=resources, executor=backend.name,
        launcher=backend.launcher(resources), sigterm_requeues=backend.sigterm_requeues,
        checkpoint=Path(checkpoint).absolute() if checkpoint else None, env=dict(JOB_ENV), tta=tta,
        cfg_options=tuple(cfg_options), after=after,
    )


def tta_options(recipe: Recipe, cfg) -> tuple[str, ...]:
    """`test --tta`: the config overrides that make the test's metrics read as multi-scale + flip ones
    (`ms_flip/mIoU` -> mIoU_ms_flip, :mod:`swinctl.results`), after checking the config can run its codebase's
    test-time augmentation (`tta_model` and `tta_pipeline`, which MMSeg's test script swaps in with --tta)."""
    if recipe.codebase != "mmseg":
        raise RecipeError(f"--tta: {recipe.name} is an MMDetection recipe; the zoo publishes test-time augmentation "
                          "results (mIoU_ms_flip) for MMSegmentation models only: drop --tta")
    missing = [key for key in ("tta_model", "tta_pipeline") if not cfg.get(key)]
    if missing:
        raise RecipeError(f"--tta: the config of {recipe.name} has no {' or '.join(missing)} (its test-time "
                          "augmentation); add them to the recipe's config: section, or drop --tta")
    evaluator = cfg.get("test_evaluator")
    if isinstance(evaluator, (list, tuple)):
        return tuple(f"test_evaluator.{i}.prefix={results.TTA_PREFIX}" for i in range(len(evaluator)))
    if not isinstance(evaluator, dict):
        raise RecipeError(f"--tta: the config of {recipe.name} has no test_evaluator to score the test with")
    return (f"test_evaluator.prefix={results.TTA_PREFIX}",)


@dataclass(frozen=True)
class PreparedRun:
    """A run rendered and checked, not yet written anywhere."""

    recipe: Recipe
    run_id: str
    smoke: bool
    overrides: tuple[str, ...]
    config_text: str
    signature: str
    spec: JobSpec
    sweep: str | None
    deviations: list[dict] = field(default_factory=list)  # swinctl.guard.check: the run vs its published setting
    follows: str | None = None  # a `--test-after` test: the training run it evaluates
    weights: TestWeights | None = None  # a test run's weights, checked (None: a train run, or a dry run)

    def command(self) -> list[str]:
        return self.spec.command()


SMOKE_PROFILES = ("fast", "learn")


def smoke_overrides(recipe: Recipe, profile: str) -> list[str]:
    """The `--set` items a smoke profile adds to the recipe's smoke section: none for 'fast' (a tiny model that
    proves the chain runs), the recipe's `smoke.learn` for 'learn' (one that scores well above chance)."""
    if profile not in SMOKE_PROFILES:
        raise RecipeError(f"--smoke-profile {profile}: choose fast (the chain runs: a tiny model, numbers near 0) or "
                          "learn (a model that learns on the demo data: about a minute on 2 idle CPU cores)")
    if profile == "learn" and not recipe.smoke.learn:
        raise RecipeError(f"--smoke-profile learn: recipe '{recipe.name}' has no learning smoke profile (a "
                          "smoke.learn section, as maskrcnn-swin-t and upernet-swin-t have): use --smoke-profile "
                          "fast")
    return recipe.smoke.learn_overrides() if profile == "learn" else []


def resolve_recipe(ref: str | Path, overrides: list[str], smoke: bool, *, check_root: bool = True,
                   smoke_profile: str = "fast") -> tuple[Recipe, list]:
    """The recipe with smoke settings (and `smoke_profile`'s) and `--set` recipe overrides applied, plus the config
    overrides left over. `check_root=False` (a dry run) accepts a `--set data.root` that is not on this machine."""
    recipe = recipes.load_recipe(ref)
    if smoke:  # the profile's items first: the user's --set win
        overrides = smoke_overrides(recipe, smoke_profile) + list(overrides)
    on_recipe, on_config = recipes.split_overrides(recipe, list(overrides))
    if smoke:
        from swinctl.data import demo

        smoke_items = list(recipe.smoke.set.items())
        recipe = recipes.apply_recipe_overrides(recipe, smoke_items, source="the recipe's smoke section")
        on_config = list(recipe.smoke.config.items()) + on_config
        root = demo.ensure(recipe.data.dataset)
        recipe = recipes.apply_recipe_overrides(recipe, [("data.root", str(root))])
    if on_recipe:
        recipe = recipes.apply_recipe_overrides(recipe, on_recipe)
        if smoke and check_root and recipe.data.root != str(root):  # --set data.root replaced the demo set: as without
            check_data(recipe, smoke=True)          # --smoke, before anything is written
    return recipe, on_config


@dataclass(frozen=True)
class Point:
    """One run to prepare: its id and, for a sweep's point, its swept values -- recipe fields as `key=value` texts
    (one recipe variant per distinct tuple) and config keys -- with the overrides and W&B tags it is recorded
    under. A plain run is a point with none."""

    run_id: str
    recipe_texts: tuple[str, ...] = ()
    config_values: tuple[tuple[str, Any], ...] = ()
    overrides: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


_TEMPLATE_ID = "__swinctl_sweep_point__"
_TAGS_MARK = "__swinctl_point_tags__"


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


@dataclass
class _Variant:
    """A recipe variant rendered and checked: what every point of it shares. A variant composed from the
    symbolic render (`values`) makes its own Config only when one is needed."""

    recipe: Recipe
    resources: Resources
    deviations: list[dict]
    cfg_options: tuple[str, ...] = ()  # a test's --cfg-options (test-time augmentation)
    checkpoint: Path | None = None  # a test's weights file
    weights: TestWeights | None = None
    rendered: Any = None  # the mmengine Config (the guard's LR rule in it)
    symbolic: Any = None  # swinctl.runs.symbolic.Symbolic, with `values` its swept fields' values here
    values: dict[str, Any] | None = None

    @property
    def cfg(self):
        if self.rendered is None:
            self.rendered = self.symbolic.config(self.values)
        return self.rendered


@dataclass
class _Checked:
    """A point rendered and checked: its config as leaves (dotted key -> value), its signature, and its Config
    when one is needed."""

    variant: _Variant
    deviations: list[dict]
    spec: JobSpec
    leaves: dict[str, Any]
    signature: str
    cfg: Any = None

    def config(self):
        return self.variant.cfg if self.cfg is None else self.cfg


class Preparer:
    """Renders and checks runs of one recipe: `prepare` (a run: one point) and a sweep's plan (many points) go
    through here, so a run is a sweep of one point from preparation on.

    The recipe is resolved and checked once, each recipe variant (a distinct tuple of recipe-field values) is
    rendered once -- and where the swept fields are numbers that render only carries into the config, all of them
    in one symbolic render (:mod:`swinctl.runs.symbolic`) --, and with several points every point's config text
    is one formatted template -- the first point's config with a placeholder at each key where any point differs --
    with that point's values put in as literals (a full render and format costs about 0.6 s; a 1,000-point sweep
    would take ten minutes). Signatures hash each point's own config, so they are exactly what `run --set ...`
    computes. Nothing is written.
    """

    def __init__(self, ref: str | Path, *, overrides: Sequence[str] = (), smoke: bool = False, executor: str = "auto",
                 wandb: str = "auto", root: Path | None = None, kind: Literal["train", "test"] = "train",
                 checkpoint: Path | None = None, sweep: str | None = None,
                 scale_lr: bool = True, after: After | None = None, published: bool = False, tta: bool = False,
                 fetch: bool = True, smoke_profile: str = "fast"):
        check_wandb_mode(wandb)
        if kind == "test" and after is None and (checkpoint is None) == (not published):
            raise RecipeError("a test needs --checkpoint PATH (a .pth file of a trained detector or segmentor) or "
                              "--published (the recipe's released weights), one of them" if checkpoint is None else
                              "--checkpoint and --published exclude each other: test one set of weights per run")
        if kind != "test" and (published or tta):
            raise RecipeError("--published and --tta are options of `swinctl test`")
        self.ref, self.sets, self.smoke, self.wandb = ref, tuple(overrides), smoke, wandb
        self.base, self.config_items = resolve_recipe(ref, list(overrides), smoke, check_root=fetch,
                                                      smoke_profile=smoke_profile)
        if published and self.base.published_weights is None:
            raise RecipeError(f"--published: recipe '{self.base.name}' names no published_weights (its released "
                              "checkpoint's URL, the metafile's Weights): pass --set published_weights=URL, or test "
                              "a file with --checkpoint PATH")
        if not smoke and fetch:
            check_data(self.base)
        resources_of(self.base)
        self.backend = resolve_backend(executor)
        self.root = runs_root(root)
        self.kind, self.checkpoint, self.after, self.tta, self.fetch = kind, checkpoint, after, tta, fetch
        self.published = published
        self.group, self.sweep, self.scale_lr = sweep or self.base.name, sweep, scale_lr
        self.variants: dict[tuple[str, ...], _Variant] = {}
        self.symbolic: Any = None  # the symbolic render of the swept recipe fields; False: it does not apply
        self._split: dict[str, list] = {}  # a recipe-field text -> its parsed override (texts repeat across points)
        self._checked: set = set()  # checkpoint files already read
        self._setting = None  # the published setting the guard compares with (read once, when first needed)

    def _context(self, run_id: str, tags: Sequence[str]):
        from swinctl import render

        return render.RunContext(run_id=run_id, run_dir=self.root / run_id, group=self.group, wandb=self.wandb,
                                 tags=(("smoke",) if self.smoke else ()) + tuple(tags))  # type: ignore[arg-type]

    def variant(self, recipe_texts: tuple[str, ...], ctx, compose: bool = False) -> _Variant:
        """The base recipe with these recipe-field overrides, rendered in `ctx` (or composed from the symbolic
        render) and checked, once."""
        if recipe_texts not in self.variants:
            from swinctl import render

            recipe = self.base
            if recipe_texts:
                for text in recipe_texts:
                    if text not in self._split:
                        self._split[text] = recipes.split_overrides(self.base, [text])[0]
                recipe = recipes.apply_recipe_overrides(self.base, [i for t in recipe_texts for i in self._split[t]])
            resources = resources_of(recipe)
            composed = self._composed(recipe, recipe_texts, resources, ctx) if compose else None
            if composed is not None:
                self.variants[recipe_texts] = composed
                return composed
            cfg = render.render(recipe, ctx, self.config_items)
            cfg_options = tta_options(recipe, cfg) if self.tta else ()
            checkpoint, weights = self.checkpoint, None
            source = recipe.published_weights if self.published else None
            if self.kind == "test" and self.fetch and self.after is None:
                # downloaded (published), checked, in swinctl's layout
                from swinctl.guard.pretrained import backbone_of

                weights = resolve_test_weights(checkpoint=checkpoint, published=source, backbone=backbone_of(cfg),
                                               tta=self.tta)
                checkpoint = weights.path
            elif source is not None:
                checkpoint = planned_path(source)
            not_here = self._check_checkpoints(cfg, checkpoint if weights or not self.published else None, recipe)
            deviations = _with_not_here(self._guard(recipe, cfg, resources, ()), not_here)
            self.variants[recipe_texts] = _Variant(recipe, resources, deviations, cfg_options, checkpoint, weights,
                                                   rendered=cfg)
        return self.variants[recipe_texts]

    def _composed(self, recipe: Recipe, recipe_texts: tuple[str, ...], resources: Resources, ctx) -> _Variant | None:
        """The variant from the symbolic render of the swept recipe fields (made from the first variant), or None
        where that render does not apply (a value used, not only carried) or this variant differs otherwise."""
        from swinctl import render
        from swinctl.runs import symbolic

        if self.symbolic is None:
            keys = tuple(key for text in recipe_texts for key, _ in self._split[text])
            options = dict(render=lambda r: render.render(r, ctx, self.config_items),
                           payload=lambda flat: render.signature_payload(flat, resources.world_size), leaves=_leaves)
            # with the guard on the symbols where it only carries them too (smoke runs), else guarding each variant
            for guard in (lambda r, cfg: self._guard(r, cfg, resources, ()), None):
                try:
                    self.symbolic = symbolic.build(recipe, keys, guard=guard, **options)
                    break
                except symbolic.Escaped:
                    self.symbolic = False
            if self.symbolic:
                self.symbolic.resources = resources
                self._check_checkpoints(self.symbolic.cfg)  # (numbers only vary: the same files for every variant)
        values = self.symbolic.values(recipe) if self.symbolic else None
        if values is None:
            return None
        if resources == self.symbolic.resources:
            resources = self.symbolic.resources  # one object for all (the sweep groups points by resources)
        if self.symbolic.deviations is None:  # the render saved; the variant's own Config for its guard
            cfg = self.symbolic.config(values)
            return _Variant(recipe, resources, self._guard(recipe, cfg, resources, ()), rendered=cfg)
        return _Variant(recipe, resources, self.symbolic.deviations, symbolic=self.symbolic, values=values)

    def _check_checkpoints(self, cfg, checkpoint: Path | None = None, recipe: Recipe | None = None) -> list[dict]:
        """Check the local checkpoint files the config names (each read once); a dry run's 'not verified' notes for
        what is not on this machine (data root, checkpoints), which it does not check."""
        refs = checkpoint_refs(cfg, checkpoint)
        not_here: list[dict] = []
        if not self.fetch:
            refs, not_here = _not_here(recipe or self.base, cfg, refs)
        check_checkpoints([ref for ref in refs if ref not in self._checked])
        self._checked.update(refs)
        return not_here

    def _guard(self, recipe: Recipe, cfg, resources: Resources, config_values) -> list[dict]:
        """The run vs its published setting; renders MMEngine's linear LR scaling rule into cfg (swinctl.guard)."""
        from swinctl import guard

        if self._setting is None and not self.smoke and self.kind == "train":
            self._setting = guard.published_of(self.ref, self.base)
        return guard.check(self.ref, recipe, cfg, resources, smoke=self.smoke, kind=self.kind,
                           scale_lr=self.scale_lr, config_overrides=[*self.config_items, *config_values],
                           published=self._setting, fetch=self.fetch)

    def _checked_point(self, point: Point, ctx, compose: bool = False) -> _Checked:
        """A point's variant, config (its own where it sets config keys), deviations and job spec."""
        from swinctl import render

        variant = self.variant(point.recipe_texts, ctx, compose)
        spec = job_spec(variant.recipe, point.run_id, self.root, variant.resources, self.backend, kind=self.kind,
                        checkpoint=variant.checkpoint, tta=self.tta, cfg_options=variant.cfg_options,
                        after=self.after)
        if variant.values is not None and not point.config_values:  # composed: no Config of its own
            return _Checked(variant, variant.deviations, spec, variant.symbolic.leaves(variant.values),
                            variant.symbolic.signature(variant.values, render.digest))
        cfg, deviations = variant.cfg, variant.deviations
        if point.config_values:
            cfg = copy.deepcopy(cfg)
            render.apply_config_overrides(cfg, list(point.config_values))
            self._check_checkpoints(cfg)
            deviations = self._guard(variant.recipe, cfg, variant.resources, point.config_values)
        flat = cfg.to_dict()
        return _Checked(variant, deviations, spec, _leaves(flat), render.signature(flat, variant.resources.world_size),
                        cfg)

    def _prepared(self, point: Point, checked: _Checked, text: str) -> PreparedRun:
        return PreparedRun(recipe=checked.variant.recipe, run_id=point.run_id, smoke=self.smoke,
                           overrides=(*self.sets, *point.overrides), config_text=text, signature=checked.signature,
                           spec=checked.spec, sweep=self.sweep, deviations=checked.deviations,
                           weights=checked.variant.weights,
                           follows=self.after.run_dir.name if self.after is not None else None)

    def prepare(self, points: Sequence[Point]) -> list[PreparedRun]:
        from swinctl import render

        if len(points) == 1:  # rendered in the run's own context and formatted whole
            point = points[0]
            checked = self._checked_point(point, self._context(point.run_id, point.tags))
            return [self._prepared(point, checked, render.to_text(checked.config()))]
        template_ctx = self._context(_TEMPLATE_ID, (_TAGS_MARK,))
        compose = self.kind == "train"
        checked = [self._checked_point(point, template_ctx, compose) for point in points]
        first = checked[0].leaves
        marks = sorted({k for c in checked[1:] if c.leaves.keys() == first.keys()
                        for k, v in c.leaves.items() if v != first[k]})
        template = copy.deepcopy(checked[0].config())
        template.merge_from_dict({k: _placeholder(i) for i, k in enumerate(marks)}, allow_list_keys=True)
        text = render.to_text(template)
        tags_in_recipe = {*self.base.tracking.tags, "smoke"}
        prepared = []
        for point, one in zip(points, checked, strict=True):
            if one.leaves.keys() == first.keys():  # same structure: the template holds it
                point_text = text
                for i, key in enumerate(marks):
                    point_text = point_text.replace(repr(_placeholder(i)), repr(one.leaves[key]))
            else:  # a point that adds or drops keys: format its own config
                point_text = render.to_text(one.config())
            # the template's run name, folder and tags made this point's
            point_text = point_text.replace(repr(_TEMPLATE_ID), repr(point.run_id)).replace(
                repr(str(self.root / _TEMPLATE_ID)), repr(str(one.spec.run_dir)))
            point_text = point_text.replace(repr(_TAGS_MARK), ", ".join(repr(t) for t in point.tags
                                                                        if t not in tags_in_recipe))
            prepared.append(self._prepared(point, one, point_text))
        return prepared


def prepare(
    ref: str | Path,
    *,
    overrides: list[str] = (),
    smoke: bool = False,
    executor: str = "auto",
    wandb: str = "auto",
    root: Path | None = None,
    kind: Literal["train", "test"] = "train",
    checkpoint: Path | None = None,
    sweep: str | None = None,
    run_id: str | None = None,
    scale_lr: bool = True,
    after: After | None = None,
    published: bool = False,
    tta: bool = False,
    fetch: bool = True,
    smoke_profile: str = "fast",
) -> PreparedRun:
    """Render and check a run: a sweep of one point (:class:`Preparer`). A test evaluates `checkpoint`, or with
    `published` the recipe's published_weights (downloaded once into the torch hub cache), or `after` a training
    run the checkpoint that run leaves; with `tta` the config's test-time augmentation. `fetch=False` (a dry run)
    downloads and converts nothing (the job's checkpoint is where the weights will be) and works on any machine: a
    data root, checkpoint or pretrained file that is not here, or not downloaded, is a 'not verified' note among
    the deviations instead of an error."""
    preparer = Preparer(ref, overrides=overrides, smoke=smoke, executor=executor, wandb=wandb, root=root, kind=kind,
                        checkpoint=checkpoint, sweep=sweep, scale_lr=scale_lr, after=after, published=published,
                        tta=tta, fetch=fetch, smoke_profile=smoke_profile)
    [prepared] = preparer.prepare([Point(run_id or new_run_id(preparer.base, smoke))])
    return prepared


TEST_AFTER = ("last", "best")


def prepare_with_test(ref: str | Path, pick: str, **options) -> tuple[PreparedRun, PreparedRun]:
    """`run --test-after last|best`: the training run, and the test of its last (or best) checkpoint that starts
    when training has completed (on SLURM a job with `--dependency=afterok`; here a job that waits for it).
    Both are checked before anything is written; `options` are `prepare`'s."""
    if pick not in TEST_AFTER:
        raise RecipeError(f"--test-after {pick}: choose last (the final checkpoint) or best (the best validation, "
                          "saved by MMEngine's CheckpointHook save_best='auto')")
    train = prepare(ref, kind="train", **options)
    if pick == "best":  # the job config asks CheckpointHook to keep the best checkpoint (config.py is unchanged)
        train = replace(train, spec=replace(train.spec, save_best=True))
    after = After(run_dir=train.spec.run_dir, work_dir=train.spec.work_dir, pick=pick)  # type: ignore[arg-type]
    test = prepare(ref, kind="test", after=after, **{**options, "wandb": "disabled", "run_id": None})
    return train, test


def after_job(test: PreparedRun, job_id: str | None) -> PreparedRun:
    """The follow-up test of a training run that was submitted as `job_id`."""
    after = replace(test.spec.after, job_id=job_id)
    return replace(test, spec=replace(test.spec, after=after))


def require_backend(prepared: PreparedRun) -> None:
    """RecipeError when the run's backend cannot take jobs from here (no sbatch, a controller that does not
    answer): checked before anything is printed or written."""
    try:
        backends.get(prepared.spec.executor).require()
    except backends.base.BackendError as exc:
        raise RecipeError(str(exc)) from None


def launch(prepared: PreparedRun, ledger: Ledger | None = None):
    """Submit one run (a sweep of one point: swinctl.runs.submission) into `ledger` (the one under the run's runs
    root, opened here if not given); returns its ledger row and the submission. Call `require_backend` first."""
    ledger = ledger or Ledger(prepared.spec.runs_root)
    submitted = submission.submit_one(ledger, prepared)
    return ledger.get(prepared.run_id), submitted


def cancel(ledger: Ledger, selectors: list[str]) -> list[tuple[RunRecord, str]]:
    """Stop the selected runs' jobs (every process of each) and record them CANCELLED, which they stay."""
    outcomes = []
    for record in cancel_targets(ledger, selectors):
        record = sync.refresh(ledger, record)
        if not record.is_active:
            outcomes.append((record, f"already {record.state.lower()}"))
            continue
        try:
            outcome = backends.get(record.executor).cancel(record, ledger.submission(record.submission))
        except backends.base.BackendError as exc:
            outcomes.append((record, str(exc)))
            continue
        ledger.update(record.id, event="state", state=State.CANCELLED, finished_at=time.time())
        outcomes.append((record, outcome))
    return outcomes
