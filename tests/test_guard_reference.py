"""The reproduction guard while a run trains: its validations against the recipe's reference training log, in
`status`, `report` (verdict next to its deviations) and the HTML plots. Logs are fixtures, never the network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from swinctl import recipes
from swinctl.runs.ledger import Ledger, RunRecord

LOGS = Path(__file__).parent / "fixtures" / "logs"
RUN_LOG = LOGS / "mmcv1" / "maskrcnn_1x"  # an MMDet 2.x Mask R-CNN Swin-T log.json: epochs 1-3 at 28.3/35.6/42.6
AHEAD_LOG = LOGS / "mmengine" / "det_epoch"  # an MMEngine scalars.json: epochs 1-3 at 60.7/67.2/68.3 box mAP


def _run(root: Path, reference: Path, *, fmt: str | None, state: str = "RUNNING", deviations=()) -> RunRecord:
    recipe = recipes.load_recipe("maskrcnn-swin-t")
    assert recipe.reference_log is not None and recipe.reference_log.url.endswith(".log.json")
    recipe = recipes.apply_recipe_overrides(recipe, [("reference_log.url", str(reference)),
                                                     ("reference_log.format", fmt)])
    run_id = "maskrcnn-swin-t-20261203-101500-ab12"
    run_dir = root / run_id
    (run_dir / "work_dir").mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(recipes.dump_recipe(recipe))
    shutil.copy(next(RUN_LOG.glob("*.log.json")), run_dir / "work_dir")
    record = RunRecord(id=run_id, kind="train", recipe=recipe.name, codebase="mmdet", overrides=[], signature="s",
                       executor="local", job_id=None, state=state, smoke=False, run_dir=run_dir,
                       work_dir=run_dir / "work_dir", gpus=8, deviations=list(deviations))
    return Ledger(root).add(record)


def test_the_seed_recipes_name_their_reference_logs():
    for name in ("maskrcnn-swin-t", "maskrcnn-swin-t-fp16"):
        ref = recipes.load_recipe(name).reference_log
        assert ref is not None and ref.url.startswith("https://download.openmmlab.com/") and ref.format == "mmcv1"


def test_comparison_matches_epochs_and_flags_a_run_behind(tmp_path):
    from swinctl.guard import reference

    record = _run(tmp_path, AHEAD_LOG, fmt="mmengine")
    found = reference.compare_run(record.run_dir, record.work_dir)
    assert [(p.epoch, p.metric, p.value, p.reference) for p in found.points if p.metric == "bbox_mAP"] == \
        [(1, "bbox_mAP", 28.3, 60.7), (2, "bbox_mAP", 35.6, 67.2), (3, "bbox_mAP", 42.6, 68.3)]
    assert found.behind
    assert found.summary() == "behind reference: epoch 3: 42.6 box mAP vs 68.3 in the reference log (tolerance 1)"


def test_a_run_on_its_reference_is_on_track_and_a_missing_log_is_named(tmp_path):
    from swinctl.guard import reference

    same = next(RUN_LOG.glob("*.log.json"))
    record = _run(tmp_path / "a", same, fmt=None)
    found = reference.compare_run(record.run_dir, record.work_dir)
    assert not found.behind and found.summary().startswith("on track: epoch 3:")
    gone = _run(tmp_path / "b", tmp_path / "nowhere.log.json", fmt=None)
    assert "not found" in reference.compare_run(gone.run_dir, gone.work_dir).summary()


def test_an_uncached_url_offline_is_not_fetched(tmp_path):
    from swinctl.guard import reference

    with pytest.raises(reference.ReferenceUnavailable, match="SWINCTL_OFFLINE"):
        reference.fetch(recipes.load_recipe("maskrcnn-swin-t").reference_log.url, "mmcv1")


def test_status_flags_a_run_behind_its_reference(cli, runs_root):
    _run(runs_root, AHEAD_LOG, fmt="mmengine")
    result = cli("status", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["reference"]["behind"] is True
    table = cli("status")
    assert "behind reference: epoch 3: 42.6 box mAP vs 68.3 in the reference log" in " ".join(table.output.split())


def test_report_lists_deviations_next_to_the_verdict_and_the_reference(cli, runs_root):
    deviation = {"kind": "batch", "severity": "scaled", "message": "total batch 8 (4 GPUs x 2) vs 16 published (8 "
                 "GPUs x 2): learning rate scaled 1e-4 -> 5e-5 (linear rule)", "published": None, "actual": None}
    _run(runs_root, AHEAD_LOG, fmt="mmengine", state="COMPLETED", deviations=[deviation])
    result = cli("report", "--format", "json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["runs"]
    assert row["deviations"] == [deviation["message"]] and row["reference"]["behind"] is True
    md = cli("report", "--format", "md").output
    header = next(line for line in md.splitlines() if line.startswith("| run"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[cells.index("verdict") + 1] == "deviations"  # listed next to the verdict
    assert "(1 deviation)" in md and "learning rate scaled 1e-4 -> 5e-5" in md and "behind reference" in md
    table = " ".join(cli("report").output.split())
    assert "learning rate scaled 1e-4 -> 5e-5 (linear rule)" in table


def test_the_html_plots_overlay_the_reference_curve(runs_root):
    from swinctl import report as rp
    from swinctl.report import plots

    _run(runs_root, AHEAD_LOG, fmt="mmengine", state="COMPLETED")
    built = rp.build_report(runs_root, [])
    drawn = {plot.name: plot for plot in plots.draw(built)}
    for name in ("maskrcnn-swin-t-bbox_mAP.png", "maskrcnn-swin-t-segm_mAP.png"):
        labels = [line.get_label() for line in drawn[name].figure.axes[0].get_lines()]
        assert any(label.startswith("reference log: ") for label in labels), labels
    html = rp.render(built, "html")
    assert "data:image/png;base64," in html and "behind reference" in html
