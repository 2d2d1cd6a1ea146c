"""Text logs: what OpenMMLab's loggers print, for work dirs that kept nothing else.

No library reads these logs (OpenMMLab only writes them), so the line grammar below is written by hand. Many MMDet
2.x / MMSeg 0.x trainings, released ones included, keep only ``<timestamp>.log``; MMEngine writes one too
(``<timestamp>/<timestamp>.log``). Two generations, told apart by the logger's name (``mmengine`` or not):

* mmcv 1.x ``TextLoggerHook``: ``Epoch [1][50/7330]\\tlr: 1.000e-04, eta: 1 day, 2:03:04, time: 0.840, ...``,
  ``Iter [50/160000]\\t...``, ``Epoch(val) [12][625]\\tbbox_mAP: 0.4590, ..., bbox_mAP_copypaste: 0.459 ...``,
  ``Iter(val) [250]\\taAcc: 0.8246, mIoU: 0.4808, ...``; items separated by ``, ``.
* MMEngine ``LogProcessor``: ``Epoch(train)  [1][ 50/7330]  base_lr: ...  lr: ...  eta: ...  loss: ...``,
  ``Epoch(val) [12][625/625]    coco/bbox_mAP: 0.4290  ...``, ``Iter(val) [500/500]    aAcc: 82.4600  mIoU: ...``
  (the loop's summary; its progress lines carry ``eta``), ``Epoch(test) [625/625]  coco/bbox_mAP: ...``; items
  separated by two spaces.

Each loop line becomes the record the generation's JSON logger writes beside it (mmcv 1.x ``<ts>.log.json``, MMEngine
``vis_data/scalars.json``), so :mod:`swinctl.results` reads text and JSON logs with the same scanner, iteration rules
and units. Only the standard library is imported.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# `Epoch [1][50/7330]`, `Epoch(train)  [1][ 50/7330]`, `Iter [50/160000]`, `Epoch(val) [1][625]`, `Epoch(test) [50/625]`
LOOP_HEADER = re.compile(
    rb"(?P<kind>Epoch|Iter)(?:\((?P<phase>train|val|test)\))?\s*"
    rb"(?:\[\s*(?P<epoch>\d+)\])?\[\s*(?P<cur>\d+)(?:/(?P<len>\d+))?\]"
)
# a loop header opening a log message: at the start of a line or right after the logger's prefix
_LOOP_MESSAGE = re.compile(rb"(?:^|\S - [A-Z]+ - )" + LOOP_HEADER.pattern)
# `2023-02-08 16:24:10,617 - mmdet - INFO - ` (mmcv 1.x), `2023/02/13 14:43:29 - mmengine - INFO - `, `06/09 07:57:51 -`
_LOG_PREFIX = re.compile(rb"(?m)^(?:\d{4}[-/])?\d\d[-/]\d\d \d\d:\d\d:\d\d(?:,\d+)? - (?P<name>[\w.]+) - [A-Z]+ - ")
# an item's key, after whitespace: mmcv 1.x separates items with ', ', MMEngine with two spaces (one in `base_lr: ...
# lr: ...`); keys start with a letter, so `eta: 1 day, 2:03:04` stays one item
_ITEM_KEY = re.compile(rb"(?<!\S)([A-Za-z_][\w./-]*): ")
_LOOP_LINE = re.compile(rb"(?m)^" + LOOP_HEADER.pattern)  # a loop line in a log copied without logger prefixes
_CONFIG = re.compile(rb" - [A-Z]+ - Config:\r?\n")  # (Windows runs write CRLF)
_EXP_NAME = re.compile(rb" - [A-Z]+ - Exp name: (\S+)")
_TIMESTAMP = re.compile(r"\d{8}_\d{6}")
SNIFF_BYTES = 1 << 16  # a log's first lines (environment, config) name its logger well within this


@dataclass(slots=True)
class Converted:
    """A text log rewritten as its generation's JSON log."""

    generation: str  # 'mmcv1' | 'mmengine'
    records: bytes  # JSON lines, as `<ts>.log.json` (mmcv1, after a header line) or `scalars.json` (mmengine) has them
    test: dict[str, float] = field(default_factory=dict)  # the last test loop's metrics, as logged
    cut: bool = False  # the last line had no newline (cut while being written or copied): left out


def is_text_log(head: bytes) -> bool:
    """Whether the first bytes of a file are an OpenMMLab text log (a logger prefix or a loop line opens a line)."""
    return bool(_LOG_PREFIX.search(head) or _LOOP_LINE.search(head))


def generation(data: bytes) -> str:
    """'mmengine' when MMEngine's logger wrote it, else 'mmcv1' (MMDet 2.x, MMSeg 0.x and the like name their own)."""
    prefix = _LOG_PREFIX.search(data, 0, SNIFF_BYTES)
    if prefix:
        return "mmengine" if prefix["name"] == b"mmengine" else "mmcv1"
    header = _LOOP_MESSAGE.search(data)  # a log copied without prefixes: MMEngine's loops print `(train)`, `[n/len]`
    if header and (header["phase"] == b"train" or (header["phase"] and header["len"])):
        return "mmengine"
    return "mmcv1"


