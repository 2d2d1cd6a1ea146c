"""Reading results: one parser for every log format a Swin detector or segmenter leaves in its work dir.

Two generations of OpenMMLab logs are understood:

* ``mmengine`` (MMDetection 3.x, MMSegmentation 1.x): ``<work_dir>/<ts>/vis_data/scalars.json`` (JSON lines from
  ``LocalVisBackend``: train lines carry ``iter``/``step``/``loss``/``lr`` (and ``epoch`` when the log processor is
  epoch-based), validation lines carry ``coco/bbox_mAP``... or ``aAcc``/``mIoU``/``mAcc`` and a ``step`` that is the
  epoch or the iteration depending on ``LoggerHook.log_metric_by_epoch``), the single JSON object a test run dumps to
  ``<work_dir>/<ts>/<ts>.json``, and the text log ``<work_dir>/<ts>/<ts>.log`` (the only place with totals and ETA).
* ``mmcv1`` (MMDetection 2.x, MMSegmentation 0.x, e.g. the Swin MIM example's released logs):
  ``<work_dir>/<ts>.log.json`` written by ``TextLoggerHook._dump_log``: a header line (env_info, config, seed), then
  ``mode: train`` lines (``iter`` counts inside the epoch for epoch-based runners) and ``mode: val`` lines whose
  ``iter`` is the length of the validation loop; plus the text log ``<work_dir>/<ts>.log``.

A work dir (or MMEngine timestamp dir) without a JSON log is read from its text log instead (:mod:`swinctl.textlog`
rewrites it into the JSON records above, so both give the same validations, iterations and units); where both exist
the JSON log is read and the text log gives progress only.

Every metric comes out in percent points under a canonical name (:data:`CANONICAL_METRICS`): COCO metrics are
fractions in both generations, MMSeg 0.x metrics are fractions and MMSeg 1.x metrics already percent, so the scale
depends on the format and the name only, never on the value. The iteration/epoch a validation belongs to is taken
from the train line before it, since the validation lines' own ``iter``/``step`` mean different things per format.

Several timestamp dirs (a resumed or restarted run) merge into one history ordered by time: a later segment replaces
the earlier history from its first train iteration on. Nothing here raises on bad input: damaged files, partial last
lines, runs with no validation yet or validation without training come back with :attr:`RunLog.problems` (why) and
:attr:`RunLog.flags` (what). Only the standard library is imported, and the scan is byte-level: validation lines are
found by substring search and only they (plus the train line before each) are JSON-parsed unless the full training
history is asked for, so a report over a thousand runs stays well under a second.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from swinctl import textlog

# ---------------------------------------------------------------------------------------------- metrics

COCO_METRICS = tuple(f"{task}_mAP{suffix}" for task in ("bbox", "segm")
                     for suffix in ("", "_50", "_75", "_s", "_m", "_l"))
SEG_METRICS = ("mIoU", "mAcc", "aAcc")
# A test with the codebase's test-time augmentation (`swinctl test --tta`: multi-scale + flip) logs its evaluator's
# metrics under this prefix (ms_flip/mIoU); they read as mIoU_ms_flip, the name the metafiles publish them under.
TTA_PREFIX = "ms_flip"
TTA_METRICS = tuple(f"{name}_{TTA_PREFIX}" for name in SEG_METRICS)
# COCO panoptic quality (CocoPanopticMetric), all/things/stuff: logged in percent by MMDet 2.x and 3.x alike
PANOPTIC_METRICS = tuple(f"{q}{part}" for part in ("", "_th", "_st") for q in ("PQ", "SQ", "RQ"))
CANONICAL_METRICS = COCO_METRICS + SEG_METRICS + TTA_METRICS + PANOPTIC_METRICS
PRIMARY_METRIC = {"mmdet": "bbox_mAP", "mmseg": "mIoU"}
# The one table of headline metrics: each task's (a recipe's `task`), in the order a log's task is recognised (by the
# first marker it has: a panoptic model logs box and mask mAP too, an instance model box mAP too), and what each of
# those metrics is called in words. `status`, `recipes`, `report`, sweeps and the reference checks all read these.
TASK_METRICS = (  # (task, marker, headline metrics)
    ("panoptic", "PQ", ("PQ",)),
    ("instance", "segm_mAP", ("bbox_mAP", "segm_mAP")),
    ("detection", "bbox_mAP", ("bbox_mAP",)),
    ("semantic", "mIoU", ("mIoU",)),
    ("semantic", f"mIoU_{TTA_PREFIX}", (f"mIoU_{TTA_PREFIX}",)),  # a `test --tta` run logs only these
)
HEADLINE = {task: shown for task, _, shown in reversed(TASK_METRICS)}  # task -> its headline metrics
HEADLINE_METRICS = tuple(dict.fromkeys(m for _, _, shown in TASK_METRICS for m in shown))
METRIC_WORDS = {"bbox_mAP": "box mAP", "segm_mAP": "mask mAP", "PQ": "PQ", "mIoU": "mIoU", "mAcc": "mAcc",
                "aAcc": "aAcc", f"mIoU_{TTA_PREFIX}": "mIoU (ms+flip)"}


def metric_word(name: str, short: bool = False) -> str:
    """`bbox_mAP` as people write it: "box mAP" ("box" short, where the column says mAP); other names as they are."""
    word = METRIC_WORDS.get(name, name)
    return word.removesuffix(" mAP") if short else word

# Flags a RunLog may carry (the matching `problems` entry says why).
NO_LOGS = "no_logs"  # no log file of a known format (JSON or text) in the work dir
NO_METRICS = "no_metrics"  # no validation or test metrics (yet)
NO_TRAIN = "no_train"  # metrics but no training lines (a val/test-only run or a lost train log)
TRUNCATED = "truncated"  # a partial last line, or JSON lines that do not parse
INCOMPLETE = "incomplete"  # the logs stop before the schedule's end (still running, or killed)
DIVERGED = "diverged"  # the last validation logged NaN or Infinity for a metric
UNREADABLE = "unreadable"  # a log file that is binary or damaged throughout (no line is JSON or a log line)

_COCO = frozenset(COCO_METRICS)
_SEG = frozenset(SEG_METRICS)
_PANOPTIC = frozenset(PANOPTIC_METRICS)
_TS_DIR = re.compile(r"\d{8}_\d{6}")


def task_metrics(logged: set[str] | frozenset[str]) -> tuple[str, ...]:
    """The metrics that tell a run's result, from the metrics its logs have: box and mask mAP for instance
    segmentation, PQ for panoptic, mIoU for semantic segmentation."""
    return next((shown for _, marker, shown in TASK_METRICS if marker in logged), ())


def normalise_metrics(raw: Mapping[str, object], fmt: str) -> dict[str, float]:
    """Raw logged metrics -> canonical names in percent points; other keys are dropped.

    ``fmt`` is the log generation ('mmengine' or 'mmcv1'): COCO metrics are fractions in both and always scaled, the
    segmentation metrics are fractions only in 'mmcv1'. Prefixes such as ``coco/`` or ``val/`` are removed; COCO's
    -1 (no object of that size) and non-finite values are left out.
    """
    out: dict[str, float] = {}
    seg_scale = 100.0 if fmt == "mmcv1" else 1.0
    for key, value in raw.items():
        kind = _kind_of(key)
        if not kind or value.__class__ not in (float, int) or not math.isfinite(value):
            continue
        name, is_coco = kind
        if is_coco:
            if value >= 0:  # COCOeval reports -1 for an area range without objects
                out[name] = round(value * 100.0, 4)
        else:  # (rounding also drops float32 noise: 85.5999984741211)
            out[name] = round(value * (1.0 if name in _PANOPTIC else seg_scale), 4)
    return out


_KEY_KIND: dict[str, tuple[str, bool] | tuple[()]] = {}  # raw key -> (canonical name, is COCO) or () to drop


def _kind_of(key: str) -> tuple[str, bool] | tuple[()]:
    kind = _KEY_KIND.get(key)
    if kind is None:
        kind = _KEY_KIND[key] = _key_kind(key)
    return kind


def _key_kind(key: str) -> tuple[str, bool] | tuple[()]:
    prefix, _, name = key.rpartition("/")
    if prefix.rsplit("/", 1)[-1] == TTA_PREFIX:  # a test-time augmentation result (segmentation only)
        return (f"{name}_{TTA_PREFIX}", False) if name in _SEG else ()
    if name in _COCO:
        return name, True
    if name in _SEG or name in _PANOPTIC:
        return name, False
    return ()


# ---------------------------------------------------------------------------------------------- data


@dataclass(slots=True)
class TrainPoint:
    iter: int  # global iteration (1-based, as logged)
    epoch: int | None
    loss: float | None
    lr: float | None
    time: float | None  # seconds per iteration (averaged over the logging interval)


@dataclass(slots=True)
class ValPoint:
    iter: int | None  # the global iteration the evaluated weights come from (None: unknown)
    epoch: int | None
    metrics: dict[str, float]


@dataclass(slots=True)
class Progress:
    iter: int  # global iteration of the last train line
    total: int | None  # iterations of the whole schedule, when the logs tell
    epoch: int | None = None
    max_epochs: int | None = None
    eta_s: float | None = None
    phase: str = "train"  # 'train' | 'val' | 'test': what the newest log line is about
    interval: int | None = None  # logging interval seen at the end of the log
    iters_per_epoch: int | None = None  # the train dataloader's length (epoch-based runs)
    updated_at: float | None = None  # mtime of the log it was read from

    @property
    def fraction(self) -> float | None:
        return min(self.iter / self.total, 1.0) if self.total else None

    @property
    def done(self) -> bool:
        """The schedule ran to its end (the last logging interval reached the total)."""
        if not self.total:
            return False
        return self.total - self.iter < (self.interval or 1)


@dataclass(slots=True)
class RunLog:
    work_dir: Path
    format: str  # 'mmengine' | 'mmcv1' | 'none'
    train: list[TrainPoint] = field(default_factory=list)  # empty unless read with train=True
    val: list[ValPoint] = field(default_factory=list)
    test_metrics: dict[str, float] = field(default_factory=dict)
    progress: Progress | None = None
    problems: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    files: list[Path] = field(default_factory=list)  # the logs that were read, oldest first
    has_train: bool = False  # any train line was seen (also when `train` was not loaded)
    empty_vals: int = 0  # validations that logged no metric at all (when none did)
    diverged: list[str] = field(default_factory=list)  # metrics the last validation logged as NaN/Infinity

    def final_metrics(self) -> dict[str, float]:
        """The run's result: the test metrics when there are any, else the last validation."""
        return dict(self.test_metrics) if self.test_metrics else self.last_metrics()

    def last_metrics(self) -> dict[str, float]:
        return dict(self.val[-1].metrics) if self.val else dict(self.test_metrics)

    def best_point(self, metric: str) -> ValPoint | None:
        """The validation with the highest `metric` (the later one on ties)."""
        best = None
        for point in self.val:
            value = point.metrics.get(metric)
            if value is not None and (best is None or value >= best.metrics[metric]):
                best = point
        return best

    def best_metrics(self, metric: str) -> dict[str, float]:
        """All metrics of the validation where `metric` peaked (the test metrics when there was no validation)."""
        point = self.best_point(metric)
        if point is not None:
            return dict(point.metrics)
        return dict(self.test_metrics) if metric in self.test_metrics else {}

    def metric_curve(self, metric: str) -> list[tuple[int | None, int | None, float]]:
        """(iter, epoch, value) of `metric` over the validations."""
        return [(p.iter, p.epoch, p.metrics[metric]) for p in self.val if metric in p.metrics]

    def note(self, flag: str | None, problem: str) -> None:
        if flag:
            self.flags.add(flag)
        if problem not in self.problems:
            self.problems.append(problem)


