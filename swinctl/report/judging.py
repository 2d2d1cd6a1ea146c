"""Judging: the expected values of each run's recipe, verdicts against each source, seed groups and sweeps."""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from swinctl.report.model import (
    ABOVE,
    ACTIVE,
    BELOW,
    COUNTED,
    DIVERGED,
    ENDED_EARLY,
    INCOMPLETE,
    NO_METRICS,
    NO_REFERENCE,
    REPRODUCED,
    RUNNING,
    SMOKE,
    Expectation,
    GroupResult,
    GroupRow,
    Reference,
    RunRow,
    SweepPoint,
    SweepTable,
)

Expected = tuple[list[Expectation], float]  # a recipe's expected values and its tolerance

_EXPECTED_BLOCK = re.compile(r"^expected:[^\n]*\n(?:(?:[ \t-][^\n]*)?\n)*", re.M)
_TOLERANCE = re.compile(r"^tolerance:[ \t]*([0-9.eE+-]+)[ \t]*$", re.M)


class Expectations:
    """Expected values and tolerance per run, from its resolved recipe.yaml (or the named recipe), cached.

    Only the `expected:` block and the `tolerance:` line of a run's recipe.yaml are YAML-parsed (a thousand
    identical blocks parse once); a file where they cannot be cut out cleanly is parsed whole.
    """

    def __init__(self) -> None:
        self._blocks: dict[str, list[Expectation]] = {}
        self._named: dict[str, Expected | None] = {}

    def for_run(self, run_dir: Path | None, recipe: str | None, text: str | None = None) -> Expected | None:
        """From the run's recipe.yaml (its `text` when already read), else from the recipe named."""
        if text is None and run_dir is not None:
            text = read_recipe_yaml(run_dir)
        if text is not None:
            found = self._from_text(text)
            if found is not None:
                return found
        return self.for_recipe(recipe)

    def for_recipe(self, name: str | None) -> Expected | None:
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

    def _from_text(self, text: str) -> Expected | None:
        block = _EXPECTED_BLOCK.search(text)
        tol = _TOLERANCE.search(text)
        key = block.group(0) if block else ""
        if key not in self._blocks:
            self._blocks[key] = _parse_expected(_yaml_load(key).get("expected") if key else [])
        if tol is not None or "\ntolerance:" not in text:
            return self._blocks[key], float(tol.group(1)) if tol else 0.5
        data = _yaml_load(text)  # an unusual layout: read it all
        return _parse_expected(data.get("expected")), float(data.get("tolerance", 0.5))


def read_recipe_yaml(run_dir: Path) -> str | None:
    try:
        return (run_dir / "recipe.yaml").read_text()
    except OSError:
        return None


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


