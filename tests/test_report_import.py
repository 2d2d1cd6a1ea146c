"""`report --import DIR` finds the zoo config a work dir was trained from (its dumped config's name, its work dir's
name, or the `work_dir`/`exp_name` inside the config it logged) and judges it against that recipe's published
numbers; without one it still shows the task's metrics (box and mask mAP, PQ, mIoU)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from swinctl import results
from swinctl.report import build, recognize

LOGS = Path(__file__).parent / "fixtures" / "logs"
MASKRCNN = "mask-rcnn_swin-t-p4-w7_fpn_1x_coco"
UPERNET = "swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512"


def _copy(fixture: str, to: Path) -> Path:
    shutil.copytree(LOGS / fixture, to)
    return to


def _rows(*dirs: Path, tmp_path: Path):
    report = build.build_report(tmp_path / "no-runs", import_dirs=[str(d) for d in dirs])
    return {row.id: row for row in report.runs}


def test_the_dumped_configs_name_finds_the_recipe_and_its_published_numbers(tmp_path):
    work = _copy("mmengine/det_epoch", tmp_path / "job")
    (work / f"{MASKRCNN}.py").write_text("work_dir = './work_dirs/anything'\n")  # what MMEngine dumps
    assert recognize.recognize(work) == "maskrcnn-swin-t"
    [row] = _rows(work, tmp_path=tmp_path).values()
    assert row.recipe == "maskrcnn-swin-t"
    assert [r.metric for r in row.results] == ["bbox_mAP", "segm_mAP"]
    assert {ref.expected for r in row.results for ref in r.references} >= {42.6, 39.5}


def test_an_mmdet_2x_work_dir_name_matches_its_3x_config(tmp_path):
    work = _copy("mmcv1/maskrcnn_1x", tmp_path / "work_dirs" / "mask_rcnn_swin-t-p4-w7_fpn_1x_coco")
    [row] = _rows(work, tmp_path=tmp_path).values()
    assert row.recipe == "maskrcnn-swin-t" and row.verdict == "reproduced"  # 42.6 / 39.5 in the fixture log


def test_the_work_dir_inside_the_logged_config_is_read_when_nothing_else_names_it(tmp_path):
    work = _copy("mmengine/seg_iter", tmp_path / "run-7")
    for config in work.glob("*/vis_data/config.py"):
        config.write_text(config.read_text() + f"\nwork_dir = './work_dirs/{UPERNET}'\n")
    assert recognize.recognize(work) == "upernet-swin-t"
    [row] = _rows(work, tmp_path=tmp_path).values()
    assert row.recipe == "upernet-swin-t" and [r.metric for r in row.results] == ["mIoU"]


def test_an_mmcv1_header_names_its_experiment_and_mixed_precision_picks_the_fp16_recipe(tmp_path):
    work = _copy("mmcv1/maskrcnn_1x", tmp_path / "exp")
    [log] = work.glob("*.log.json")
    lines = log.read_text().splitlines()
    header = json.loads(lines[0])
    header["exp_name"] = "mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py"
    assert recognize.recognize(work) is None  # a name that says nothing, a header that names nothing yet
    log.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert recognize.recognize(work) == "maskrcnn-swin-t"
    header["config"] += "\nfp16 = dict(loss_scale=512.0)\n"
    log.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert recognize.recognize(work) == "maskrcnn-swin-t-fp16"


def test_an_unrecognised_instance_segmentation_log_still_shows_box_and_mask_map(tmp_path):
    work = _copy("mmcv1/maskrcnn_1x", tmp_path / "mystery")
    assert recognize.recognize(work) is None
    [row] = _rows(work, tmp_path=tmp_path).values()
    assert row.recipe is None and [r.metric for r in row.results] == ["bbox_mAP", "segm_mAP"]
    assert [r.value for r in row.results] == [42.6, 39.5]


@pytest.mark.parametrize("fmt", ["mmengine", "mmcv1"])
def test_panoptic_quality_is_read_in_percent_and_shown_for_panoptic_logs(fmt):
    logged = results.normalise_metrics({"coco_panoptic/PQ": 52.03, "coco_panoptic/PQ_th": 58.1, "SQ": 83.0}, fmt)
    assert logged == {"PQ": 52.03, "PQ_th": 58.1, "SQ": 83.0}
    assert results.task_metrics(set(logged)) == ("PQ",)
    assert results.task_metrics({"bbox_mAP", "segm_mAP"}) == ("bbox_mAP", "segm_mAP")
    assert results.task_metrics({"mIoU", "mAcc"}) == ("mIoU",)


def test_a_zoo_panoptic_work_dir_finds_its_recipe_and_is_judged_on_pq(tmp_path):
    # a real MMEngine log of a Mask2Former panoptic smoke run (iteration-based; PQ, box and mask mAP logged)
    work = _copy("mmengine/panoptic_iter", tmp_path / "job")
    (work / "mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco-panoptic.py").write_text("work_dir = './x'\n")
    assert recognize.recognize(work) == "mask2former-swin-t-lsj-50e-coco-panoptic"
    [row] = _rows(work, tmp_path=tmp_path).values()
    assert [r.metric for r in row.results] == ["bbox_mAP", "segm_mAP", "PQ"]  # all three in the metafile
    assert {ref.expected for r in row.results for ref in r.references} == {46.3, 43.4, 53.4}
    assert results.read_work_dir(work).final_metrics()["PQ"] == 0.0  # found although no box/mask marker is first


# ---------------------------------------------------------------------------------------------- text logs only

def test_report_import_reads_a_work_dir_that_kept_only_its_text_log(tmp_path, cli, runs_root):
    """An MMDet 2.x Mask R-CNN run (10 epochs, box/mask mAP 0.7773/0.7957 at the end) and an MMSeg 1.x one (mIoU
    87.3900 at iteration 800), through the CLI."""
    det = _copy("text/maskrcnn_balloon_mmdet2", tmp_path / "balloon")
    seg = _copy("text/pspnet_glomeruli_mmseg1", tmp_path / "glomeruli")
    result = cli("report", "--import", det, "--import", seg, "--format", "json")
    assert result.exit_code == 0, result.output
    runs = {run["id"]: run for run in json.loads(result.stdout)["runs"]}
    assert set(runs) == {"import:balloon", "import:glomeruli"}
    balloon, glomeruli = runs["import:balloon"], runs["import:glomeruli"]
    assert (balloon["state"], balloon["log_format"], balloon["codebase"]) == ("IMPORTED", "mmcv1", "mmdet")
    assert [(r["metric"], r["value"], r["at"]) for r in balloon["results"]] == [
        ("bbox_mAP", 77.73, {"iter": 310, "epoch": 10}), ("segm_mAP", 79.57, {"iter": 310, "epoch": 10})]
    assert balloon["progress"]["iter"] == 309 and balloon["progress"]["total"] == 310 and balloon["flags"] == []
    assert (glomeruli["log_format"], glomeruli["codebase"]) == ("mmengine", "mmseg")
    assert [(r["metric"], r["value"]) for r in glomeruli["results"]] == [("mIoU", 87.39)]
    table = " ".join(cli("report", "--import", det).stdout.split())
    assert "import:balloon IMPORTED bbox_mAP 77.73" in table and "segm_mAP 79.57" in table


def test_a_folder_of_text_only_work_dirs_imports_each(tmp_path):
    parent = tmp_path / "work_dirs"
    for name in ("text/maskrcnn_balloon_mmdet2", "text/pspnet_glomeruli_mmseg0", "text/rtmdet_drink_mmdet3"):
        _copy(name, parent / Path(name).name)
    rows = _rows(parent, tmp_path=tmp_path)
    assert {i: [r.value for r in row.results] for i, row in rows.items()} == {
        "import:maskrcnn_balloon_mmdet2": [77.73, 79.57], "import:pspnet_glomeruli_mmseg0": [90.32],
        "import:rtmdet_drink_mmdet3": [93.1]}


def test_the_experiment_name_a_text_log_prints_finds_the_recipe(tmp_path):
    """MMCV 1.x prints `Exp name: <config file>` after each epoch; nothing else in a text-only work dir may name it."""
    work = _copy("text/maskrcnn_balloon_mmdet2", tmp_path / "run-3")
    assert recognize.recognize(work) is None  # trained from `balloon.py` into './work_dirs/balloon'
    [log] = work.glob("*.log")
    renamed = log.read_bytes().replace(b"Exp name: balloon.py", b"Exp name: mask_rcnn_swin-t-p4-w7_fpn_1x_coco.py")
    log.write_bytes(renamed)
    assert recognize.recognize(work) == "maskrcnn-swin-t"
    [row] = _rows(work, tmp_path=tmp_path).values()
    assert row.recipe == "maskrcnn-swin-t" and [r.metric for r in row.results] == ["bbox_mAP", "segm_mAP"]
    assert {ref.expected for r in row.results for ref in r.references} >= {42.6, 39.5}


# ---------------------------------------------------------------------------------------------- seeds of imports


def test_unrelated_imports_are_not_seeds_of_one_another_and_each_says_why_no_recipe_matched(tmp_path):
    """A Mask R-CNN Swin-T trained with an MMDet 2.x config name and an R50 Mask R-CNN on balloon: two configurations,
    so no seed group ("2 runs, mean +- std"), and each row names the config it was trained from."""
    swin = _copy("mmcv1/maskrcnn_1x", tmp_path / "a")
    r50 = _copy("text/maskrcnn_balloon_mmdet2", tmp_path / "b")
    report = build.build_report(tmp_path / "no-runs", import_dirs=[str(swin), str(r50)])
    assert report.groups == []
    notes = {row.id: row.notes for row in report.runs}
    assert notes == {
        "import:a": ["no recipe matched: trained from mask_rcnn_swin_tiny_patch4_window7_1x_coco (the work_dir its "
                     "logs name), which is no recipe's reference config"],
        "import:b": ["no recipe matched: trained from balloon (the work_dir its logs name), which is no recipe's "
                     "reference config"]}


def test_imports_of_one_config_are_seeds_and_the_recognised_recipe_is_named(tmp_path):
    seeds = [_copy("mmengine/det_epoch", tmp_path / f"seed{i}") for i in (0, 1)]
    for work in seeds:
        (work / f"{MASKRCNN}.py").write_text("work_dir = './work_dirs/anything'\n")
    other = _copy("text/maskrcnn_balloon_mmdet2", tmp_path / "balloon")
    report = build.build_report(tmp_path / "no-runs", import_dirs=[*map(str, seeds), str(other)])
    (group,) = report.groups
    assert group.run_ids == ["import:seed0", "import:seed1"] and group.recipe == "maskrcnn-swin-t"
    assert report.runs[0].notes == [f"recognised as maskrcnn-swin-t: trained from {MASKRCNN}.py (its dumped config)"]


def test_a_named_recipe_is_said_with_the_config_the_work_dir_keeps(tmp_path):
    work = _copy("mmcv1/maskrcnn_1x", tmp_path / "x")
    report = build.build_report(tmp_path / "no-runs", ["maskrcnn-swin-t"], import_dirs=[str(work)])
    assert report.runs[0].notes == ["judged as maskrcnn-swin-t (the recipe named); trained from "
                                    "mask_rcnn_swin_tiny_patch4_window7_1x_coco"]