# ---------------------------------------------------------------------------------------------- low level


def _read(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def _loads(line: bytes) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    return value if isinstance(value, dict) else None


def _line_at(data: bytes, pos: int) -> tuple[int, int]:
    """(start, end) of the line holding byte `pos`, without its newline."""
    start = data.rfind(b"\n", 0, pos) + 1
    end = data.find(b"\n", pos)
    return start, (len(data) if end < 0 else end)


def _metric_lines(data: bytes, start: int, markers: tuple[bytes, ...]) -> list[tuple[int, int]]:
    """Spans of the lines from `start` on that contain one of `markers`, in file order.

    Every canonical metric name has an upper-case A, I or Q (mAP, aAcc, mAcc, mIoU, PQ) while training lines are
    lower case, so a memchr-speed search for those bytes finds the candidates; only their lines are checked further.
    """
    spans: dict[int, int] = {}
    for byte in (b"A", b"I", b"Q"):
        pos = data.find(byte, start)
        while pos >= 0:
            line_start, line_end = _line_at(data, pos)
            if line_start not in spans:
                line = data[line_start:line_end]
                if any(m in line for m in markers):
                    spans[line_start] = line_end
            pos = data.find(byte, line_end)
    return sorted(spans.items())


def _line_before(data: bytes, start: int, marker: bytes, floor: int = 0) -> bytes | None:
    """The nearest line that ends before offset `start` and contains `marker` (not looking before `floor`)."""
    pos = data.rfind(marker, floor, max(start - 1, floor))
    if pos < 0:
        return None
    line_start, line_end = _line_at(data, pos)
    return data[line_start:line_end]


_INT_FIELDS = {key: re.compile(rb'"' + key + rb'": (-?\d+)[,}]') for key in (b"iter", b"epoch", b"step")}


def _int_field(line: bytes, key: bytes) -> int | None:
    """An integer field of a JSON line, without parsing the line."""
    match = _INT_FIELDS[key].search(line)
    return int(match.group(1)) if match else None


def _partial_tail(data: bytes, log: RunLog, path: Path) -> bytes:
    """`data` without a partial (unterminated, unparseable) last line, noting it."""
    if not data or data.endswith(b"\n"):
        return data
    cut = data.rfind(b"\n") + 1
    if _loads(data[cut:]) is None:
        _note_cut(log, path)
        return data[:cut]
    return data


def _note_cut(log: RunLog, path: Path) -> None:
    log.note(TRUNCATED, f"{path.name}: partial last line ignored (the file was cut off while being written)")


def _float(value: object) -> float | None:
    if isinstance(value, dict):  # mmcv 1.x logs one lr per optimizer as a dict
        value = next(iter(value.values()), None)
    if isinstance(value, list):
        value = value[0] if value else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _note_bad(log: RunLog, path: Path, bad: int) -> None:
    if bad:
        what = "1 line that is" if bad == 1 else f"{bad} lines that are"
        log.note(TRUNCATED, f"{path.name}: skipped {what} not JSON (damaged or cut off)")


def _nonfinite(raw: Mapping[str, object]) -> list[str]:
    """Known metrics of a logged line whose value is NaN or Infinity (normalise_metrics leaves them out)."""
    out = []
    for key, value in raw.items():
        if value.__class__ is float and not math.isfinite(value):
            kind = _kind_of(key)
            if kind:
                out.append(kind[0])
    return out


_NOT_JSON_TEXT = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f-\xff]")  # MMEngine's JSON lines are ASCII, no control bytes


