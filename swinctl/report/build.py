"""Building a report: choose the runs (with the selection `status` uses), read them, judge them."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

from swinctl import results
from swinctl.report import judging, sources
from swinctl.report.judging import Expectations, Expected
from swinctl.report.model import Report, ReportError, RunRow
from swinctl.report.recognize import explain
from swinctl.runs import cost, select


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
    """Gather, read and judge the runs named by `selectors` (run ids, sweep names, recipe names, short ids, id
    prefixes: :func:`swinctl.runs.select.match`, as `status` selects).

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
    expectations = Expectations()
    rows: list[RunRow] = []
    problems: list[str] = []
    expectation_of: dict[str, Expected | None] = {}
    known_ids: list[str] = []

    if source == "wandb":
        rows = _from_wandb(selectors, import_dirs, expectations, metrics, pick, problems, expectation_of)
        known_ids = [r.id for r in rows]
    else:
        records = sources.ledger_records(Path(runs_root))
        known_ids = [r.id for r in records]
        selected, unmatched = select.match(records, selectors) if selectors else (records, [])
        if not selectors and import_dirs:
            selected = []  # `--import DIR` alone reports just the imported runs
        import_recipes = [s for s in selectors if s in {r.recipe for r in records}]
        if unmatched:
            from swinctl import recipes

            known = recipes.available()
            if not import_dirs or any(s not in known for s in unmatched):
                raise ReportError(unmatched_message([s for s in unmatched if not import_dirs or s not in known],
                                                    records, Path(runs_root)))
            import_recipes += unmatched
        chosen = {r.id for r in selected}
        tests = {r.follows: r for r in records if r.follows}  # `--test-after`: judged as part of its training run
        for record in selected:
            if record.follows in chosen:
                continue
            text = judging.read_recipe_yaml(record.run_dir)  # read once: expected values and resources
            expectation = expectations.for_run(record.run_dir, record.recipe, text)
            rows.append(sources.row_from_record(record, expectation, metrics, pick,
                                                cost.resources_of(record.run_dir, text) if text else {},
                                                tested=tests.get(record.id)))
            expectation_of[record.id] = expectation
        rows += _imported(import_dirs, list(dict.fromkeys(import_recipes)), expectations, metrics, pick, problems,
                          expectation_of)
        if not rows:
            problems.append("no runs to report")
    shorts = select.short_ids([*known_ids, *(r.id for r in rows)])
    for row in rows:
        row.short_id = shorts.get(row.id, row.id)
    groups = judging.aggregate(rows, expectation_of)
    report = Report(source=source, pick=pick, metrics=metrics, selectors=selectors, diff=diff, runs=rows,
                    groups=[g for g in groups if g.primary is not None and g.primary.n > 1],
                    sweeps=judging.sweeps(groups, rows), problems=problems)
    for row in rows:
        # published numbers of the recipes whose runs are compared with them (captions, plots): never a smoke run's
        if row.recipe and not row.smoke and row.recipe not in report.expectations and expectation_of.get(row.id):
            report.expectations[row.recipe] = expectation_of[row.id][0]
    return report


def _from_wandb(selectors, import_dirs, expectations, metrics, pick, problems, expectation_of) -> list[RunRow]:
    from swinctl import recipes
    from swinctl.report import wandb_source

    if import_dirs:
        problems.append("--import reads local work dirs: ignored with --source wandb")
    path, rest = wandb_source.wandb_path(selectors)
    known = list(recipes.available())
    rows = [wandb_source.row_from_wandb(run, expectations, metrics, pick, known)
            for run in wandb_source.wandb_runs(path)]
    if rest:
        rows = select.match(rows, rest)[0]  # W&B rows have the id, sweep and recipe a selector names
    for row in rows:
        expectation_of[row.id] = expectations.for_recipe(row.recipe)
    if not rows:
        problems.append(f"no W&B runs in '{path}' match {', '.join(rest) or 'anything'}")
    return rows


def _imported(import_dirs, import_recipes, expectations, metrics, pick, problems, expectation_of) -> list[RunRow]:
    if import_dirs and len(import_recipes) > 1:
        problems.append("imported runs have no expected values: several recipes named "
                        f"({', '.join(import_recipes)})")
    recipe = import_recipes[0] if len(import_recipes) == 1 else None
    rows = []
    for entry in import_dirs:
        for work_dir in sources.import_targets(Path(entry)):
            run_dir = work_dir.parent if (work_dir.parent / "recipe.yaml").is_file() else None
            # the recipe named, else the one a swinctl run dir names, else the one whose reference config it trained
            found = explain(work_dir)
            named = recipe or (sources.recipe_name(run_dir) if run_dir else None)
            name = named or found.recipe
            expectation = expectations.for_run(run_dir, name)
            row = sources.row_from_import(work_dir, expectation, name, metrics, pick)
            if named:
                where = "the recipe named" if recipe else "its run dir's recipe.yaml"
                row.notes.append(f"judged as {named} ({where})" + (f"; trained from {found.name}"
                                                                   if found.name else ""))
            else:
                row.notes.append(found.note)
            # only runs of one configuration are seeds of one another: the config it was trained from, else the
            # recipe it was named (none: a run of its own)
            row.config_key = found.config or (None if named else row.id)
            rows.append(row)
            expectation_of[row.id] = expectation
    return rows


def unmatched_message(unmatched: list[str], records: list, root: Path) -> str:
    if not records:
        return (f"no runs under {root} (no ledger there yet): {', '.join(unmatched)} cannot be found; "
                "pass --runs-root DIR (or set SWINCTL_RUNS), or --import a work dir")
    names = sorted({r.id for r in records} | {r.sweep for r in records if r.sweep} | {r.recipe for r in records})
    hints = []
    for selector in unmatched:
        close = difflib.get_close_matches(selector, names, n=3, cutoff=0.5)
        if close:
            hints.append(f"did you mean {', '.join(close)}" + (f" for '{selector}'" if len(unmatched) > 1 else ""))
    verb = "matches" if len(unmatched) == 1 else "match"
    message = f"{', '.join(repr(s) for s in unmatched)} {verb} no run id, sweep or recipe in {root}"
    return message + (f" ({'; '.join(hints)}?)" if hints else "")
