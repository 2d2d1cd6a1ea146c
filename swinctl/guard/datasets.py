"""Images per split of the run's dataset against the published split: a subset (or a different split) is named.

The split is what the rendered config's dataloaders read: a COCO-style annotation file (its images are counted),
or MMSeg's image folder (its image files, or the lines of a split file when `ann_file` names one); an `indices`
setting of the dataset limits it. Counts are remembered per file (path, size, mtime) in
``$SWINCTL_CACHE/split-counts.json``, so the 450 MB COCO train annotations are scanned once (a byte count of
``"file_name"``, which each image entry has once and nothing else has; about a second).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from swinctl.guard.deviations import NOTE, WARNING, Deviation
from swinctl.guard.pretrained import cache_dir

# dataset -> (name, {split: (published split name, images)})
PUBLISHED_SPLITS: dict[str, tuple[str, dict[str, tuple[str, int]]]] = {
    "coco": ("COCO", {"train": ("train2017", 118_287), "val": ("val2017", 5_000)}),
    "ade20k": ("ADE20K", {"train": ("training", 20_210), "val": ("validation", 2_000)}),
    "cityscapes": ("Cityscapes", {"train": ("train", 2_975), "val": ("val", 500)}),
}
_TYPES = {"CocoDataset": "coco", "ADE20KDataset": "ade20k", "CityscapesDataset": "cityscapes"}
_WRAPPERS = ("RepeatDataset", "ClassBalancedDataset", "MultiImageMixDataset")
_IMAGE_SUFFIXES = {"ade20k": ".jpg", "cityscapes": "_leftImg8bit.png"}  # the dataset classes' defaults
_CHUNK = 1 << 24


def _counts_file() -> Path:
    return cache_dir() / "split-counts.json"


def _cached_count(path: Path, count) -> int:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    try:
        known = json.loads(_counts_file().read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), int):
        return known[key]
    value = count(path)
    known[key] = value
    try:
        _counts_file().parent.mkdir(parents=True, exist_ok=True)
        partial = _counts_file().with_name(f".split-counts.{os.getpid()}.partial")
        partial.write_text(json.dumps(known, indent=1))
        partial.replace(_counts_file())
    except OSError:
        pass
    return value


def count_coco_images(path: Path) -> int:
    """Images in a COCO annotation file: occurrences of the `"file_name"` key, read in chunks (no JSON load)."""
    needle = b'"file_name"'
    total, tail = 0, b""
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            data = tail + chunk
            total += data.count(needle)
            tail = data[-(len(needle) - 1):]  # shorter than the needle: never counted twice
    return total


def _count_files(folder: Path, suffix: str) -> int:
    total = 0
    for _, _, names in os.walk(folder):
        total += sum(1 for name in names if name.endswith(suffix))
    return total


def _dataset_of(loader: dict) -> dict | None:
    dataset = (loader or {}).get("dataset")
    while isinstance(dataset, dict) and dataset.get("type") in _WRAPPERS and isinstance(dataset.get("dataset"), dict):
        dataset = dataset["dataset"]
    return dataset if isinstance(dataset, dict) else None


def _join(root: str | None, path: str) -> Path:
    return Path(path) if os.path.isabs(path) or not root else Path(root) / path


def count_split(dataset: dict, default_suffix: str = ".jpg") -> tuple[int | None, str]:
    """(images the dataset config reads, what was counted), or (None, why not)."""
    root = dataset.get("data_root")
    ann = dataset.get("ann_file") or ""
    prefix = dataset.get("data_prefix") or {}
    if ann.endswith(".json"):
        path = _join(root, ann)
        if not path.is_file():
            return None, f"{path} not found"
        found, what = _cached_count(path, count_coco_images), str(path)
    elif ann:
        path = _join(root, ann)
        if not path.is_file():
            return None, f"{path} not found"
        found = _cached_count(path, lambda p: sum(1 for line in p.read_text().splitlines() if line.strip()))
        what = str(path)
    else:
        img = prefix.get("img_path") or prefix.get("img") or ""
        folder = _join(root, img)
        if not folder.is_dir():
            return None, f"{folder} not found"
        suffix = dataset.get("img_suffix") or default_suffix
        found, what = _count_files(folder, suffix), f"{folder} (*{suffix})"
    indices = dataset.get("indices")
    if isinstance(indices, int) and 0 <= indices < found:
        found, what = indices, f"{what}, indices={indices}"
    elif isinstance(indices, (list, tuple)):
        found, what = min(found, len(indices)), f"{what}, {len(indices)} indices"
    return found, what


def check_splits(cfg, dataset_name: str, splits: tuple[str, ...] = ("train", "val")) -> list[Deviation]:
    """Each split's image count against the published one; a subset or another split is a warning."""
    cfg_dict: dict[str, Any] = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    found: list[Deviation] = []
    for split in splits:
        dataset = _dataset_of(cfg_dict.get(f"{split}_dataloader") or {})
        if dataset is None:
            continue
        name = _TYPES.get(str(dataset.get("type", "")).rsplit(".", 1)[-1], dataset_name)
        if name not in PUBLISHED_SPLITS:
            continue
        label, published = PUBLISHED_SPLITS[name]
        split_name, expected = published.get(split, published["val"])  # test: the val split
        count, what = count_split(dataset, _IMAGE_SUFFIXES.get(name, ".jpg"))
        if count is None:
            found.append(Deviation("dataset", f"{split} split not counted ({what}): compare it with {label} "
                                              f"{split_name} ({expected:,} images) yourself", NOTE, expected, None))
        elif count < expected:
            found.append(Deviation("dataset", f"{split} split: {count:,} images vs {expected:,} published ({label} "
                                              f"{split_name}): a subset ({100 * count / expected:.1f}%)", WARNING,
                                   expected, count))
        elif count > expected:
            found.append(Deviation("dataset", f"{split} split: {count:,} images vs {expected:,} published ({label} "
                                              f"{split_name}): not the published split", WARNING, expected, count))
    return found