def _damaged(data: bytes) -> bool:
    """Whether some line of a JSON-lines file (its partial tail cut off) may not be JSON, at memchr speed: a
    byte no JSON dump writes, or a line that does not begin with { and end with }. Only then are lines parsed."""
    if _NOT_JSON_TEXT.search(data):
        return True
    lines = data.count(b"\n") + (not data.endswith(b"\n") and bool(data))
    blank = data.count(b"\n\n") + data.startswith(b"\n")
    opened = data.count(b"\n{") + data.startswith(b"{")
    closed = data.count(b"}\n") + data.endswith(b"}")
    return not (opened == closed == lines - blank)


def _unreadable(data: bytes, log: RunLog, path: Path) -> bool:
    """A file none of whose first lines is a JSON object: binary or damaged, not a log. Flags it."""
    # whole lines, however long: a valid log may hold one line of many megabytes (cut, it would not parse)
    lines = [line for line in data.split(b"\n", 8)[:8] if line.strip()]
    if not lines or any(line.lstrip().startswith(b"{") and isinstance(_loads(line), dict) for line in lines):
        return False
    log.note(UNREADABLE, f"{path}: binary or damaged throughout, not a log (no line is JSON); skipped")
    return True


@dataclass(slots=True)
class _Segment:
    """What one log file holds, before merging."""

    train: list[TrainPoint]
    val: list[ValPoint]
    first_train_iter: int | None
    has_train: bool
    progress: Progress | None = None  # from the last train line, for work dirs without a text log
    empty_vals: int = 0  # validation lines without any metric (counted only when no validation has one)
    last_nonfinite: list[str] | None = None  # None: no validation line; []: the last one was finite


