"""Small generated datasets in the exact on-disk formats of COCO (instances and panoptic), ADE20K and Cityscapes,
for smoke runs and tests.

Each image holds one to three large objects (rectangles and ellipses of a third to half the image side) that never
overlap, each filled with its class's own saturated colour, on a grey, faintly noisy background. A tiny model learns
that in about a minute on two CPU cores, so the real evaluators (pycocotools through mmdet's CocoMetric, mmseg's
IoUMetric) report numbers that tell a working pipeline from a broken one: each recipe's learning smoke profile
(`smoke.learn`, run by benchmarks/smoke.py and a slow test) reaches UPerNet mIoU >= 50 and Mask R-CNN bbox mAP >= 10
on the validation split, which no image of the training split is in.

Generation is seeded (same files every time), cached, and atomic: a set appears under its final name only once
complete, so concurrent smoke runs never read half a dataset. Only numpy and PIL are imported here.
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

FORMAT_VERSION = 3

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
# The 53 stuff categories of COCO panoptic (names as mmdet's CocoPanopticDataset spells them) with their ids; the
# background of every demo image is one 'wall-other-merged' segment.
_COCO_STUFF = (
    "92 banner,93 blanket,95 bridge,100 cardboard,107 counter,109 curtain,112 door-stuff,118 floor-wood,119 flower,"
    "122 fruit,125 gravel,128 house,130 light,133 mirror-stuff,138 net,141 pillow,144 platform,145 playingfield,"
    "147 railroad,148 river,149 road,151 roof,154 sand,155 sea,156 shelf,159 snow,161 stairs,166 tent,168 towel,"
    "171 wall-brick,175 wall-stone,176 wall-tile,177 wall-wood,178 water-other,180 window-blind,181 window-other,"
    "184 tree-merged,185 fence-merged,186 ceiling-merged,187 sky-other-merged,188 cabinet-merged,189 table-merged,"
    "190 floor-other-merged,191 pavement-merged,192 mountain-merged,193 grass-merged,194 dirt-merged,"
    "195 paper-merged,196 food-other-merged,197 building-other-merged,198 rock-merged,199 wall-other-merged,"
    "200 rug-merged")
COCO_STUFF_CATEGORIES = [(int(i), name) for i, _, name in (item.partition(" ") for item in _COCO_STUFF.split(","))]
PANOPTIC_BACKGROUND = 199  # wall-other-merged
# ADE20K label values (1-based; 0 is "other" and ignored by reduce_zero_label): wall is the background, then floor,
# tree, ceiling for the objects.
ADE_LABELS = [1, 4, 5, 6]
# Cityscapes train ids (0..18, 255 ignored): road is the background, then car, person, traffic sign.
CITYSCAPES_LABELS = [0, 13, 11, 7]
# Object colours by class index (1..3); the background stays grey.
_CLASS_COLOURS = [(128, 128, 128), (230, 30, 30), (30, 200, 50), (40, 70, 240)]


@dataclass(frozen=True)
class DemoSpec:
    kind: str  # 'coco' (instances + panoptic) | 'ade20k' | 'cityscapes'
    train_images: int = 16
    val_images: int = 16  # enough objects (~30) for a validation number that means something
    size: tuple[int, int] = (128, 128)  # width, height
    seed: int = 0


@dataclass(frozen=True)
class Shape:
    cls: int  # 1..3: index into the kind's label list
    polygon: list[tuple[float, float]]

    @property
    def box(self) -> tuple[float, float, float, float]:
        xs, ys = [p[0] for p in self.polygon], [p[1] for p in self.polygon]
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def area(self) -> float:
        xs, ys = [p[0] for p in self.polygon], [p[1] for p in self.polygon]
        return 0.5 * abs(sum(xs[i] * ys[i - 1] - xs[i - 1] * ys[i] for i in range(len(xs))))


def default_root() -> Path:
    return Path(os.environ.get("SWINCTL_DATA", Path.home() / ".cache" / "swinctl" / "data"))


def _shape(rng: np.random.Generator, width: int, height: int) -> list[tuple[float, float]]:
    """A rectangle or an ellipse of a third to half the image side, fully inside the image."""
    w, h = rng.uniform(0.3, 0.5, size=2) * (width, height)
    cx = rng.uniform(w / 2 + 2, width - w / 2 - 2)
    cy = rng.uniform(h / 2 + 2, height - h / 2 - 2)
    if rng.random() < 0.5:
        return [(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2), (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)]
    steps = 24
    return [(cx + w / 2 * math.cos(2 * math.pi * k / steps), cy + h / 2 * math.sin(2 * math.pi * k / steps))
            for k in range(steps)]


def _scene(rng: np.random.Generator, width: int, height: int) -> list[Shape]:
    """One to three objects whose boxes keep 3 px apart, so every annotation matches its pixels exactly."""
    shapes: list[Shape] = []
    wanted = int(rng.integers(1, 4))
    for _ in range(40):
        if len(shapes) == wanted:
            break
        candidate = Shape(int(rng.integers(1, 4)), [(round(x, 1), round(y, 1)) for x, y in _shape(rng, width, height)])
        x0, y0, x1, y1 = candidate.box
        if all(x1 + 3 < b[0] or b[2] + 3 < x0 or y1 + 3 < b[1] or b[3] + 3 < y0 for b in (s.box for s in shapes)):
            shapes.append(candidate)
    return shapes


def _render(rng: np.random.Generator, width: int, height: int, shapes: list[Shape]) -> tuple[Image.Image, np.ndarray]:
    """The RGB image and a map of which shape (1-based; 0 = background) covers each pixel."""
    noise = rng.integers(112, 144, size=(height, width, 1), dtype=np.uint8).repeat(3, axis=2)
    image = Image.fromarray(noise, "RGB")
    index = Image.new("L", (width, height), 0)
    draw, index_draw = ImageDraw.Draw(image), ImageDraw.Draw(index)
    for n, shape in enumerate(shapes, start=1):
        draw.polygon(shape.polygon, fill=_CLASS_COLOURS[shape.cls])
        index_draw.polygon(shape.polygon, fill=n)
    return image, np.asarray(index)


def _scenes(spec: DemoSpec, rng: np.random.Generator, count: int):
    width, height = spec.size
    for n in range(count):
        shapes = _scene(rng, width, height)
        image, index = _render(rng, width, height, shapes)
        yield n, shapes, image, index


# ---------------------------------------------------------------------------------------------- COCO


def _box_of(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _coco_split(spec: DemoSpec, rng: np.random.Generator, root: Path, split: str, first_id: int) -> None:
    width, height = spec.size
    count = spec.train_images if split.startswith("train") else spec.val_images
    (root / split).mkdir()
    panoptic_dir = root / "annotations" / f"panoptic_{split}"
    panoptic_dir.mkdir()
    images, annotations, panoptic = [], [], []
    for n, shapes, image, index in _scenes(spec, rng, count):
        image_id = first_id + n
        name = f"{image_id:012d}"
        image.save(root / split / f"{name}.jpg", quality=95)
        images.append(dict(id=image_id, file_name=f"{name}.jpg", width=width, height=height))
        segments = []
        if (index == 0).any():
            segments.append(dict(id=1, category_id=PANOPTIC_BACKGROUND, iscrowd=0, bbox=_box_of(index == 0),
                                 area=int((index == 0).sum())))
        for k, shape in enumerate(shapes, start=1):
            x0, y0, x1, y1 = shape.box
            category = COCO_CATEGORIES[shape.cls - 1][0]
            annotations.append(dict(id=image_id * 10 + k, image_id=image_id, category_id=category,
                                    segmentation=[[v for point in shape.polygon for v in point]],
                                    area=round(shape.area, 2), iscrowd=0,
                                    bbox=[round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]))
            if (index == k).any():
                segments.append(dict(id=k + 1, category_id=category, iscrowd=0, bbox=_box_of(index == k),
                                     area=int((index == k).sum())))
        # panoptic PNGs encode segment ids as R + 256 G + 256^2 B; id 0 (none here) is void
        ids = np.where(index == 0, 1, index.astype(np.int32) + 1)
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=2).astype(np.uint8)
        Image.fromarray(rgb, "RGB").save(panoptic_dir / f"{name}.png")
        panoptic.append(dict(image_id=image_id, file_name=f"{name}.png", segments_info=segments))
    info = dict(description="swinctl demo COCO-format set", version=str(FORMAT_VERSION))
    things = [dict(id=cid, name=name, supercategory="demo") for cid, name in ALL_COCO_CATEGORIES]
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(dict(
        info=info, images=images, annotations=annotations, categories=things, licenses=[])))
    categories = [dict(c, isthing=1) for c in things] + [
        dict(id=cid, name=name, supercategory="demo", isthing=0) for cid, name in COCO_STUFF_CATEGORIES]
    (root / "annotations" / f"panoptic_{split}.json").write_text(json.dumps(dict(
        info=info, images=images, annotations=panoptic, categories=categories, licenses=[])))


def _write_coco(spec: DemoSpec, root: Path) -> None:
    rng = np.random.default_rng(spec.seed)
    (root / "annotations").mkdir(parents=True)
    for split, first_id in (("train2017", 1), ("val2017", 100_000)):
        _coco_split(spec, rng, root, split, first_id)


# ---------------------------------------------------------------------------------------------- segmentation


def _label_map(index: np.ndarray, shapes: list[Shape], labels: list[int]) -> Image.Image:
    values = np.array([labels[0]] + [labels[s.cls] for s in shapes], dtype=np.uint8)
    return Image.fromarray(values[index], "L")


def _write_ade20k(spec: DemoSpec, root: Path) -> None:
    rng = np.random.default_rng(spec.seed)
    for split, count in (("training", spec.train_images), ("validation", spec.val_images)):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for n, shapes, image, index in _scenes(spec, rng, count):
            name = f"ADE_{split[:5]}_{n:08d}"
            image.save(root / "images" / split / f"{name}.jpg", quality=95)
            _label_map(index, shapes, ADE_LABELS).save(root / "annotations" / split / f"{name}.png")


def _write_cityscapes(spec: DemoSpec, root: Path) -> None:
    rng = np.random.default_rng(spec.seed)
    for split, count in (("train", spec.train_images), ("val", spec.val_images)):
        images, labels = root / "leftImg8bit" / split / "demo", root / "gtFine" / split / "demo"
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        for n, shapes, image, index in _scenes(spec, rng, count):
            name = f"demo_{n:06d}_000019"
            image.save(images / f"{name}_leftImg8bit.png")
            _label_map(index, shapes, CITYSCAPES_LABELS).save(labels / f"{name}_gtFine_labelTrainIds.png")


_WRITERS = {"coco": _write_coco, "ade20k": _write_ade20k, "cityscapes": _write_cityscapes}
# recipe dataset names served by another kind's set: COCO's panoptic annotations sit next to its instances
ALIASES = {"coco_panoptic": "coco"}
KINDS = tuple(_WRITERS)


def ensure(kind: str, root: Path | None = None, spec: DemoSpec | None = None) -> Path:
    """The demo set of `kind` under `root`, generated on first use. Returns its data root."""
    kind = ALIASES.get(kind, kind)
    if kind not in _WRITERS:
        raise UserError(f"unknown demo dataset '{kind}': choose one of {', '.join(_WRITERS)} (or all)")
    spec = spec or DemoSpec(kind)
    root = Path(root) if root is not None else default_root()
    target = root / (f"demo-{kind}-v{FORMAT_VERSION}-{spec.train_images}+{spec.val_images}x{spec.size[0]}"
                     f"-s{spec.seed}")
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
