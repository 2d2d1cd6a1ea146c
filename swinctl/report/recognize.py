"""Which recipe a work dir trained elsewhere reproduces, from the config it was trained with.

`mim train mmdet configs/swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py` leaves the config's name in the work dir
three ways: the dumped config (`<work_dir>/<name>.py`), the default work dir (`work_dirs/<name>`), and the
`work_dir = '...'` line inside the dumped config (MMEngine's `vis_data/config.py`; the `config` text and
`exp_name` of an MMCV 1.x `.log.json` header; the config and `Exp name:` a text log prints where there is no JSON
log). Each recipe names its reference config (`reference_config:`), so that name finds the recipe and its
published numbers. Names are compared with `_` and `-` alike, which also matches MMDetection 2.x names
(`mask_rcnn_swin-t-...`) to their 3.x configs. Nothing here runs the config: it is read as text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from swinctl import textlog

_TIMESTAMP = re.compile(r"\d{8}_\d{6}")
_WORK_DIR_LINE = re.compile(r"""^work_dir\s*=\s*['"]([^'"\n]+)['"]""", re.M)
_REFERENCE = re.compile(r"^reference_config:[ \t]*['\"]?([^'\"\s#]+)", re.M)
_MIXED_PRECISION = re.compile(r"AmpOptimWrapper|^fp16\s*=\s*dict", re.M)
_HEADER_BYTES = 1 << 20  # an MMCV 1.x header line (env, config text) is well under this


def _key(name: str) -> str:
    stem = Path(name.strip()).name
    for suffix in (".py", ".log.json"):
        stem = stem.removesuffix(suffix)
    return stem.replace("_", "-").lower()


@lru_cache(maxsize=1)
def _index() -> dict[str, list[tuple[str, bool]]]:
    """Reference config name -> (recipe, trains in mixed precision) of every known recipe, bundled first."""
    from swinctl import recipes

    found: dict[str, list[tuple[str, bool]]] = {}
    for name, path in recipes.available().items():
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        match = _REFERENCE.search(text)
        if match:
            amp = bool(re.search(r"^precision:\s*\n(?:[ \t]+.*\n)*?[ \t]+(?:amp|fp16):[ \t]*true", text, re.M))
            found.setdefault(_key(match.group(1)), []).append((name, amp))
    return found


def _texts(work_dir: Path) -> list[str]:
    """The config texts a work dir keeps: MMEngine's dumps, the header of MMCV 1.x JSON logs, or what its text logs
    printed (where it has no JSON log)."""
    texts = []
    for path in [*sorted(work_dir.glob("*.py")), *sorted(work_dir.glob("*/vis_data/config.py"))]:
        try:
            texts.append(path.read_text(errors="replace")[:_HEADER_BYTES])
        except OSError:
            continue
    json_logs = sorted(work_dir.glob("*.log.json"))
    for path in json_logs:
        try:
            with path.open(errors="replace") as stream:
                header = json.loads(stream.readline(_HEADER_BYTES) or "{}")
        except (OSError, ValueError):
            continue
        if isinstance(header, dict):
            texts.append(str(header.get("config", "")))
            if header.get("exp_name"):
                texts.append(f"work_dir = '{header['exp_name']}'")
    if not json_logs:
        for path in textlog.find(work_dir):
            try:
                with path.open("rb") as stream:
                    head = stream.read(_HEADER_BYTES)
            except OSError:
                continue
            texts.append(textlog.config_text(head))
            name = textlog.experiment_name(head)
            if name:
                texts.append(f"work_dir = '{name}'")
    return texts


def _names(work_dir: Path) -> list[tuple[str, str, str]]:
    """(key, config name, where the work dir keeps it) of every name it has, most telling first, its own last."""
    work_dir = Path(work_dir)
    names = [(p.name, "its dumped config") for p in sorted(work_dir.glob("*.py")) if not _TIMESTAMP.fullmatch(p.stem)]
    for text in _texts(work_dir):
        names += [(n, "the work_dir its logs name") for n in _WORK_DIR_LINE.findall(text)]
    names.append((work_dir.resolve().name, "its directory name"))
    seen: dict[str, tuple[str, str]] = {}
    for name, where in names:
        if name and _key(name) not in seen:
            seen[_key(name)] = (Path(name.strip()).name, where)
    return [(key, shown, where) for key, (shown, where) in seen.items()]


def candidates(work_dir: Path) -> list[str]:
    """Config names the work dir was trained from, most telling first."""
    return [key for key, _, _ in _names(work_dir)]


@dataclass(frozen=True)
class Recognition:
    """What a work dir was trained from: the recipe found (or None), the config name that found it (else the one
    the work dir itself keeps: a dumped config, a work_dir in its logs; None where only its directory has a name),
    and that in words, for the report's notes."""

    recipe: str | None
    config: str | None  # compared with `_` and `-` alike, lower case
    name: str | None  # as the work dir keeps it
    note: str


def explain(work_dir: Path) -> Recognition:
    """The recipe whose reference config this work dir was trained from, the config name, and why (not)."""
    index = _index()
    names = _names(work_dir)
    for key, name, where in names:
        recipes = index.get(key)
        if recipes:
            recipe = recipes[0][0]
            if len(recipes) > 1:
                amp = any(_MIXED_PRECISION.search(text) for text in _texts(Path(work_dir)))
                recipe = next((r for r, mixed in recipes if mixed == amp), recipe)
            return Recognition(recipe, key, name, f"recognised as {recipe}: trained from {name} ({where})")
    kept = [n for n in names if n[2] != "its directory name"]
    if kept:
        key, name, where = kept[0]
        return Recognition(None, key, name, f"no recipe matched: trained from {name} ({where}), which is no "
                                            "recipe's reference config")
    return Recognition(None, None, None, "no recipe matched: no config name in the work dir (no dumped config, no "
                                   f"work_dir or exp_name in its logs), and its name {names[-1][1]} is no recipe's "
                                   "reference config")


def recognize(work_dir: Path) -> str | None:
    """The recipe whose reference config this work dir was trained from, or None."""
    return explain(work_dir).recipe