# ---------------------------------------------------------------------------------------------- mmengine

_MMENGINE_MARKERS = (b'mAP"', b'mIoU"', b'aAcc"', b'mAcc"', b'PQ"')


def _mmengine_train_point(d: dict) -> TrainPoint | None:
    it = _int(d.get("iter"))
    if it is None:
        return None
    lr = d.get("lr")
    if lr is None:
        lr = next((v for k, v in d.items() if k.endswith("lr")), None)
    return TrainPoint(it, _int(d.get("epoch")), _float(d.get("loss")), _float(lr), _float(d.get("time")))


def _scan_mmengine(data: bytes, log: RunLog, path: Path, with_train: bool, ipe: int | None) -> _Segment:
    data = _partial_tail(data, log, path)
    spans = _metric_lines(data, 0, _MMENGINE_MARKERS)
    bad = 0
    train: list[TrainPoint] = []
    if with_train or _damaged(data):  # without the history, lines are parsed only where some look damaged
        skip = {start for start, _ in spans}
        pos = 0
        for line in data.split(b"\n"):
            start, pos = pos, pos + len(line) + 1
            if start in skip or not line.strip():
                continue
            parsed = _loads(line)
            point = _mmengine_train_point(parsed) if parsed is not None and with_train else None
            if point is not None:
                train.append(point)
            elif parsed is None:
                bad += 1
    first = data.find(b'"iter"')
    has_train = first >= 0
    first_train_iter = _int_field(data[slice(*_line_at(data, first))], b"iter") if has_train else None

    val: list[ValPoint] = []
    last_nonfinite: list[str] | None = None
    for start, end in spans:
        parsed = _loads(data[start:end])
        if parsed is None:
            bad += 1
            continue
        if "iter" in parsed:  # a train line that merely mentions a metric-like key
            continue
        metrics = normalise_metrics(parsed, "mmengine")
        last_nonfinite = _nonfinite(parsed)
        if not metrics:
            continue
        before = _line_before(data, start, b'"iter"') if has_train else None
        step = _int(parsed.get("step"))
        if before is None:  # validation before any training: a val-only run; step is all there is
            val.append(ValPoint(step or None, None, metrics))
            continue
        it, epoch = _int_field(before, b"iter") or 0, _int_field(before, b"epoch")
        if epoch is not None:  # epoch-based: the validation closes the epoch of the train line before it
            val.append(ValPoint(max(epoch * ipe, it) if ipe else it, epoch, metrics))
        else:  # iteration-based: step is the iteration (log_metric_by_epoch=False) unless it lags the train line
            val.append(ValPoint(step if step and step >= it else it, None, metrics))
    _note_bad(log, path, bad)
    # no metric anywhere: were there validations at all? (lines that are not train lines; rare, so counted only here)
    empty = data.count(b"\n") - data.count(b'"iter"') if not val and has_train else 0
    progress = None
    if has_train:
        last = _line_before(data, len(data) + 1, b'"iter"')
        if last is not None:
            progress = Progress(iter=_int_field(last, b"iter") or 0, total=None, epoch=_int_field(last, b"epoch"))
    return _Segment(train, val, first_train_iter, has_train, progress, empty, last_nonfinite)


