"""Work dirs that kept only text logs (tests/fixtures/logs/text: real logs copied from public repositories, see the
README there). Every expected number below is read off the fixture files; the JSON formats' tests are in
test_results.py, and the text and JSON readings of one run are compared at the end."""

import shutil
from pathlib import Path

import pytest

from swinctl import results, textlog
from swinctl.results import DIVERGED, INCOMPLETE, NO_LOGS, NO_METRICS, TRUNCATED, UNREADABLE

LOGS = Path(__file__).parent / "fixtures" / "logs"
TEXT = LOGS / "text"
MMDET2, MMSEG0 = TEXT / "maskrcnn_balloon_mmdet2", TEXT / "pspnet_glomeruli_mmseg0"
MMSEG1, MMDET3 = TEXT / "pspnet_glomeruli_mmseg1", TEXT / "rtmdet_drink_mmdet3"


def vals(log, metric):
    return [(v.iter, v.epoch, v.metrics.get(metric)) for v in log.val]


# ---------------------------------------------------------------------------------------------- mmcv 1.x text


def test_mmdet2_epoch_based_text_log():
    """10 epochs of 31 iterations, logged every 10: `Epoch(val) [e][13]` closes each epoch."""
    log = results.read_work_dir(MMDET2)
    assert log.format == "mmcv1" and log.flags == set() and log.problems == []
    assert log.files == [MMDET2 / "20230208_162410.log"]
    assert vals(log, "bbox_mAP") == [(31, 1, 6.73), (62, 2, 54.52), (93, 3, 59.09), (124, 4, 70.79), (155, 5, 72.52),
                                     (186, 6, 73.08), (217, 7, 72.65), (248, 8, 74.61), (279, 9, 73.74),
                                     (310, 10, 77.73)]
    assert vals(log, "segm_mAP") == [(31, 1, 8.2), (62, 2, 66.94), (93, 3, 71.91), (124, 4, 77.28), (155, 5, 78.11),
                                     (186, 6, 78.91), (217, 7, 78.61), (248, 8, 78.84), (279, 9, 79.19),
                                     (310, 10, 79.57)]
    # every COCO metric in percent; bbox_mAP_copypaste / segm_mAP_copypaste are not metrics; 0.0000 stays 0.0
    assert log.val[0].metrics["bbox_mAP_s"] == 0.0
    assert log.final_metrics() == {
        "bbox_mAP": 77.73, "bbox_mAP_50": 89.19, "bbox_mAP_75": 89.19, "bbox_mAP_s": 45.45, "bbox_mAP_m": 65.58,
        "bbox_mAP_l": 84.24, "segm_mAP": 79.57, "segm_mAP_50": 89.19, "segm_mAP_75": 87.72, "segm_mAP_s": 40.4,
        "segm_mAP_m": 64.2, "segm_mAP_l": 86.13}
    assert log.best_point("bbox_mAP").epoch == 10 and log.best_metrics("segm_mAP")["segm_mAP"] == 79.57
    # `Epoch [e][i/31]`: the global iteration is (e - 1) * 31 + i
    assert [(p.iter, p.epoch) for p in log.train[:6]] == [(10, 1), (20, 1), (30, 1), (41, 2), (51, 2), (61, 2)]
    assert len(log.train) == 30 and (log.train[-1].iter, log.train[-1].epoch) == (309, 10)
    first = log.train[0]
    assert (first.loss, first.lr, first.time) == (7.0255, 4.746e-05, 0.695)
    p = log.progress
    assert (p.iter, p.total, p.epoch, p.max_epochs, p.iters_per_epoch, p.eta_s, p.phase) == (309, 310, 10, 10, 31,
                                                                                            0.0, "val")
    assert p.interval == 10 and p.done


