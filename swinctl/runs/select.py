"""Which runs a selector names: run ids, short ids (as git abbreviates hashes), sweeps, recipes, id prefixes.

`status`, `report`, `logs` and `cancel` all select with these."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from swinctl.errors import UserError
from swinctl.runs.ledger import Ledger, RunRecord

# <recipe>[-smoke]-YYYYMMDD-HHMMSS-<hex>: the random hex is a run's short id; its time (then its date) is put in
# front only to tell apart runs whose hex is the same.
_ID_TAIL = re.compile(r"-(\d{8})-(\d{6})-([0-9a-f]{4,})$")
_SHORT_ID = re.compile(r"(?:(?:\d{8}-)?\d{6}-)?[0-9a-f]{4,}")


def _tails(run_id: str) -> list[str]:
    found = _ID_TAIL.search(run_id)
    if not found:
        return []
    date, clock, hexa = found.groups()
    return [hexa, f"{clock}-{hexa}", f"{date}-{clock}-{hexa}"]


def short_ids(ids: Iterable[str]) -> dict[str, str]:
    """Each run id's shortest unique tail among `ids`, as git abbreviates hashes: the id's random hex, with its
    time (and then its date) in front only where another run has the same; the full id where nothing shorter is
    unique or the id has no such tail (imported and W&B runs). Every selector accepts them."""
    tails = {run_id: _tails(run_id) for run_id in dict.fromkeys(ids)}
    counts = [Counter(t[level] for t in tails.values() if t) for level in range(3)]
    return {run_id: next((tail[level] for level in range(len(tail)) if counts[level][tail[level]] == 1), run_id)
            for run_id, tail in tails.items()}


def match(records: Sequence[RunRecord], selectors: Sequence[str]) -> tuple[list[RunRecord], list[str]]:
    """The runs `selectors` name, in the order of `records`, and the selectors that name none.

    Each selector is tried as, in turn: a run id, a sweep name, a recipe name, a short id (:func:`short_ids`),
    a prefix of run ids; the first that names any run wins. `status` and `report` both select with this.
    """
    by_id = {r.id: r for r in records}
    chosen: set[str] = set()
    unmatched = []
    for sel in selectors:
        if sel in by_id:
            hits = [by_id[sel]]
        else:
            hits = ([r for r in records if r.sweep == sel] or [r for r in records if r.recipe == sel]
                    or ([r for r in records if sel in _tails(r.id)] if _SHORT_ID.fullmatch(sel) else [])
                    or ([r for r in records if r.id.startswith(sel)] if sel else []))
        if not hits:
            unmatched.append(sel)
        chosen.update(r.id for r in hits)
    return [r for r in records if r.id in chosen], unmatched


def select(ledger: Ledger, selectors: list[str], everything: bool = False) -> list[RunRecord]:
    """Runs named by id, sweep, recipe, short id or id prefix (:func:`match`); by default the active ones and the
    ten most recent."""
    runs = ledger.list_runs()
    if selectors:
        chosen, unmatched = match(runs, selectors)
        if unmatched:
            names = ", ".join(f"'{s}'" for s in unmatched)
            raise SelectionError(f"no run id, short id, sweep or recipe {names} in {ledger.path}")
        return sorted(chosen, key=lambda r: r.created_at)
    if everything:
        return runs
    recent = {r.id for r in runs[-10:]}
    return [r for r in runs if r.is_active or r.id in recent]


class SelectionError(UserError):
    """A run selector that matches nothing, or more than a verb may act on."""


def one(ledger: Ledger, selector: str) -> RunRecord:
    """The one run whose id is `selector` or starts with it; no match, an empty or an ambiguous selector is an
    error (verbs that act on a run never guess)."""
    if not selector.strip():
        raise SelectionError("an empty run id selects nothing: give a run id or a unique prefix of one "
                             "(`swinctl status --all` lists them)")
    found = ledger.find(selector)
    if not found and _SHORT_ID.fullmatch(selector):  # the short ids tables show
        found = [r for r in ledger.list_runs() if selector in _tails(r.id)]
    if not found:
        raise SelectionError(f"no run '{selector}' in {ledger.path} (`swinctl status --all` lists the runs)")
    if len(found) > 1:
        names = ", ".join(r.id for r in found[:3])
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        raise SelectionError(f"'{selector}' matches {len(found)} runs ({names}{more}): give more of the id")
    return found[0]


def cancel_targets(ledger: Ledger, selectors: list[str]) -> list[RunRecord]:
    """The runs `cancel` acts on: each selector is one run (id or unique prefix) or a sweep by its name. All are
    resolved before anything is cancelled, so one bad selector cancels nothing."""
    chosen: dict[str, RunRecord] = {}
    for sel in selectors:
        runs = ledger.list_runs(sweep=sel) if sel.strip() else []
        if not runs and sel.strip() and ledger.list_runs(recipe=sel):
            raise SelectionError(f"'{sel}' is a recipe, which may have many runs: cancel takes run ids or sweep "
                                 f"names (`swinctl status {sel}` lists its runs)")
        chosen.update((r.id, r) for r in (runs or [one(ledger, sel)]))
    return sorted(chosen.values(), key=lambda r: r.created_at)