def _mmengine_dirs(work_dir: Path) -> list[Path]:
    try:
        entries = [e for e in os.scandir(work_dir) if _TS_DIR.fullmatch(e.name) and e.is_dir()]
    except OSError:
        return []
    return [Path(e.path) for e in sorted(entries, key=lambda e: e.name)]


def _read_mmengine(log: RunLog, dirs: list[Path], with_train: bool, ipe: int | None) -> None:
    segments: list[_Segment] = []
    for ts_dir in dirs:
        scalars = ts_dir / "vis_data" / "scalars.json"
        data = _read(scalars)
        if data is None:  # the per-run copy LoggerHook writes beside it
            scalars = ts_dir / "vis_data" / f"{ts_dir.name}.json"
            data = _read(scalars)
        if data is not None:
            log.files.append(scalars)
            if not _unreadable(data, log, scalars):
                segments.append(_scan_mmengine(data, log, scalars, with_train, ipe))
        else:  # a run whose JSON log is gone (or never written): its text log
            _read_text(log, [ts_dir / f"{ts_dir.name}.log"], with_train, ipe, segments)
        test_file = ts_dir / f"{ts_dir.name}.json"
        test_data = _read(test_file)
        if test_data is not None:
            log.files.append(test_file)
            parsed = _loads(test_data.strip())
            if parsed is None:
                log.note(TRUNCATED, f"{test_file.name}: the test results are not valid JSON (cut off?)")
            else:
                metrics = normalise_metrics(parsed, "mmengine")
                if metrics:
                    log.test_metrics = metrics  # the newest test wins
    _merge(log, segments)


def _merge(log: RunLog, segments: list[_Segment]) -> None:
    """Append segments oldest first: each one replaces the history from its first train iteration on."""
    val: dict[tuple, ValPoint] = {}
    for seg in segments:
        log.has_train |= seg.has_train
        cut = seg.first_train_iter
        if cut is not None:
            log.train = [p for p in log.train if p.iter < cut]
            val = {k: v for k, v in val.items() if v.iter is None or v.iter < cut}
        log.train.extend(seg.train)
        log.progress = seg.progress or log.progress
        log.empty_vals += seg.empty_vals
        if seg.last_nonfinite is not None:  # the newest file with a validation decides
            log.diverged = seg.last_nonfinite
        for point in seg.val:  # a repeated validation of the same weights: the later one wins
            val.pop((point.iter, point.epoch), None)
            val[(point.iter, point.epoch)] = point
    log.val = sorted(val.values(), key=lambda v: (v.iter is None, v.iter or 0))


# ---------------------------------------------------------------------------------------------- mmcv 1.x


def _mmcv1_files(work_dir: Path) -> list[Path]:
    try:
        names = sorted(e.name for e in os.scandir(work_dir) if e.name.endswith(".log.json") and e.is_file())
    except OSError:
        return []
    return [work_dir / n for n in names]


def _read_mmcv1(log: RunLog, files: list[Path], with_train: bool, ipe: int | None) -> None:
    segments = []
    for path in files:
        data = _read(path)
        if data is None:
            continue
        log.files.append(path)
        if not _unreadable(data, log, path):
            segments.append(_scan_mmcv1(data, log, path, with_train, ipe))
    _merge(log, segments)


def _mmcv1_by_epoch(config: object) -> bool | None:
    """Epoch- or iteration-based, from the config text in the header (None: the header does not say)."""
    if not isinstance(config, str):
        return None
    if "IterBasedRunner" in config:
        return False
    if "EpochBasedRunner" in config or re.search(r"\b(?:max|total)_epochs\s*=", config):
        return True
    if re.search(r"\b(?:max|total)_iters\s*=", config):
        return False
    return None