def test_mmseg0_iteration_based_text_log_scales_fractions():
    """2000 iterations logged every 50, `Iter(val) [515]` every 200 (515 is the validation set's size)."""
    log = results.read_work_dir(MMSEG0)
    assert log.format == "mmcv1" and log.flags == set()
    assert [(v.iter, v.epoch, v.metrics) for v in log.val] == [
        (200, None, {"aAcc": 98.1, "mIoU": 49.05, "mAcc": 50.0}),
        (400, None, {"aAcc": 98.16, "mIoU": 50.6, "mAcc": 51.52}),
        (600, None, {"aAcc": 99.02, "mIoU": 74.08, "mAcc": 74.98}),
        (800, None, {"aAcc": 99.41, "mIoU": 86.02, "mAcc": 91.28}),
        (1000, None, {"aAcc": 99.47, "mIoU": 86.84, "mAcc": 90.19}),
        (1200, None, {"aAcc": 99.52, "mIoU": 88.51, "mAcc": 93.0}),
        (1400, None, {"aAcc": 99.53, "mIoU": 89.27, "mAcc": 96.28}),
        (1600, None, {"aAcc": 99.55, "mIoU": 88.54, "mAcc": 91.12}),
        (1800, None, {"aAcc": 99.6, "mIoU": 90.28, "mAcc": 94.57}),
        (2000, None, {"aAcc": 99.6, "mIoU": 90.32, "mAcc": 94.91}),
    ]  # IoU.background, Acc.glomeruli... are per-class, not canonical metrics
    assert [p.iter for p in log.train] == list(range(50, 2001, 50))
    assert all(p.epoch is None for p in log.train) and log.train[-1].loss == 0.0157
    p = log.progress
    assert (p.iter, p.total, p.epoch, p.eta_s, p.phase, p.interval) == (2000, 2000, None, 0.0, "val", 50) and p.done


# ---------------------------------------------------------------------------------------------- MMEngine text


def test_mmengine_segmentation_text_log_is_already_percent():
    """MMSeg 1.x prints percent (`mIoU: 68.0100`); the `Iter(val) [100/515]  eta: ...` progress lines of the
    validation loop are not validations."""
    log = results.read_work_dir(MMSEG1)
    assert log.format == "mmengine" and log.flags == set()
    assert [(v.iter, v.epoch, v.metrics) for v in log.val] == [
        (400, None, {"aAcc": 98.8, "mIoU": 68.01, "mAcc": 68.77}),
        (800, None, {"aAcc": 99.44, "mIoU": 87.39, "mAcc": 94.77}),
    ]
    assert [p.iter for p in log.train] == [100, 200, 300, 400, 500, 600, 700, 800]
    assert (log.train[0].loss, log.train[0].lr) == (0.046, 9.9779e-03)
    p = log.progress
    assert (p.iter, p.total, p.phase, p.interval) == (800, 800, "val", 100) and p.done


def test_mmengine_detection_text_log_scales_coco_fractions():
    """40 epochs of 23 iterations, validated every 10 epochs; COCO's -1 (no small or medium objects) is dropped, and
    `The best checkpoint with 0.9310 coco/bbox_mAP ...` is a message, not a validation."""
    log = results.read_work_dir(MMDET3)
    assert log.format == "mmengine" and log.flags == set()
    assert vals(log, "bbox_mAP") == [(230, 10, 59.0), (460, 20, 90.6), (690, 30, 92.0), (920, 40, 93.1)]
    assert log.final_metrics() == {"bbox_mAP": 93.1, "bbox_mAP_50": 99.3, "bbox_mAP_75": 99.3, "bbox_mAP_l": 93.1}
    assert results.task_metrics(set(log.final_metrics())) == ("bbox_mAP",)
    assert len(log.train) == 160 and [(p.iter, p.epoch) for p in log.train[:5]] == [(5, 1), (10, 1), (15, 1),
                                                                                     (20, 1), (28, 2)]
    assert (log.train[-1].iter, log.train[-1].loss) == (39 * 23 + 20, 0.3009)
    p = log.progress
    assert (p.iter, p.total, p.epoch, p.max_epochs, p.iters_per_epoch, p.eta_s, p.phase) == (917, 920, 40, 40, 23,
                                                                                            10.0, "val")
    assert p.interval == 5 and p.done


def test_mmengine_text_log_in_its_timestamp_dir(tmp_path):
    """Where MMEngine writes it (`<ts>/<ts>.log`) when `vis_data/scalars.json` is gone."""
    ts = tmp_path / "20230609_075749"
    ts.mkdir()
    shutil.copy(MMDET3 / "20230609_075749.log", ts)
    assert results.detect_format(tmp_path) == "mmengine"
    log = results.read_work_dir(tmp_path)
    assert log.format == "mmengine" and log.flags == set()
    assert vals(log, "bbox_mAP") == [(230, 10, 59.0), (460, 20, 90.6), (690, 30, 92.0), (920, 40, 93.1)]
    assert (log.progress.iter, log.progress.total) == (917, 920)


