"""swinctl.results on real MMEngine logs (tests/fixtures/logs/mmengine, written by mmengine 0.10.7 with MMDet's
CocoMetric and MMSeg's IoUMetric) and MMCV 1.x logs built to TextLoggerHook's format (tests/fixtures/logs/mmcv1)."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from swinctl import results
from swinctl.results import INCOMPLETE, NO_LOGS, NO_METRICS, NO_TRAIN, TRUNCATED

LOGS = Path(__file__).parent / "fixtures" / "logs"
MMENGINE, MMCV1 = LOGS / "mmengine", LOGS / "mmcv1"


def vals(log, metric):
    return [(v.iter, v.epoch, v.metrics.get(metric)) for v in log.val]


# ---------------------------------------------------------------------------------------------- mmengine


def test_mmengine_epoch_based_detection():
    log = results.read_work_dir(MMENGINE / "det_epoch")
    assert log.format == "mmengine"
    assert log.flags == set() and log.problems == []
    # 7 iterations per epoch logged every 2: the 7th is not logged (ignore_last)
    assert [(p.iter, p.epoch) for p in log.train] == [(2, 1), (4, 1), (6, 1), (9, 2), (11, 2), (13, 2), (16, 3),
                                                        (18, 3), (20, 3)]
    assert log.train[0].loss == pytest.approx(11.544631004333496) and log.train[0].lr == pytest.approx(0.026)
    # validation lines carry step = epoch; the iteration is the end of that epoch
    assert vals(log, "bbox_mAP") == [(7, 1, 60.7), (14, 2, 67.2), (21, 3, 68.3)]
    assert vals(log, "segm_mAP") == [(7, 1, 56.9), (14, 2, 61.6), (21, 3, 64.5)]
    # COCO fractions become percent; COCOeval's -1 (no medium/large objects) is dropped
    assert log.val[2].metrics == {"bbox_mAP": 68.3, "bbox_mAP_50": 100.0, "bbox_mAP_75": 94.6, "bbox_mAP_s": 68.3,
                                  "segm_mAP": 64.5, "segm_mAP_50": 100.0, "segm_mAP_75": 76.7, "segm_mAP_s": 64.5}
    assert log.final_metrics() == log.last_metrics() == log.val[2].metrics
    assert log.best_metrics("segm_mAP")["segm_mAP"] == 64.5
    p = log.progress
    assert (p.iter, p.total, p.epoch, p.max_epochs, p.iters_per_epoch, p.phase) == (20, 21, 3, 3, 7, "val")
    assert p.done and p.interval == 2 and p.eta_s == 0.0


def test_train_false_skips_the_history_only():
    full = results.read_work_dir(MMENGINE / "det_epoch")
    quick = results.read_work_dir(MMENGINE / "det_epoch", train=False)
    assert quick.train == [] and quick.has_train
    assert quick.val == full.val and quick.progress.iter == full.progress.iter


def test_resumed_run_merges_into_one_history():
    """Killed at iteration 11 (epoch 2), resumed from epoch_1.pth in a second timestamp dir that re-logs 9 and 11."""
    log = results.read_work_dir(MMENGINE / "det_resumed")
    assert len(log.files) == 2
    assert [p.iter for p in log.train] == [2, 4, 6, 9, 11, 13, 16, 18, 20]
    assert vals(log, "bbox_mAP") == [(7, 1, 60.7), (14, 2, 67.2), (21, 3, 68.3)]
    assert log.flags == set()


def test_restarted_run_later_dir_wins(tmp_path):
    work = tmp_path / "work"
    shutil.copytree(MMENGINE / "det_no_val", work)  # an abandoned first attempt...
    source = next(p for p in (MMENGINE / "det_epoch").iterdir() if p.is_dir())
    later = work / "29991231_235959"  # ...then a full run from scratch in the same work dir
    shutil.copytree(source, later)
    for path in later.rglob(f"*{source.name}*"):
        path.rename(path.with_name(path.name.replace(source.name, later.name)))
    log = results.read_work_dir(work)
    assert [p.iter for p in log.train] == [2, 4, 6, 9, 11, 13, 16, 18, 20]
    assert vals(log, "bbox_mAP") == [(7, 1, 60.7), (14, 2, 67.2), (21, 3, 68.3)]
    assert log.flags == set()


def test_mmengine_test_run():
    log = results.read_work_dir(MMENGINE / "det_test")
    assert log.test_metrics == {"bbox_mAP": 68.3, "bbox_mAP_50": 100.0, "bbox_mAP_75": 94.6, "bbox_mAP_s": 68.3,
                                "segm_mAP": 64.5, "segm_mAP_50": 100.0, "segm_mAP_75": 76.7, "segm_mAP_s": 64.5}
    assert log.final_metrics() == log.test_metrics == log.best_metrics("bbox_mAP")
    assert log.val == [] and not log.has_train
    assert log.flags == set()  # a test run has no train lines by nature
    assert log.progress.phase == "test" and (log.progress.iter, log.progress.total) == (4, 4)
    raw = next((MMENGINE / "det_test").glob("*/2*.json")).read_bytes()
    assert not raw.endswith(b"\n")  # what mmengine writes: one JSON object, no newline


def test_a_test_time_augmentation_result_reads_as_its_ms_flip_metric():
    # what `swinctl test --tta` makes IoUMetric log (test_evaluator.prefix=ms_flip), in both generations' scales
    raw = {"ms_flip/aAcc": 91.5, "ms_flip/mIoU": 45.79, "ms_flip/mAcc": 57.0, "data_time": 0.1}
    assert results.normalise_metrics(raw, "mmengine") == {"aAcc_ms_flip": 91.5, "mIoU_ms_flip": 45.79,
                                                          "mAcc_ms_flip": 57.0}
    assert results.normalise_metrics({"ms_flip/mIoU": 0.4579}, "mmcv1") == {"mIoU_ms_flip": 45.79}
    assert results.normalise_metrics({"ms_flip/bbox_mAP": 0.4}, "mmengine") == {}  # segmentation only
    assert results.task_metrics({"mIoU_ms_flip", "aAcc_ms_flip"}) == ("mIoU_ms_flip",)


def test_mmengine_iteration_based_segmentation_is_already_percent():
    log = results.read_work_dir(MMENGINE / "seg_iter")
    assert [p.iter for p in log.train] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert all(p.epoch is None for p in log.train)
    assert [v.metrics for v in log.val] == [{"aAcc": 89.62, "mIoU": 81.19, "mAcc": 89.62},
                                            {"aAcc": 92.24, "mIoU": 85.6, "mAcc": 92.24}]
    assert [(v.iter, v.epoch) for v in log.val] == [(20, None), (40, None)]
    p = log.progress
    assert (p.iter, p.total, p.epoch, p.phase, p.interval) == (40, 40, None, "val", 5) and p.done


def test_mmengine_no_validation_yet():
    log = results.read_work_dir(MMENGINE / "det_no_val")
    assert log.flags == {NO_METRICS, INCOMPLETE}
    assert log.problems == ["no validation or test metrics yet (last train iteration 4)",
                            "the logs stop at iteration 4 of 21 (epoch 1 of 3)"]
    assert log.final_metrics() == {} and log.best_metrics("bbox_mAP") == {}
    assert (log.progress.iter, log.progress.total) == (4, 21)


def test_mmengine_validation_without_training():
    log = results.read_work_dir(MMENGINE / "seg_val_only")
    assert log.flags == {NO_TRAIN}
    assert [(v.iter, v.epoch, v.metrics["mIoU"]) for v in log.val] == [(None, None, 85.6)]
    assert log.final_metrics()["mIoU"] == 85.6


def test_mmengine_truncated_scalars():
    log = results.read_work_dir(MMENGINE / "det_truncated")
    assert log.flags == {TRUNCATED}
    assert log.problems == ["scalars.json: partial last line ignored (the file was cut off while being written)"]
    assert vals(log, "bbox_mAP") == [(7, 1, 60.7), (14, 2, 67.2)]
    assert log.final_metrics()["bbox_mAP"] == 67.2


def test_damaged_lines_and_unknown_keys(tmp_path):
    ts = tmp_path / "20240101_000000"
    (ts / "vis_data").mkdir(parents=True)
    lines = [
        {"lr": 1e-4, "loss": 2.0, "time": 0.5, "epoch": 1, "iter": 50, "step": 50, "my_custom_key": [1, 2]},
        None,  # a block of NUL bytes, as a node crash leaves behind
        {"lr": 1e-4, "loss": 1.5, "time": 0.5, "epoch": 1, "iter": 100, "step": 100},
        {"coco/bbox_mAP": 0.401, "coco/bbox_mAP_copypaste": "0.401 -1", "coco/person_precision": 0.5, "step": 1},
    ]
    text = b"\n".join(b"\0" * 40 if d is None else json.dumps(d).encode() for d in lines) + b"\n"
    (ts / "vis_data" / "scalars.json").write_bytes(text)
    log = results.read_work_dir(tmp_path)
    assert [p.iter for p in log.train] == [50, 100]
    assert [(v.iter, v.epoch, v.metrics) for v in log.val] == [(100, 1, {"bbox_mAP": 40.1})]
    assert log.flags == {TRUNCATED}
    assert log.problems == ["scalars.json: skipped 1 line that is not JSON (damaged or cut off)"]


def test_text_log_only(tmp_path):
    """A run that crashed before its first scalars: only the text log."""
    ts = tmp_path / "20240101_000000"
    ts.mkdir()
    (ts / "20240101_000000.log").write_text(
        "2024/01/01 00:00:00 - mmengine - INFO - Iter(train) [  50/160000]  lr: 1.0e-06  eta: 1 day, 2:03:04  "
        "time: 0.5000  data_time: 0.0100  memory: 9000  loss: 3.0\n")
    log = results.read_work_dir(tmp_path)
    assert log.format == "mmengine" and log.flags == {NO_METRICS, INCOMPLETE}
    p = log.progress
    assert (p.iter, p.total, p.eta_s, p.phase) == (50, 160000, 93784.0, "train")
    assert p.fraction == pytest.approx(50 / 160000) and not p.done


def test_no_logs_never_raises(tmp_path):
    for path in (tmp_path / "missing", tmp_path):
        log = results.read_work_dir(path)
        assert log.format == "none" and log.flags == {NO_LOGS}
        assert log.final_metrics() == {} and log.progress is None
        assert results.read_progress(path) is None
    assert "does not exist" in results.read_work_dir(tmp_path / "missing").problems[0]


def test_truncated_test_json(tmp_path):
    ts = tmp_path / "20240101_000000"
    ts.mkdir()
    (ts / "20240101_000000.json").write_text('{"coco/bbox_mAP": 0.4')
    log = results.read_work_dir(tmp_path)
    assert log.test_metrics == {} and TRUNCATED in log.flags and NO_METRICS in log.flags


# ---------------------------------------------------------------------------------------------- mmcv 1.x


def test_mmcv1_epoch_based_detection():
    log = results.read_work_dir(MMCV1 / "maskrcnn_1x")
    assert log.format == "mmcv1" and log.flags == set() and log.problems == []
    # train lines count inside the epoch; the text log says 120 iterations per epoch
    assert [(p.iter, p.epoch) for p in log.train] == [(50, 1), (100, 1), (170, 2), (220, 2), (290, 3), (340, 3)]
    # val lines carry iter=625 (the val loop's length): the iteration is the end of their epoch
    assert vals(log, "bbox_mAP") == [(120, 1, 28.3), (240, 2, 35.6), (360, 3, 42.6)]
    assert vals(log, "segm_mAP") == [(120, 1, 26.2), (240, 2, 33.1), (360, 3, 39.5)]
    assert log.final_metrics() == {
        "bbox_mAP": 42.6, "bbox_mAP_50": 64.8, "bbox_mAP_75": 46.7, "bbox_mAP_s": 27.1, "bbox_mAP_m": 45.5,
        "bbox_mAP_l": 56.1, "segm_mAP": 39.5, "segm_mAP_50": 61.7, "segm_mAP_75": 42.4, "segm_mAP_s": 20.5,
        "segm_mAP_m": 42.1, "segm_mAP_l": 57.3}  # and no *_copypaste strings
    p = log.progress
    assert (p.iter, p.total, p.epoch, p.max_epochs, p.eta_s, p.phase, p.interval) == (340, 360, 3, 3, 15.0, "val", 50)
    assert p.done


def test_mmcv1_iteration_based_segmentation_scales_fractions():
    log = results.read_work_dir(MMCV1 / "upernet_iter")
    assert log.flags == set()
    # the val lines say iter=500 (the val loop); they belong to iterations 200 and 400
    assert [(v.iter, v.epoch, v.metrics) for v in log.val] == [
        (200, None, {"aAcc": 75.31, "mIoU": 30.12, "mAcc": 40.11}),
        (400, None, {"aAcc": 81.02, "mIoU": 44.51, "mAcc": 55.83}),
    ]  # per-class IoU.<name>/Acc.<name> are not canonical metrics
    assert [p.iter for p in log.train] == [50, 100, 150, 200, 250, 300, 350, 400]
    # no text log: the progress comes from the last train line and the header's config
    assert (log.progress.iter, log.progress.total) == (400, 400)


def test_mmcv1_truncated_without_text_log():
    log = results.read_work_dir(MMCV1 / "truncated")
    assert log.flags == {TRUNCATED, INCOMPLETE}
    assert log.problems[0] == "20210425_120000.log.json: partial last line ignored (the file was cut off while being " \
                              "written)"
    assert "iterations per epoch estimated" in log.problems[1]
    assert vals(log, "bbox_mAP") == [(100, 1, 28.3)]
    assert (log.progress.iter, log.progress.total, log.progress.epoch) == (200, 300, 2)


def test_mmcv1_no_validation():
    log = results.read_work_dir(MMCV1 / "no_val")
    assert log.flags == {NO_METRICS, INCOMPLETE}
    assert log.final_metrics() == {} and [p.iter for p in log.train] == [50, 100]
    assert (log.progress.iter, log.progress.total, log.progress.eta_s) == (100, 360, 218.0)


def test_mmcv1_validation_only():
    log = results.read_work_dir(MMCV1 / "val_only", train=False)
    assert log.flags == {NO_TRAIN}
    assert vals(log, "bbox_mAP") == [(None, 2, 35.6), (None, 3, 42.6)]
    assert log.best_metrics("bbox_mAP")["segm_mAP"] == 39.5


def test_released_log_names(tmp_path):
    """Released logs are named after the config, not a timestamp; the text log pairs with the .log.json."""
    for suffix in (".log", ".log.json"):
        shutil.copy(MMCV1 / "maskrcnn_1x" / f"20210425_120000{suffix}",
                    tmp_path / f"mask_rcnn_swin_tiny_patch4_window7_1x{suffix}")
    log = results.read_work_dir(tmp_path)
    assert vals(log, "bbox_mAP")[-1] == (360, 3, 42.6) and log.progress.total == 360


# ---------------------------------------------------------------------------------------------- units, progress


@pytest.mark.parametrize(("raw", "fmt", "expected"), [
    ({"coco/bbox_mAP": 0.427, "coco/segm_mAP_50": 0.645}, "mmengine", {"bbox_mAP": 42.7, "segm_mAP_50": 64.5}),
    ({"bbox_mAP": 0.427, "bbox_mAP_copypaste": "0.427 0.65"}, "mmcv1", {"bbox_mAP": 42.7}),
    ({"mIoU": 44.41, "aAcc": 81.2, "mAcc": 55.6}, "mmengine", {"mIoU": 44.41, "aAcc": 81.2, "mAcc": 55.6}),
    ({"mIoU": 0.4441, "aAcc": 0.812, "IoU.wall": 0.7}, "mmcv1", {"mIoU": 44.41, "aAcc": 81.2}),
    ({"val/coco/bbox_mAP": 0.5, "coco/bbox_mAP_m": -1.0, "mIoU": float("nan"), "loss": 1.0}, "mmengine",
     {"bbox_mAP": 50.0}),
    ({"mIoU": True, "bbox_mAP": None}, "mmengine", {}),
])
def test_normalise_metrics(raw, fmt, expected):
    assert results.normalise_metrics(raw, fmt) == expected


def test_read_progress_mmcv1_and_mmengine_text():
    p = results.read_progress(MMCV1 / "maskrcnn_1x")
    assert (p.iter, p.total, p.phase) == (340, 360, "val")
    p = results.read_progress(MMENGINE / "seg_iter")
    assert (p.iter, p.total) == (40, 40)
    assert results.read_progress(MMCV1 / "upernet_iter") is None  # no text log


def test_read_progress_through_a_long_validation(tmp_path):
    """The last train line is more than the first tail window away: the window grows until it is found."""
    ts = tmp_path / "20240101_000000"
    (ts / "vis_data").mkdir(parents=True)
    (ts / "vis_data" / "config.py").write_text("train_cfg = dict(max_epochs=12, type='EpochBasedTrainLoop')\n")
    head = "2024/01/01 00:00:00 - mmengine - INFO - "
    lines = [f"{head}Epoch(train)  [3][7300/7330]  base_lr: 1.0e-04 lr: 1.0e-04  eta: 10:00:00  time: 0.5",
             f"{head}Epoch(train)  [3][7250/7330]  base_lr: 1.0e-04 lr: 1.0e-04  eta: 10:00:30  time: 0.5"][::-1]
    lines += [f"{head}Epoch(val)  [3][{i:4d}/5000]    eta: 0:10:00  time: 0.1  data_time: 0.01 " + "x" * 300
              for i in range(50, 5001, 50)]
    (ts / "20240101_000000.log").write_text("\n".join(lines) + "\n")
    assert (ts / "20240101_000000.log").stat().st_size > 1 << 15
    p = results.read_progress(tmp_path)
    assert (p.iter, p.epoch, p.max_epochs, p.total, p.phase) == (2 * 7330 + 7300, 3, 12, 12 * 7330, "val")
    assert p.eta_s == 36000.0 and p.interval == 50


def test_progress_line_formats():
    tail = (b"x - mmengine - INFO - Epoch(train)  [1][ 50/7330]  lr: 1e-4  eta: 1 day, 2:03:04  time: 0.5\n"
            b"x - mmengine - INFO - Epoch(train)  [1][100/7330]  lr: 1e-4  eta: 2 days, 0:00:01  time: 0.5\n")
    p = results._progress_from_tail(tail, whole=True, final=True)
    assert (p.iter, p.epoch, p.iters_per_epoch, p.eta_s, p.interval) == (100, 1, 7330, 2 * 86400 + 1.0, 50)
    old = b"2021-04-25 12:00:00,000 - mmdet - INFO - Epoch(train) [2][50/7330]\tlr: 1.000e-04, eta: 1:00:00, x\n"
    p = results._progress_from_tail(old, whole=True, final=True)
    assert (p.iter, p.epoch, p.eta_s) == (7330 + 50, 2, 3600.0)


def test_results_module_stays_light():
    """The CLI imports this module for `status`: no torch, no OpenMMLab, no heavy libraries."""
    import subprocess

    code = ("import sys, swinctl.results; bad = [m for m in ('torch', 'mmengine', 'mmdet', 'mmseg', 'mmcv', 'numpy', "
            "'pandas', 'matplotlib', 'yaml', 'wandb') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------- swinctl's own smoke runs

SMOKE = LOGS / "swinctl_smoke"


def test_swinctl_smoke_maskrcnn_validated_nothing():
    """`swinctl run maskrcnn-swin-t --smoke`: 2 epochs x 8 iterations; the untrained model detects nothing, so
    CocoMetric logs 'The testing results of the whole dataset is empty' and the validation lines carry no metric."""
    log = results.read_work_dir(SMOKE / "maskrcnn-swin-t" / "work_dir")
    assert [(p.iter, p.epoch) for p in log.train] == [(2, 1), (4, 1), (6, 1), (8, 1), (10, 2), (12, 2), (14, 2),
                                                        (16, 2)]
    assert log.train[0].loss == pytest.approx(6.184242010116577)
    assert log.val == [] and log.empty_vals == 2 and log.final_metrics() == {}
    assert log.flags == {NO_METRICS}
    assert log.problems[0].startswith("2 validations logged no metric: the evaluator returned nothing")
    p = log.progress
    assert (p.iter, p.total, p.epoch, p.max_epochs, p.iters_per_epoch, p.phase) == (16, 16, 2, 2, 8, "val")
    assert p.done


def test_swinctl_smoke_upernet():
    log = results.read_work_dir(SMOKE / "upernet-swin-t" / "work_dir")
    assert [p.iter for p in log.train] == [5, 10, 15, 20]
    assert [(v.iter, v.epoch, v.metrics) for v in log.val] == [
        (10, None, {"aAcc": 0.09, "mIoU": 0.03, "mAcc": 0.38}),
        (20, None, {"aAcc": 0.36, "mIoU": 0.05, "mAcc": 1.48}),  # MMSeg 1.x percent, as logged: not scaled
    ]
    assert log.flags == set() and (log.progress.iter, log.progress.total) == (20, 20)