def _scan_mmcv1(data: bytes, log: RunLog, path: Path, with_train: bool, ipe: int | None) -> _Segment:
    data = _partial_tail(data, log, path)
    newline = data.find(b"\n")
    header = _loads(data[:newline] if newline >= 0 else data) or {}
    body = newline + 1 if "mode" not in header else 0
    config = header.get("config") if isinstance(header.get("config"), str) else ""
    by_epoch = _mmcv1_by_epoch(config)
    first = data.find(b'"train"', body)
    has_train = first >= 0
    if by_epoch is None:  # no header: inner (epoch-based) iterations restart after an epoch change
        by_epoch = _looks_epoch_based(data, body)
    if by_epoch and ipe is None and has_train:
        ipe = _estimate_ipe(data, body)
        if ipe:
            log.note(None, f"{path.name}: no text log with the epoch length; iterations per epoch estimated from "
                           f"the last logged iteration of an epoch ({ipe})")

    def global_iter(line: bytes) -> int:
        inner = _int_field(line, b"iter") or 0
        epoch = _int_field(line, b"epoch") or 1
        return (epoch - 1) * ipe + inner if by_epoch and ipe else inner

    train: list[TrainPoint] = []
    bad = 0
    if with_train:
        for line in data[body:].split(b"\n"):
            if not line.strip():
                continue
            d = _loads(line)
            if d is None:
                bad += 1
            elif d.get("mode") == "train":
                train.append(TrainPoint(global_iter(line), _int(d.get("epoch")) if by_epoch else None,
                                        _float(d.get("loss")),
                                        _float(d.get("lr")), _float(d.get("time"))))
    first_train_iter = global_iter(data[slice(*_line_at(data, first))]) if has_train else None

    val: list[ValPoint] = []
    last_nonfinite: list[str] | None = None
    for start, end in _metric_lines(data, body, (b'"val"',)):
        parsed = _loads(data[start:end])
        if parsed is None:
            bad += 1
            continue
        if parsed.get("mode") != "val":
            continue
        metrics = normalise_metrics(parsed, "mmcv1")
        last_nonfinite = _nonfinite(parsed)
        if not metrics:
            continue
        epoch = _int(parsed.get("epoch"))
        before = _line_before(data, start, b'"train"', body) if has_train else None
        if by_epoch:
            it = epoch * ipe if epoch and ipe else (global_iter(before) if before else None)
        else:
            it, epoch = (global_iter(before) if before else None), None
        val.append(ValPoint(it, epoch, metrics))
    _note_bad(log, path, bad)
    empty = data.count(b'"mode": "val"', body) if not val else 0

    progress = None
    last = _line_before(data, len(data) + 1, b'"train"', body) if has_train else None
    if last is not None:
        length = re.search(r"\b(?:max|total)_(epochs|iters)\s*=\s*(\d+)", config)
        total = max_epochs = None
        if length and length.group(1) == "iters" and not by_epoch:
            total = int(length.group(2))
        elif length and length.group(1) == "epochs" and by_epoch:
            max_epochs = int(length.group(2))
            total = max_epochs * ipe if ipe else None
        progress = Progress(iter=global_iter(last), total=total, epoch=_int_field(last, b"epoch") if by_epoch else None,
                            max_epochs=max_epochs, iters_per_epoch=ipe if by_epoch else None)
    return _Segment(train, val, first_train_iter, has_train, progress, empty, last_nonfinite)


_MMCV1_TRAIN = re.compile(rb'"mode": "train", "epoch": (\d+), "iter": (\d+)')


def _looks_epoch_based(data: bytes, start: int) -> bool:
    pairs = [(int(e), int(i)) for e, i in _MMCV1_TRAIN.findall(data, start)]
    return any(e2 > e1 and i2 < i1 for (e1, i1), (e2, i2) in zip(pairs, pairs[1:], strict=False))


def _estimate_ipe(data: bytes, start: int) -> int | None:
    """Iterations per epoch: the last inner iteration logged in an epoch that was followed by another one."""
    last: dict[int, int] = {}
    for e, i in _MMCV1_TRAIN.findall(data, start):
        last[int(e)] = max(last.get(int(e), 0), int(i))
    complete = [it for epoch, it in last.items() if epoch + 1 in last]
    return max(complete) if complete else (max(last.values()) if last else None)


# ---------------------------------------------------------------------------------------------- text logs


def _read_text(log: RunLog, paths: list[Path], with_train: bool, ipe: int | None,
               segments: list[_Segment]) -> str | None:
    """Append the segments of text logs (read through the JSON scanner of their generation); returns the generation
    of the last one read."""
    gen = None
    for path in paths:
        data = _read(path)
        if data is None:
            continue
        log.files.append(path)
        if data.strip() and not textlog.is_text_log(data[:textlog.SNIFF_BYTES]):
            log.note(UNREADABLE, f"{path}: binary or damaged throughout, not a log (no line is a log line); skipped")
            continue
        converted = textlog.to_records(data)
        gen = converted.generation
        if converted.cut:
            _note_cut(log, path)
        scan = _scan_mmengine if gen == "mmengine" else _scan_mmcv1
        segments.append(scan(converted.records, log, path, with_train, ipe))
        test = normalise_metrics(converted.test, gen)
        if test:
            log.test_metrics = test
    return gen


# ---------------------------------------------------------------------------------------------- progress