def references(value: float | None, expectations: Sequence[Expectation], metric: str,
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


def verdict(value: float | None, refs: list[Reference], *, smoke: bool, state: str, incomplete: bool,
            diverged: bool = False) -> str:
    if smoke:
        return SMOKE
    if diverged:  # the last validation was NaN/Inf: an earlier value says nothing about the result
        return DIVERGED
    if value is None:
        return NO_METRICS
    if state in ACTIVE:
        return RUNNING
    if state in ENDED_EARLY or incomplete:
        return INCOMPLETE
    if not refs:
        return NO_REFERENCE
    return refs[0].verdict


def published_notes(results: Sequence) -> list[str]:
    """What the verdicts of a test of the released weights mean: the model is the published one, so a number that
    matches says the data and the evaluation are right, one that misses that one of them differs. Smoke runs,
    unfinished ones and metrics without a published value say nothing."""
    from swinctl.results import metric_word

    notes = []
    for res in results:
        if res.verdict not in (REPRODUCED, BELOW, ABOVE) or not res.references:
            continue
        ref = res.references[0]
        head = (f"published weights: {res.value:.1f} {metric_word(res.metric)} vs "
                f"{ref.expected:g} expected")
        notes.append(f"{head}: data and evaluation OK" if res.verdict == REPRODUCED else
                     f"{head}: data or evaluation differ (dataset version or split, annotations, test pipeline or "
                     "metric settings)")
    return notes


# ---------------------------------------------------------------------------------------------- seeds, sweeps


def override_key(item: str) -> str:
    return item.partition("=")[0].strip()


def is_seed(item: str) -> bool:
    key = override_key(item).removeprefix("recipe.").removeprefix("cfg.")
    return key == "seed" or key.endswith(".seed")


def aggregate(runs: list[RunRow], expectations_of: dict[str, Expected | None]) -> list[GroupRow]:
    """Runs that differ only by their seed, one group each (groups of one included)."""
    buckets: dict[tuple, list[RunRow]] = {}
    for row in runs:
        rest = tuple(sorted(o for o in row.overrides if not is_seed(o)))
        # tests of the released weights are not seeds of tests of other weights, nor is a multi-scale + flip test
        # (its metrics) a seed of a single-scale one
        tested = (row.published_weights, tuple(r.metric for r in row.results)) if row.kind == "test" else None
        key = (row.origin, row.recipe, row.kind, row.smoke, row.sweep, rest, tested, row.config_key)
        buckets.setdefault(key, []).append(row)
    groups = []
    for (origin, recipe, kind, smoke, sweep, rest, _, _), rows in buckets.items():
        expectation = expectations_of.get(rows[0].id)
        expectations, tolerance = expectation if expectation else ([], None)
        aggregated = []
        for metric in [r.metric for r in rows[0].results]:
            values = [res.value for row in rows for res in row.results
                      if res.metric == metric and res.value is not None and (res.verdict in COUNTED or smoke)]
            mean = round(statistics.fmean(values), 4) if values else None
            std = round(statistics.stdev(values), 4) if len(values) > 1 else None
            refs = references(mean, expectations, metric, tolerance or 0.0) \
                if tolerance is not None and not smoke else []  # smoke: never against a published number
            if smoke:
                judged = SMOKE
            elif mean is None:
                judged = RUNNING if any(r.state in ACTIVE for r in rows) else NO_METRICS
            else:
                judged = refs[0].verdict if refs else NO_REFERENCE
            aggregated.append(GroupResult(metric, mean, std, len(values), values, tolerance, judged, refs))
        label = " ".join(rest) or "(recipe defaults)"
        groups.append(GroupRow(
            key=f"{recipe or origin}{'-smoke' if smoke else ''}{f' [{sweep}]' if sweep else ''} {label}",
            recipe=recipe, kind=kind, sweep=sweep, smoke=smoke, overrides=list(rest), run_ids=[r.id for r in rows],
            seeds=[r.seed for r in rows], verdict=aggregated[0].verdict if aggregated else NO_METRICS,
            results=aggregated))
    return groups


def varying(override_lists: list[list[str]]) -> list[str]:
    """Override keys whose value is not the same in every list (absent counts as a value)."""
    parsed = [dict((override_key(o), o.partition("=")[2]) for o in items) for items in override_lists]
    keys = list(dict.fromkeys(k for d in parsed for k in d))
    return [k for k in keys if len({d.get(k) for d in parsed}) > 1]


def sweeps(groups: list[GroupRow], runs: Sequence[RunRow] = ()) -> list[SweepTable]:
    """Each sweep's points (seed groups), best first by the sweep's first metric, with the deviations every run of
    the sweep shares (`runs`: the report's rows)."""
    tables = []
    deviations = {r.id: r.deviations for r in runs}
    for name in dict.fromkeys(g.sweep for g in groups if g.sweep):
        members = [g for g in groups if g.sweep == name]
        found = [deviations.get(run_id, []) for g in members for run_id in g.run_ids]
        shared = [d for d in found[0] if all(d in other for other in found[1:])] if found else []
        keys = varying([g.overrides for g in members])
        metric = members[0].results[0].metric if members[0].results else "-"

        def score(g: GroupRow, metric: str = metric) -> float:
            res = next((r for r in g.results if r.metric == metric), None)
            return res.mean if res is not None and res.mean is not None else -math.inf

        points = []
        for rank, g in enumerate(sorted(members, key=score, reverse=True), 1):
            res = next((r for r in g.results if r.metric == metric), None)
            mean = res.mean if res else None
            points.append(SweepPoint(
                rank=rank, best=rank == 1 and mean is not None, overrides=g.overrides,
                varying={k: v for k, _, v in (o.partition("=") for o in g.overrides) if k.strip() in keys},
                run_ids=g.run_ids, mean=mean, std=res.std if res else None, n=res.n if res else 0,
                verdict=res.verdict if res else NO_METRICS))
        tables.append(SweepTable(name, metric, keys, points, shared))
    return tables