# ---------------------------------------------------------------------------------------------- damage


def test_truncated_text_log():
    """Cut in the middle of the epoch-6 validation (`... bbox_mAP: 0.73`): that line is not read as 73.0."""
    log = results.read_work_dir(TEXT / "maskrcnn_balloon_truncated")
    assert log.flags == {TRUNCATED, INCOMPLETE}
    assert log.problems == ["20230208_162410.log: partial last line ignored (the file was cut off while being written)",
                            "the logs stop at iteration 185 of 310 (epoch 6 of 10)"]
    assert vals(log, "bbox_mAP") == [(31, 1, 6.73), (62, 2, 54.52), (93, 3, 59.09), (124, 4, 70.79), (155, 5, 72.52)]
    p = log.progress
    assert (p.iter, p.epoch, p.phase, p.eta_s) == (5 * 31 + 30, 6, "train", 63.0) and not p.done


def test_a_nan_in_the_last_text_validation_is_divergence(tmp_path):
    text = (MMSEG0 / "20230213_165119.log").read_bytes()  # written on Windows: CRLF, and GBK in a path
    last = b"aAcc: 0.9960, mIoU: 0.9032, mAcc: 0.9491"
    assert text.count(last) == 1
    head, _, tail = text.rpartition(last)
    (tmp_path / "20230213_165119.log").write_bytes(head + b"aAcc: nan, mIoU: nan, mAcc: nan" + tail)
    log = results.read_work_dir(tmp_path)
    assert DIVERGED in log.flags and log.diverged == ["aAcc", "mIoU", "mAcc"]
    assert log.val[-1].metrics["mIoU"] == 90.28  # the last finite validation


def test_binary_garbage_named_like_a_text_log_is_unreadable(tmp_path):
    (tmp_path / "20240101_000000.log").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)) * 8)
    log = results.read_work_dir(tmp_path)
    assert UNREADABLE in log.flags and NO_METRICS in log.flags and log.val == []


# ---------------------------------------------------------------------------------------------- finding them


def test_which_logs_a_work_dir_is_read_from(tmp_path):
    assert results.detect_format(MMDET2) == "mmcv1" and results.detect_format(MMSEG0) == "mmcv1"
    assert results.detect_format(MMSEG1) == "mmengine" and results.detect_format(MMDET3) == "mmengine"
    # a released log is named after its config: read when an OpenMMLab logger wrote it, not any `*.log`
    (tmp_path / "notes.log").write_text("started the run on node 7\n")
    assert results.detect_format(tmp_path) == "none"
    assert results.read_work_dir(tmp_path).flags == {NO_LOGS}
    shutil.copy(MMDET2 / "20230208_162410.log", tmp_path / "mask_rcnn_r50_fpn_balloon.log")
    assert results.detect_format(tmp_path) == "mmcv1"
    assert textlog.find(tmp_path) == [tmp_path / "mask_rcnn_r50_fpn_balloon.log"]
    log = results.read_work_dir(tmp_path)
    assert vals(log, "bbox_mAP")[-1] == (310, 10, 77.73) and log.progress.total == 310
    assert results.read_progress(tmp_path).iter == 309


@pytest.mark.parametrize(("fixture", "generation", "last_miou"), [(MMSEG0, "mmcv1", 90.32),
                                                                   (MMSEG1, "mmengine", 87.39)])
def test_a_log_without_logger_prefixes_is_told_by_its_loop_lines(fixture, generation, last_miou, tmp_path):
    """Lines kept with `sed 's/.* - INFO - //'`: MMEngine's loops print `(train)` and `[i/len]` validations."""
    [source] = fixture.glob("*.log")
    lines = source.read_bytes().splitlines(keepends=True)
    (tmp_path / source.name).write_bytes(b"".join(line.partition(b" - INFO - ")[2] or line for line in lines))
    assert b" - INFO - " not in (tmp_path / source.name).read_bytes()
    assert results.detect_format(tmp_path) == generation
    assert results.read_work_dir(tmp_path).val[-1].metrics["mIoU"] == last_miou