# mmengine: `Epoch(train)  [1][ 50/7330]`, `Epoch(val) [1][ 50/625]`, `Epoch(test) [50/625]`, `Iter(train) [50/160000]`
# mmcv 1.x: `Epoch [1][50/7330]` (or `Epoch(train) [1][50/7330]`), `Iter [50/160000]`, `Epoch(val) [1][625]`
_PROGRESS_LINE = textlog.LOOP_HEADER
_ETA = re.compile(rb"eta: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)")
_LENGTH_VALUE = re.compile(rb"\s*=\s*(\d+)")
_TRAIN_LOOP_EPOCHS = re.compile(rb"(?m)^train_cfg = dict\((?:[^()]|\([^()]*\))*?\bmax_epochs=(\d+)")
_TAIL, _TAIL_MAX, _HEAD_MAX = 1 << 15, 1 << 22, 1 << 20


def _newest_text_log(work_dir: Path, dirs: list[Path]) -> tuple[Path, str] | None:
    """The newest text log of a work dir and its format."""
    for ts_dir in reversed(dirs):
        candidate = ts_dir / f"{ts_dir.name}.log"
        if candidate.is_file():
            return candidate, "mmengine"
    if dirs:
        return None
    try:
        names = {e.name for e in os.scandir(work_dir) if e.name.endswith(".log") and e.is_file()}
    except OSError:
        return None
    # mmcv 1.x: `<ts>.log` beside `<ts>.log.json` (released logs share a name), else the newest text log
    paired = sorted(n for n in names if (work_dir / f"{n}.json").is_file())
    if paired:
        return work_dir / paired[-1], "mmcv1"
    found = textlog.find(work_dir) if names else []
    return (found[-1], "mmcv1") if found else None


def read_progress(work_dir: Path | str) -> Progress | None:
    """Where the newest text log of a work dir stands: iteration, total, epoch, ETA, phase.

    Cheap enough to poll every second: a directory listing and a tail read of 32 KB (more only while a long
    validation hides the last train line), plus the small dumped config for max_epochs. A validation- or test-only
    log gives that loop's progress. None when there is no text log with a progress line.
    """
    work_dir = Path(work_dir)
    return _progress(work_dir, _mmengine_dirs(work_dir))


def _progress(work_dir: Path, dirs: list[Path]) -> Progress | None:
    found = _newest_text_log(work_dir, dirs)
    if found is None:
        return None
    path, fmt = found
    try:
        with open(path, "rb") as fh:
            stat = os.fstat(fh.fileno())
            window = _TAIL
            while True:
                fh.seek(max(0, stat.st_size - window))
                whole = window >= stat.st_size
                progress = _progress_from_tail(fh.read(window), whole=whole, final=whole or window >= _TAIL_MAX)
                if progress is not None or whole or window >= _TAIL_MAX:
                    break
                window <<= 2
    except OSError:
        return None
    if progress is None:
        return None
    progress.updated_at = stat.st_mtime
    if progress.iters_per_epoch:
        progress.max_epochs = _max_epochs(path, fmt)
        progress.total = progress.max_epochs * progress.iters_per_epoch if progress.max_epochs else None
    return progress


def _progress_from_tail(tail: bytes, whole: bool, final: bool) -> Progress | None:
    """Progress from the newest train lines of a log tail; with `final`, an eval-only tail gives the eval's progress."""
    lines = tail.split(b"\n")[:-1]  # the last one is empty, or partial (being written, or cut off)
    if not whole:
        lines = lines[1:]  # the first one is cut
    phase = None
    newest_eval = None
    found: list[tuple[int | None, int, int, bytes]] = []  # (epoch, cur, len, line) of train lines, newest first
    for line in reversed(lines):
        if b"[" not in line:
            continue
        match = _PROGRESS_LINE.search(line)
        if match is None:
            continue
        line_phase = (match["phase"] or b"train").decode()
        if line_phase == "train" and match["len"] is None:
            continue
        if phase is None:
            phase = line_phase
        if line_phase != "train":
            if newest_eval is None and match["len"] is not None:
                newest_eval = match
            continue
        epoch = int(match["epoch"]) if match["epoch"] else None
        found.append((epoch, int(match["cur"]), int(match["len"]), line))
        if len(found) == 2:
            break
    if not found:
        if final and newest_eval is not None:
            cur, length = int(newest_eval["cur"]), int(newest_eval["len"])
            return Progress(iter=cur, total=length, phase=phase or "test", interval=1)
        return None
    epoch, cur, length, line = found[0]
    eta = _ETA.search(line)
    eta_s = None
    if eta:
        days, h, m, s = eta.groups()
        eta_s = float(int(days or 0) * 86400 + int(h) * 3600 + int(m) * 60 + int(s))
    interval = None
    if len(found) == 2 and found[1][0] == epoch and found[1][1] < cur:
        interval = cur - found[1][1]
    if epoch is None:
        return Progress(iter=cur, total=length, eta_s=eta_s, phase=phase or "train", interval=interval)
    # epoch-based: the total needs max_epochs, which _progress reads from the config
    return Progress(iter=(epoch - 1) * length + cur, total=None, epoch=epoch, eta_s=eta_s, phase=phase or "train",
                    interval=interval, iters_per_epoch=length)