def find(work_dir: Path) -> list[Path]:
    """The text logs at the top of a work dir: `*.log` files an OpenMMLab logger wrote that are named after their
    config (released logs), then the `<timestamp>.log` files oldest first (the newest last)."""
    try:
        names = sorted(e.name for e in os.scandir(work_dir)
                       if e.name.endswith(".log") and e.is_file())
    except OSError:
        return []
    stamped = [n for n in names if _TIMESTAMP.fullmatch(n.removesuffix(".log"))]
    named = [n for n in names if n not in stamped and is_text_log(read_head(work_dir / n))]
    return [work_dir / n for n in named + stamped]


def read_head(path: Path) -> bytes:
    """The first bytes of a file, enough to tell whether and which text log it is (b'' when it cannot be read)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(SNIFF_BYTES)
    except OSError:
        return b""


def config_text(data: bytes) -> str:
    """The config a text log printed at its start ('' when it printed none)."""
    start = _CONFIG.search(data)
    if start is None:
        return ""
    end = _LOG_PREFIX.search(data, start.end())
    return data[start.end():end.start() if end else len(data)].decode(errors="replace")


def experiment_name(data: bytes) -> str | None:
    """The `Exp name:` a log prints after each epoch: mmcv 1.x names it after the config file, MMEngine adds the run's
    timestamp (dropped here)."""
    found = _EXP_NAME.search(data)
    return re.sub(r"_\d{8}_\d{6}$", "", found.group(1).decode(errors="replace")) if found else None


def to_records(data: bytes) -> Converted:
    """Every loop line of a text log as the JSON record its generation's JSON logger writes.

    mmcv 1.x records keep the inner iteration and the epoch as logged (`{"mode": "train", "epoch": 1, "iter": 50, ...}`,
    validation: `{"mode": "val", "epoch": 12, "iter": 625, ...}` with the loop's length), after a header line with the
    printed config, which tells epoch- from iteration-based runs. MMEngine records carry the global iteration
    (`"iter"`, `"step"`); a validation summary carries `"step"`: its epoch (epoch-based loops; iteration-based ones
    print no iteration for it). Progress lines inside validation, tables and messages make no record. Only numbers
    are kept.
    """
    cut = bool(data) and not data.endswith(b"\n")
    if cut:
        data = data[:data.rfind(b"\n") + 1]
    gen = generation(data)
    out = [json.dumps({"config": config_text(data)})] if gen == "mmcv1" else []
    test: dict[str, float] = {}
    for line in data.split(b"\n"):
        if b"[" not in line:
            continue
        header = _LOOP_MESSAGE.search(line)
        if header is None:
            continue
        items = _items(line[header.end():])
        if gen == "mmcv1":
            record = _mmcv1_record(header, items)
        else:
            record = _mmengine_record(header, items)
            if record is not None and header["phase"] == b"test":  # MMEngine dumps test metrics apart from scalars
                test, record = record, None
        if record is not None:
            out.append(json.dumps(record))
    records = "\n".join(out).encode() + b"\n" if out else b""
    return Converted(gen, records, test, cut)


def _items(text: bytes) -> dict[str, bytes]:
    """`key: value` items of a loop line, values as printed (`eta: 1 day, 2:03:04` keeps its comma)."""
    keys = list(_ITEM_KEY.finditer(text))
    items = {}
    for key, following in zip(keys, [*keys[1:], None], strict=True):
        value = text[key.end():following.start() if following else len(text)]
        items[key[1].decode(errors="replace")] = value.strip().rstrip(b",")
    return items


def _numbers(items: dict[str, bytes]) -> dict[str, float]:
    """The numeric items (`nan` and `inf` too: a diverged run prints them); text such as eta or copypaste is dropped."""
    out = {}
    for key, value in items.items():
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def _mmcv1_record(header: re.Match, items: dict[str, bytes]) -> dict | None:
    phase = (header["phase"] or b"train").decode()
    if (phase == "train") != bool(header["len"]):  # train lines show `[i/len]`, evaluation lines `[len]`
        return None
    record: dict = {"mode": phase}
    if header["epoch"]:
        record["epoch"] = int(header["epoch"])
    record["iter"] = int(header["cur"])
    return {**record, **{key: value for key, value in _numbers(items).items() if key not in record}}


def _mmengine_record(header: re.Match, items: dict[str, bytes]) -> dict | None:
    if not header["len"]:
        return None
    phase = (header["phase"] or b"train").decode()
    epoch, cur, length = (int(header["epoch"]) if header["epoch"] else None), int(header["cur"]), int(header["len"])
    numbers = _numbers(items)
    if phase == "train":
        it = (epoch - 1) * length + cur if epoch else cur
        return {**numbers, **({"epoch": epoch} if epoch else {}), "iter": it, "step": it}
    if cur != length or "eta" in items:  # a progress line of the loop, not its summary
        return None
    return {**numbers, "step": epoch} if epoch and phase == "val" else numbers