def test_a_json_log_beside_a_text_log_is_the_one_read(tmp_path):
    """mmcv 1.x: `<ts>.log.json` wins over `<ts>.log`; MMEngine: `vis_data/scalars.json` over `<ts>/<ts>.log`. (The
    text logs here are real logs of other runs, so reading them would show other numbers.)"""
    mmcv1 = tmp_path / "mmcv1"
    mmcv1.mkdir()
    shutil.copy(MMDET2 / "20230208_162410.log", mmcv1)
    shutil.copy(LOGS / "mmcv1" / "maskrcnn_1x" / "20210425_120000.log.json", mmcv1 / "20230208_162410.log.json")
    log = results.read_work_dir(mmcv1)
    assert [v.metrics["bbox_mAP"] for v in log.val] == [28.3, 35.6, 42.6]
    mmengine = tmp_path / "mmengine"
    shutil.copytree(LOGS / "mmengine" / "det_epoch", mmengine)
    [text_log] = mmengine.glob("*/2*.log")
    shutil.copy(MMDET3 / "20230609_075749.log", text_log)
    log = results.read_work_dir(mmengine)
    assert [v.metrics["bbox_mAP"] for v in log.val] == [60.7, 67.2, 68.3]


@pytest.mark.parametrize("fixture", ["mmengine/det_epoch", "mmengine/det_resumed", "mmengine/det_test",
                                     "mmengine/det_no_val", "mmengine/seg_iter", "mmcv1/maskrcnn_1x", "mmcv1/no_val",
                                     "swinctl_smoke/maskrcnn-swin-t/work_dir", "swinctl_smoke/upernet-swin-t/work_dir"])
def test_the_text_log_alone_says_what_the_json_log_says(fixture, tmp_path):
    """Work dirs with both logs (their numbers are asserted in test_results.py), read again without the JSON."""
    work = tmp_path / "work"
    shutil.copytree(LOGS / fixture, work)
    json_logs = [*work.glob("*/vis_data/*.json"), *work.glob("*/2*.json"), *work.glob("*.log.json")]
    assert json_logs
    for path in json_logs:
        path.unlink()
    both, text = results.read_work_dir(LOGS / fixture), results.read_work_dir(work)
    assert text.files and all(path.suffix == ".log" for path in text.files)
    assert [(v.iter, v.epoch, v.metrics) for v in text.val] == [(v.iter, v.epoch, v.metrics) for v in both.val]
    assert [(p.iter, p.epoch) for p in text.train] == [(p.iter, p.epoch) for p in both.train]
    assert (text.test_metrics, text.flags, text.empty_vals, text.format) == (both.test_metrics, both.flags,
                                                                             both.empty_vals, both.format)


def test_text_items_keep_their_commas_and_spaces():
    """mmcv 1.x separates items with ', ' but prints `eta: 1 day, 2:03:04`; MMEngine separates them with two spaces."""
    mmcv1 = (b"2021-04-25 12:00:00,000 - mmdet - INFO - Epoch [2][50/7330]\tlr: 1.000e-04, eta: 1 day, 2:03:04, "
             b"time: 0.840, loss: 2.6597\n"
             b"2021-04-25 12:30:00,000 - mmdet - INFO - Epoch(val) [2][625]\tbbox_mAP: 0.4590, "
             b"bbox_mAP_copypaste: 0.459 0.650 0.500 0.300 0.500 0.600\n")
    converted = textlog.to_records(mmcv1)
    assert converted.generation == "mmcv1" and not converted.cut
    header, train, val = converted.records.decode().splitlines()
    assert train == '{"mode": "train", "epoch": 2, "iter": 50, "lr": 0.0001, "time": 0.84, "loss": 2.6597}'
    assert val == '{"mode": "val", "epoch": 2, "iter": 625, "bbox_mAP": 0.459}'
    mmengine = (b"2024/01/01 00:00:00 - mmengine - INFO - Epoch(train)  [2][ 50/7330]  base_lr: 1.0000e-04 "
                b"lr: 1.0000e-04  eta: 1 day, 2:03:04  time: 0.5000  loss: 3.0000\n"
                b"2024/01/01 00:10:00 - mmengine - INFO - Epoch(test) [625/625]    coco/bbox_mAP: 0.4290\n")
    converted = textlog.to_records(mmengine)
    assert converted.generation == "mmengine" and converted.test == {"coco/bbox_mAP": 0.429}
    assert converted.records == (b'{"base_lr": 0.0001, "lr": 0.0001, "time": 0.5, "loss": 3.0, "epoch": 2, '
                                 b'"iter": 7380, "step": 7380}\n')