def _max_epochs(text_log: Path, fmt: str) -> int | None:
    """max_epochs from the dumped config (mmengine: vis_data/config.py) or else from the text log's head."""
    candidates = [text_log.parent / "vis_data" / "config.py"] if fmt == "mmengine" else []
    if candidates:
        # the loop's own length first: a config's top-level `max_epochs` variable can outlive an override
        try:
            with open(candidates[0], "rb") as fh:
                loop = _TRAIN_LOOP_EPOCHS.search(fh.read(_HEAD_MAX))
            if loop:
                return int(loop.group(1))
        except OSError:
            pass
    candidates.append(text_log)
    for path in candidates:
        try:
            with open(path, "rb") as fh:
                read = 0
                while read < _HEAD_MAX:
                    chunk = fh.read(1 << 16)
                    if not chunk:
                        break
                    read += len(chunk)
                    for key in (b"max_epochs", b"total_epochs"):
                        pos = chunk.find(key)
                        match = _LENGTH_VALUE.match(chunk, pos + len(key)) if pos >= 0 else None
                        if match:
                            return int(match.group(1))
        except OSError:
            continue
    return None


# ---------------------------------------------------------------------------------------------- entry point


def detect_format(work_dir: Path | str) -> str:
    """'mmengine' (timestamp dirs), 'mmcv1' (`*.log.json` files), the generation of its newest text log when it has
    only text logs (`*.log`), or 'none'."""
    work_dir = Path(work_dir)
    if _mmengine_dirs(work_dir):
        return "mmengine"
    if _mmcv1_files(work_dir):
        return "mmcv1"
    texts = textlog.find(work_dir)
    return textlog.generation(textlog.read_head(texts[-1])) if texts else "none"


def read_work_dir(path: Path | str, *, train: bool = True) -> RunLog:
    """Everything the logs of one work dir say: training history, validations, test metrics, progress, problems.

    Works on any MMEngine or MMCV 1.x work dir, not only swinctl's, from its JSON logs or else its text logs. With
    ``train=False`` the training lines are not parsed (``RunLog.train`` stays empty), which is what a report over many
    runs wants: validations and progress only.
    Never raises; an unreadable or empty work dir gives the flag :data:`NO_LOGS`.
    """
    work_dir = Path(path)
    dirs = _mmengine_dirs(work_dir)
    files = [] if dirs else _mmcv1_files(work_dir)
    texts = [] if dirs or files else textlog.find(work_dir)
    fmt = "mmengine" if dirs else "mmcv1" if files else "none"
    log = RunLog(work_dir=work_dir, format=fmt)
    progress = _progress(work_dir, dirs) if dirs or files or texts else None
    ipe = progress.iters_per_epoch if progress else None
    if fmt == "mmengine":
        _read_mmengine(log, dirs, train, ipe)
    elif fmt == "mmcv1":
        _read_mmcv1(log, files, train, ipe)
    elif texts:
        segments: list[_Segment] = []
        log.format = _read_text(log, texts, train, ipe, segments) or "none"
        _merge(log, segments)
    if not log.files and progress is None:
        where = "does not exist" if not work_dir.is_dir() else "has no MMEngine (<timestamp>/vis_data/scalars.json), " \
                                                               "MMCV 1.x (<timestamp>.log.json) or text (*.log) logs"
        log.note(NO_LOGS, f"work dir {work_dir} {where}")
        return log
    log.progress = progress or log.progress  # the text log knows totals and ETA; else the last train line
    _judge(log)
    return log


def _judge(log: RunLog) -> None:
    p = log.progress
    if log.diverged:
        names = ", ".join(dict.fromkeys(log.diverged))
        log.note(DIVERGED, f"the last validation logged {names} as NaN or Infinity: training diverged (lower the "
                           "learning rate, clip gradients, or check the data)")
    if not log.val and not log.test_metrics:
        if log.empty_vals:
            n = log.empty_vals
            log.note(NO_METRICS, f"{n} validation{'s' if n > 1 else ''} logged no metric: the evaluator returned "
                                 "nothing (COCO: 'the testing results of the whole dataset is empty', i.e. nothing "
                                 "was detected)")
        elif p is not None and p.phase == "train":
            log.note(NO_METRICS, f"no validation or test metrics yet (last train iteration {p.iter})")
        elif log.has_train:
            log.note(NO_METRICS, "no validation or test metrics yet")
        else:
            log.note(NO_METRICS, "no training, validation or test results in the logs")
    if log.val and not log.has_train:  # (a test run has test metrics and no train lines by nature)
        log.note(NO_TRAIN, "validation metrics but no training lines (a validation-only run, or the train log is "
                           "missing): the iteration they belong to is unknown")
    if p is not None and p.total and not p.done and not log.test_metrics:
        log.note(INCOMPLETE, f"the logs stop at iteration {p.iter} of {p.total}" +
                 (f" (epoch {p.epoch} of {p.max_epochs})" if p.epoch and p.max_epochs else ""))
