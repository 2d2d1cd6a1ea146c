"""Small generated datasets in the exact on-disk formats of COCO and ADE20K, for smoke runs and tests.

Objects are filled polygons whose colour depends on their class, on a noisy background, so that a tiny model learns
something in a few iterations and the real evaluators (pycocotools through mmdet's CocoMetric, mmseg's IoUMetric)
report non-trivial numbers. Generation is seeded (same files every time), cached, and atomic: a set appears under
its final name only once complete, so concurrent smoke runs never read half a dataset.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from swinctl.errors import UserError

FORMAT_VERSION = 2

# The 80 COCO categories with their official (non-contiguous) ids, all declared as in the real annotation files so
# that mmdet's 80-class heads and CocoMetric's label -> category id map line up; objects use the first three.
_COCO_NAMES = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign parking_meter "
    "bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag tie suitcase frisbee "
    "skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard tennis_racket bottle wine_glass "
    "cup fork knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair couch "
    "potted_plant bed dining_table toilet tv laptop mouse remote keyboard cell_phone microwave oven toaster sink "
    "refrigerator book clock vase scissors teddy_bear hair_drier toothbrush").split()
_COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
ALL_COCO_CATEGORIES = [(cid, name.replace("_", " ")) for cid, name in zip(_COCO_IDS, _COCO_NAMES, strict=True)]
COCO_CATEGORIES = [ALL_COCO_CATEGORIES[i] for i in (0, 2, 16)]  # person, car, dog
# ADE20K label values (1-based; 0 is "other" and ignored by reduce_zero_label): wall, floor, tree, sky... we use 4.
ADE_LABELS = [1, 4, 5, 3]
_CLASS_COLOURS = [(220, 40, 40), (40, 180, 60), (40, 80, 230), (230, 200, 40)]


@dataclass(frozen=True)
class DemoSpec:
    kind: str  # 'coco' | 'ade20k'
    train_images: int = 16
    val_images: int = 8
    size: tuple[int, int] = (128, 128)  # width, height
    seed: int = 0


def default_root() -> Path:
    return Path(os.environ.get("SWINCTL_DATA", Path.home() / ".cache" / "swinctl" / "data"))


def _random_polygon(rng: np.random.Generator, width: int, height: int) -> list[tuple[float, float]]:
    """A convex-ish blob (an ellipse or a rectangle) of 28-60 px, fully inside the image."""
    w, h = rng.uniform(28, 60, size=2)
    cx = rng.uniform(w / 2 + 1, width - w / 2 - 1)
    cy = rng.uniform(h / 2 + 1, height - h / 2 - 1)
    if rng.random() < 0.5:
        return [(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2), (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)]
    steps = 16
    return [(cx + w / 2 * math.cos(2 * math.pi * k / steps), cy + h / 2 * math.sin(2 * math.pi * k / steps))
            for k in range(steps)]


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    noise = rng.integers(90, 150, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(noise, "RGB")


def _coco_split(rng: np.random.Generator, spec: DemoSpec, image_dir: Path, first_id: int) -> dict:
    width, height = spec.size
    count = spec.train_images if image_dir.name.startswith("train") else spec.val_images
    images, annotations = [], []
    for n in range(count):
        image_id = first_id + n
        image = _background(rng, width, height)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 4))):
            cls = int(rng.integers(len(COCO_CATEGORIES)))
            polygon = _random_polygon(rng, width, height)
            draw.polygon(polygon, fill=_CLASS_COLOURS[cls])
            xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
            x0, y0 = min(xs), min(ys)
            box_w, box_h = max(xs) - x0, max(ys) - y0
            flat = [round(v, 2) for point in polygon for v in point]
            area = 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))
            annotations.append(dict(id=len(annotations) + first_id * 10, image_id=image_id,
                                    category_id=COCO_CATEGORIES[cls][0], segmentation=[flat], area=round(area, 2),
                                    bbox=[round(x0, 2), round(y0, 2), round(box_w, 2), round(box_h, 2)], iscrowd=0))
        name = f"{image_id:012d}.jpg"
        image.save(image_dir / name, quality=95)
        images.append(dict(id=image_id, file_name=name, width=width, height=height))
    categories = [dict(id=cid, name=name, supercategory="demo") for cid, name in ALL_COCO_CATEGORIES]
    return dict(info=dict(description="swinctl demo COCO-format set", version=str(FORMAT_VERSION)),
                images=images, annotations=annotations, categories=categories, licenses=[])


def _write_coco(spec: DemoSpec, root: Path) -> None:
    rng = np.random.default_rng(spec.seed)
    (root / "annotations").mkdir(parents=True)
    for split, first_id in (("train2017", 1), ("val2017", 100_000)):
        (root / split).mkdir()
        data = _coco_split(rng, spec, root / split, first_id)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))


def _write_ade20k(spec: DemoSpec, root: Path) -> None:
    rng = np.random.default_rng(spec.seed)
    width, height = spec.size
    for split, count in (("training", spec.train_images), ("validation", spec.val_images)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for n in range(count):
            image = _background(rng, width, height)
            labels = Image.new("L", (width, height), ADE_LABELS[0])  # the background is a class too (wall)
            draw, label_draw = ImageDraw.Draw(image), ImageDraw.Draw(labels)
            for _ in range(int(rng.integers(1, 4))):
                cls = int(rng.integers(1, len(ADE_LABELS)))
                polygon = _random_polygon(rng, width, height)
                draw.polygon(polygon, fill=_CLASS_COLOURS[cls])
                label_draw.polygon(polygon, fill=ADE_LABELS[cls])
            name = f"ADE_{split[:5]}_{n:08d}"
            image.save(root / "images" / split / f"{name}.jpg", quality=95)
            labels.save(root / "annotations" / split / f"{name}.png")


_WRITERS = {"coco": _write_coco, "ade20k": _write_ade20k}


def ensure(kind: str, root: Path | None = None, spec: DemoSpec | None = None) -> Path:
    """The demo set of `kind` under `root`, generated on first use. Returns its data root."""
    if kind not in _WRITERS:
        raise UserError(f"unknown demo dataset '{kind}': choose one of {', '.join(_WRITERS)} (or all)")
    spec = spec or DemoSpec(kind)
    root = Path(root) if root is not None else default_root()
    target = root / f"demo-{kind}-v{FORMAT_VERSION}-{spec.train_images}x{spec.size[0]}-s{spec.seed}"
    if (target / ".complete").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    try:
        _WRITERS[kind](spec, staging)
        (staging / ".complete").write_text(json.dumps(spec.__dict__))
        try:
            staging.rename(target)
        except OSError:  # another process finished first: theirs is identical
            if not (target / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
