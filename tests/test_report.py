"""swinctl.report over a real ledger whose runs hold real MMEngine logs (tests/fixtures/logs), with their
validation values set per test; MMCV 1.x work dirs for --import; the real wandb library for --source wandb."""

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from swinctl import recipes, report
from swinctl.report import ABOVE, BELOW, INCOMPLETE, NO_METRICS, NO_REFERENCE, REPRODUCED, RUNNING, SMOKE
from swinctl.runs.ledger import Ledger, RunRecord

LOGS = Path(__file__).parent / "fixtures" / "logs"
SEED_README, METAFILE = "seed README (MIM Swin example)", "MMDet 3.x metafile"


class Runs:
    """A runs root with a ledger; each run's work dir is a copy of a real fixture with its validations edited."""

    def __init__(self, root: Path):
        self.root = root
        self.ledger = Ledger(root)
        self.n = 0

    def add(self, *, recipe="maskrcnn-swin-t", fixture="mmengine/det_epoch", curve=None, state="COMPLETED",
            smoke=False, overrides=(), sweep=None, seed=None, gpus=8, elapsed_s=36000.0, tolerance=None,
            metrics=None, run_id=None) -> RunRecord:
        """`curve`: {metric: [fraction per validation]} written into the copied scalars.json."""
        self.n += 1
        run_id = run_id or f"{recipe}{'-smoke' if smoke else ''}-20240101-{self.n:06d}-{self.n:04x}"
        run_dir = self.root / run_id
        run_dir.mkdir()
        resolved = recipes.load_recipe(recipe)
        if tolerance is not None:
            resolved = resolved.model_copy(update={"tolerance": tolerance})
        (run_dir / "recipe.yaml").write_text(recipes.dump_recipe(resolved))
        if fixture:
            shutil.copytree(LOGS / fixture, run_dir / "work_dir")
            if curve:
                edit_validations(run_dir / "work_dir", curve)
        record = RunRecord(
            id=run_id, kind="train", recipe=recipe, codebase=resolved.codebase, overrides=list(overrides),
            signature="sig", executor="slurm", job_id=str(self.n), state=state, smoke=smoke, run_dir=run_dir,
            work_dir=run_dir / "work_dir", sweep=sweep, seed=seed, gpus=gpus, started_at=time.time() - elapsed_s,
            finished_at=None if state in ("RUNNING", "PENDING") else time.time(), elapsed_s=elapsed_s,
            metrics=metrics or {})
        return self.ledger.add(record)


def edit_validations(work_dir: Path, curve: dict[str, list[float]]) -> None:
    for scalars in work_dir.glob("*/vis_data/scalars.json"):
        lines = scalars.read_text().splitlines()
        k = 0
        for i, line in enumerate(lines):
            data = json.loads(line)
            if "coco/bbox_mAP" in data or "mIoU" in data:
                for metric, values in curve.items():
                    key = metric if metric == "mIoU" else f"coco/{metric}"
                    data[key] = values[k]
                lines[i] = json.dumps(data)
                k += 1
        scalars.write_text("\n".join(lines) + "\n")


@pytest.fixture
def runs(tmp_path):
    return Runs(tmp_path / "runs")


def det(*final, curve=None):
    """Three validations rising to `final` (bbox, segm) fractions."""
    bbox, segm = final
    return curve or {"bbox_mAP": [0.30, 0.38, bbox], "segm_mAP": [0.28, 0.35, segm]}


# ---------------------------------------------------------------------------------------------- verdicts


def test_verdicts_against_each_source(runs):
    ok = runs.add(curve=det(0.424, 0.392))
    low = runs.add(curve=det(0.419, 0.391))
    high = runs.add(curve=det(0.432, 0.399))
    rep = report.build_report(runs.root)
    rows = {r.id: r for r in rep.runs}
    bbox = rows[ok.id].result("bbox_mAP")
    assert (bbox.value, bbox.last, bbox.best, bbox.at) == (42.4, 42.4, 42.4, {"iter": 21, "epoch": 3})
    assert [(r.source, r.expected, r.delta, r.verdict) for r in bbox.references] == [
        (SEED_README, 42.6, -0.2, REPRODUCED), (METAFILE, 42.7, -0.3, REPRODUCED)]
    segm = rows[ok.id].result("segm_mAP")
    assert [(r.expected, r.delta) for r in segm.references] == [(39.5, -0.3), (39.3, -0.1)]
    assert rows[ok.id].verdict == REPRODUCED and bbox.tolerance == 0.5
    assert rows[low.id].verdict == BELOW
    assert [r.verdict for r in rows[low.id].result("bbox_mAP").references] == [BELOW, BELOW]  # -0.7, -0.8
    assert rows[high.id].verdict == ABOVE
    assert [r.verdict for r in rows[high.id].result("bbox_mAP").references] == [ABOVE, REPRODUCED]  # +0.6, +0.5
    assert [r.metric for r in rows[ok.id].results] == ["bbox_mAP", "segm_mAP"]  # the recipe's expected metrics


def test_states_smoke_and_missing_metrics(runs):
    smoke = runs.add(smoke=True, gpus=0, curve=det(0.426, 0.395))
    running = runs.add(state="RUNNING", curve=det(0.426, 0.395))
    failed = runs.add(state="FAILED", curve=det(0.426, 0.395))
    no_val = runs.add(fixture="mmengine/det_no_val", state="FAILED")
    # report folds active runs in as status does: this one has no job a scheduler could be asked about (the made-up
    # SLURM job id would name a real job of the test cluster's), so it stays as its row says
    Ledger(runs.root).update(running.id, job_id=None)
    rep = report.build_report(runs.root)
    rows = {r.id: r for r in rep.runs}
    assert rows[smoke.id].verdict == SMOKE and rows[smoke.id].result("bbox_mAP").value == 42.6
    assert rows[smoke.id].gpu_hours is None and rows[smoke.id].result("bbox_mAP").per_gpu_hour is None
    assert rows[running.id].verdict == RUNNING
    assert rows[failed.id].verdict == INCOMPLETE
    assert rows[no_val.id].verdict == NO_METRICS
    assert rows[no_val.id].result("bbox_mAP").value is None
    assert rows[no_val.id].flags == ["incomplete", "no_metrics"]
    assert "no validation or test metrics yet (last train iteration 4)" in rows[no_val.id].problems
    assert rep.groups == [] and rep.sweeps == []  # nothing repeated, no sweep


def test_recipe_tolerance_is_honoured(runs):
    strict = runs.add(curve=det(0.424, 0.392), tolerance=0.1)
    rep = report.build_report(runs.root)
    (row,) = rep.runs
    assert row.id == strict.id and row.result("bbox_mAP").tolerance == 0.1
    assert [r.verdict for r in row.result("bbox_mAP").references] == [BELOW, BELOW]


def test_pick_best_or_last(runs):
    peaked = runs.add(curve={"bbox_mAP": [0.30, 0.432, 0.425], "segm_mAP": [0.28, 0.39, 0.395]})
    last = report.build_report(runs.root).runs[0].result("bbox_mAP")
    best = report.build_report(runs.root, pick="best").runs[0].result("bbox_mAP")
    assert (last.value, last.last, last.best, last.at) == (42.5, 42.5, 43.2, {"iter": 21, "epoch": 3})
    assert (best.value, best.at, best.verdict) == (43.2, {"iter": 14, "epoch": 2}, ABOVE)
    assert last.verdict == REPRODUCED
    assert peaked.id == report.build_report(runs.root, pick="best").runs[0].id
    with pytest.raises(report.ReportError):
        report.build_report(runs.root, pick="median")


def test_gpu_hours(runs):
    runs.add(curve=det(0.426, 0.395), gpus=8, elapsed_s=36000.0)
    row = report.build_report(runs.root).runs[0]
    assert row.gpu_hours == 80.0 and row.elapsed_s == 36000.0
    assert row.result("bbox_mAP").per_gpu_hour == round(42.6 / 80, 4)


def test_metric_choice(runs):
    runs.add(curve=det(0.426, 0.395))
    rep = report.build_report(runs.root, metric="segm_mAP_75")
    assert [r.metric for r in rep.runs[0].results] == ["segm_mAP_75"]
    assert rep.runs[0].verdict == NO_REFERENCE and rep.runs[0].results[0].value == 76.7
    with pytest.raises(report.ReportError, match="unknown metric box_map"):
        report.build_report(runs.root, metric="box_map")


def test_ledger_metrics_when_the_logs_are_gone(runs):
    gone = runs.add(fixture=None, metrics={"bbox_mAP": 42.5, "segm_mAP": 39.4})
    row = report.build_report(runs.root).runs[0]
    assert row.id == gone.id and row.result("bbox_mAP").value == 42.5 and row.verdict == REPRODUCED
    assert "metrics from the ledger" in row.problems[-1] and row.log_format == "none"


# ---------------------------------------------------------------------------------------------- seeds and sweeps


def test_seeds_aggregate(runs):
    for seed, bbox in ((0, 0.421), (1, 0.425), (2, 0.429)):
        runs.add(curve=det(bbox, 0.39), overrides=[f"seed={seed}"], seed=seed)
    runs.add(fixture="mmengine/det_no_val", state="FAILED", overrides=["seed=3"], seed=3)
    rep = report.build_report(runs.root)
    (group,) = rep.groups
    bbox = group.primary
    assert (bbox.metric, bbox.n, bbox.values, bbox.mean, bbox.std) == ("bbox_mAP", 3, [42.1, 42.5, 42.9], 42.5, 0.4)
    assert [(r.delta, r.verdict) for r in bbox.references] == [(-0.1, REPRODUCED), (-0.2, REPRODUCED)]
    assert group.seeds == [0, 1, 2, 3] and len(group.run_ids) == 4 and group.overrides == []
    assert group.verdict == REPRODUCED


def test_smoke_never_aggregates_into_a_reproduction(runs):
    for seed in (0, 1):
        runs.add(smoke=True, gpus=0, curve=det(0.426, 0.395), overrides=[f"seed={seed}"], seed=seed)
    (group,) = report.build_report(runs.root).groups
    assert group.smoke and group.verdict == SMOKE and group.primary.n == 2


def test_sweep_points_sorted_best_marked_and_diff(runs):
    for lr, values in (("1e-4", (0.424, 0.428)), ("2e-4", (0.431, 0.433)), ("5e-5", (0.401, 0.405))):
        for seed, bbox in enumerate(values):
            runs.add(curve=det(bbox, 0.39), sweep="lr-sweep", seed=seed,
                     overrides=[f"optimizer.lr={lr}", "model.backbone.depths=[2,2,6,2]", f"seed={seed}"])
    runs.add(curve=det(0.426, 0.395))  # not in the sweep
    rep = report.build_report(runs.root, ["lr-sweep"], diff=True)
    assert len(rep.runs) == 6
    (sweep,) = rep.sweeps
    assert (sweep.name, sweep.metric, sweep.varying) == ("lr-sweep", "bbox_mAP", ["optimizer.lr"])
    assert [(p.rank, p.varying, p.mean, p.n, p.best) for p in sweep.points] == [
        (1, {"optimizer.lr": "2e-4"}, 43.2, 2, True), (2, {"optimizer.lr": "1e-4"}, 42.6, 2, False),
        (3, {"optimizer.lr": "5e-5"}, 40.3, 2, False)]
    assert [p.verdict for p in sweep.points] == [ABOVE, REPRODUCED, BELOW]
    assert sweep.points[0].overrides == ["model.backbone.depths=[2,2,6,2]", "optimizer.lr=2e-4"]
    # --diff: the runs table shows only what varies (lr and seed), the sweep table only lr
    text = report.render(rep, "table")
    assert "model.backbone.depths" not in text and "optimizer.lr=2e-4" in text
    assert "model.backbone.depths=[2,2,6,2]" in report.render(report.build_report(runs.root, ["lr-sweep"]), "table")


# ---------------------------------------------------------------------------------------------- selection, import


def test_selectors(runs):
    a = runs.add(curve=det(0.426, 0.395), sweep="s1")
    b = runs.add(recipe="upernet-swin-t", fixture="mmengine/seg_iter", curve={"mIoU": [44.0, 44.5]})
    assert [r.id for r in report.build_report(runs.root, [a.id[:-3]]).runs] == [a.id]  # id prefix
    assert [r.id for r in report.build_report(runs.root, ["s1"]).runs] == [a.id]
    assert [r.id for r in report.build_report(runs.root, ["upernet-swin-t"]).runs] == [b.id]
    assert len(report.build_report(runs.root).runs) == 2
    seg = report.build_report(runs.root, ["upernet-swin-t"]).runs[0].result("mIoU")
    assert (seg.value, [(r.expected, r.delta) for r in seg.references]) == (44.5, [(44.3, 0.2), (44.41, 0.09)])
    with pytest.raises(report.ReportError, match="'upernet-swin-tt' matches no run id, sweep or recipe.*did you mean"):
        report.build_report(runs.root, ["upernet-swin-tt"])


def test_empty_root(tmp_path):
    rep = report.build_report(tmp_path / "nothing")
    assert rep.runs == [] and rep.problems == ["no runs to report"]
    assert "(no runs)" in report.render(rep, "table")
    with pytest.raises(report.ReportError, match="no runs under"):
        report.build_report(tmp_path / "nothing", ["maskrcnn-swin-t-2024"])


def test_import_legacy_work_dir_against_a_recipe(tmp_path):
    rep = report.build_report(tmp_path / "no-runs", ["maskrcnn-swin-t"], import_dirs=[LOGS / "mmcv1" / "maskrcnn_1x"])
    (row,) = rep.runs
    assert (row.id, row.origin, row.state, row.log_format, row.recipe) == (
        "import:maskrcnn_1x", "import", "IMPORTED", "mmcv1", "maskrcnn-swin-t")
    assert [(r.metric, r.value, r.verdict) for r in row.results] == [("bbox_mAP", 42.6, REPRODUCED),
                                                                    ("segm_mAP", 39.5, REPRODUCED)]
    assert row.result("segm_mAP").at == {"iter": 360, "epoch": 3}


def test_import_folder_of_work_dirs_without_recipe(tmp_path):
    rep = report.build_report(tmp_path / "no-runs", import_dirs=[LOGS / "mmcv1"])
    rows = {r.id: r for r in rep.runs}
    assert sorted(rows) == ["import:maskrcnn_1x", "import:no_val", "import:truncated", "import:upernet_iter",
                            "import:val_only"]
    assert rows["import:upernet_iter"].codebase == "mmseg"
    assert rows["import:upernet_iter"].result("mIoU").value == 44.51
    assert rows["import:maskrcnn_1x"].verdict == NO_REFERENCE
    assert rows["import:truncated"].verdict == INCOMPLETE and "truncated" in rows["import:truncated"].flags
    assert rows["import:no_val"].verdict == NO_METRICS
    with pytest.raises(report.ReportError, match="no MMEngine or MMCV 1.x logs"):
        report.build_report(tmp_path, import_dirs=[tmp_path])


# ---------------------------------------------------------------------------------------------- formats


@pytest.fixture
def mixed(runs):
    for seed, bbox in ((0, 0.424), (1, 0.428)):
        runs.add(curve=det(bbox, 0.393), overrides=["optimizer.lr=2e-4", f"seed={seed}"], seed=seed, sweep="lr")
    runs.add(curve=det(0.410, 0.380), overrides=["optimizer.lr=5e-5"], sweep="lr")
    runs.add(smoke=True, gpus=0)
    runs.add(recipe="upernet-swin-t", fixture="mmengine/seg_iter", curve={"mIoU": [40.0, 44.6]})
    return report.build_report(runs.root)


def test_json_is_stable_and_documented(mixed):
    data = json.loads(report.render(mixed, "json"))
    assert data["schema_version"] == report.SCHEMA_VERSION == 1
    assert set(data) == {"schema_version", "generated_at", "source", "pick", "metrics", "selectors", "runs", "groups",
                         "sweeps", "problems"}
    run = data["runs"][0]
    assert set(run) == {"id", "origin", "kind", "recipe", "codebase", "sweep", "seed", "overrides", "state", "smoke",
                        "executor", "gpus", "elapsed_s", "gpu_hours", "work_dir", "log_format", "progress", "flags",
                        "problems", "verdict", "results", "cost",  # cost: added in schema_version 1
                        "deviations", "reference",  # the reproduction guard's: added in schema_version 1
                        "tested_by",  # the run's --test-after test, whose result is judged: added in version 1
                        "published_weights", "notes"}  # test --published: added in schema_version 1
    assert set(run["results"][0]) == {"metric", "value", "last", "best", "at", "best_at", "per_gpu_hour", "tolerance",
                                      "verdict", "references"}
    assert set(run["progress"]) == {"iter", "total", "epoch", "max_epochs", "eta_s", "phase"}
    for key in ("schema_version", '"runs"', '"groups"', '"sweeps"', "per_gpu_hour", "references",
                '"published_weights"', '"notes"'):
        assert key in report.__doc__  # the schema is written down where scripts will look
    assert [s["name"] for s in data["sweeps"]] == ["lr"]


def test_csv_is_tidy(mixed):
    rows = list(csv.DictReader(io.StringIO(report.render(mixed, "csv"))))
    assert tuple(rows[0]) == report.CSV_COLUMNS
    first = [r for r in rows if r["run_id"] == mixed.runs[0].id]
    assert [(r["metric"], r["source"], r["expected"], r["delta"]) for r in first] == [
        ("bbox_mAP", SEED_README, "42.6", "-0.2"), ("bbox_mAP", METAFILE, "42.7", "-0.3"),
        ("segm_mAP", SEED_README, "39.5", "-0.2"), ("segm_mAP", METAFILE, "39.3", "0.0")]
    assert first[0]["overrides"] == "optimizer.lr=2e-4;seed=0"


def test_markdown_and_table(mixed):
    md = report.render(mixed, "md")
    assert "## Sweep lr: bbox_mAP" in md and "## Seeds" in md and "| 1 **best** | optimizer.lr=2e-4" in md
    text = report.render(mixed, "table")
    for run in mixed.runs:
        assert run.id in text.replace("\n", "") or run.id[:20] in text
    assert "smoke (not a reproduction)" in text


def test_rich_renderables(mixed):
    from rich.console import Console
    from rich.table import Table

    tables = report.rich_tables(mixed)
    assert [t.title for t in tables if isinstance(t, Table)] == [  # a runs table per recipe: its own metrics
        "sweep lr: bbox_mAP (last)", "seeds (last)", "runs of maskrcnn-swin-t (last value judged)",
        "runs of upernet-swin-t (last value judged)"]
    Console(file=io.StringIO(), width=120).print(*tables)


def test_html_report_and_plots(mixed, tmp_path):
    (tmp_path / "out").mkdir()  # --out never creates directories (test_report_out.py)
    out = report.render(mixed, "html", tmp_path / "out" / "report.html")
    assert out == tmp_path / "out" / "report.html" and out.is_file()
    html = out.read_text()
    names = ["maskrcnn-swin-t-bbox_mAP.png", "maskrcnn-swin-t-segm_mAP.png", "maskrcnn-swin-t-loss.png",
             "maskrcnn-swin-t-smoke-bbox_mAP.png", "maskrcnn-swin-t-smoke-segm_mAP.png",
             "maskrcnn-swin-t-smoke-loss.png", "upernet-swin-t-mIoU.png", "upernet-swin-t-loss.png"]
    assert html.startswith("<!DOCTYPE html>") and html.count('src="data:image/png;base64,') == len(names)
    assert html.count("<figcaption>") == len(names)  # one caption a figure
    assert "<h2>Seeds</h2>" in html and "reproduced" in html
    pngs = report.save_plots(mixed, tmp_path / "plots")
    assert [p.name for p in pngs] == names
    for png in pngs:
        assert png.stat().st_size > 20_000
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width == 1120  # 560 CSS pixels, twice as sharp


def test_render_rejects_unknown_format(mixed):
    with pytest.raises(report.ReportError, match="unknown format"):
        report.render(mixed, "xlsx")


# ---------------------------------------------------------------------------------------------- W&B


def wandb_run(**overrides):
    run = dict(id="3kx9q2", name="maskrcnn-swin-t-20240101-120000-ab12", group="lr-sweep", tags=["maskrcnn"],
               state="finished", config={"default_scope": "mmdet", "randomness": {"seed": 3}},
               summary=SimpleNamespace(_json_dict={"coco/bbox_mAP": 0.424, "coco/segm_mAP": 0.392, "loss": 0.9,
                                                   "_runtime": 36000.5, "lr": 1e-6}))
    run.update(overrides)
    return SimpleNamespace(**run)


def test_wandb_run_to_row():
    row = report.row_from_wandb(wandb_run(), report._Expectations(), None, "last")
    assert (row.id, row.origin, row.recipe, row.codebase, row.sweep, row.seed, row.state, row.smoke, row.elapsed_s) == (
        "maskrcnn-swin-t-20240101-120000-ab12", "wandb", "maskrcnn-swin-t", "mmdet", "lr-sweep", 3, "COMPLETED",
        False, 36000.5)
    assert [(r.metric, r.value, r.verdict) for r in row.results] == [("bbox_mAP", 42.4, REPRODUCED),
                                                                    ("segm_mAP", 39.2, REPRODUCED)]
    smoke = report.row_from_wandb(wandb_run(name="upernet-swin-t-smoke-20240101-120000-ab12", group="upernet-swin-t",
                                            tags=["smoke"], state="crashed", config={"default_scope": "mmseg"},
                                            summary={"mIoU": 12.5}), report._Expectations(), None, "best")
    assert (smoke.recipe, smoke.sweep, smoke.smoke, smoke.state, smoke.verdict) == (
        "upernet-swin-t", None, True, "FAILED", SMOKE)
    assert smoke.result("mIoU").value == 12.5  # MMSeg 1.x logs percent: not scaled
    assert "W&B summaries hold the last values" in smoke.problems[0]
    empty = report.row_from_wandb(wandb_run(name="someone-elses-run", group=None, summary={}, config={}),
                                  report._Expectations(), None, "last")
    assert (empty.recipe, empty.verdict, empty.flags) == (None, NO_METRICS, ["no_metrics"])


def test_wandb_without_api_key(runs, monkeypatch, tmp_path):
    server = socket.create_server(("127.0.0.1", 0))  # a reachable "server": the key is what is missing
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb"))
    expected = r"cannot read the W&B project 'me/swinctl': No API key configured.*`wandb login`"
    with server, pytest.raises(report.ReportError, match=expected):
        report.build_report(runs.root, ["wandb:me/swinctl"], source="wandb")


def test_wandb_unreachable(tmp_path):
    """A key but no server: a clear error within the timeout (in a subprocess: wandb starts a service process)."""
    code = ("from swinctl import report\n"
            "try:\n    report.wandb_runs('me/swinctl', timeout=3)\n"
            "except report.ReportError as exc:\n    print('ERROR', exc)\n")
    env = dict(os.environ, WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9", HOME=str(tmp_path),
               WANDB_CONFIG_DIR=str(tmp_path / "wandb"), WANDB_DIR=str(tmp_path))
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("ERROR cannot read the W&B project 'me/swinctl'"), out.stdout + out.stderr
    assert "--source local" in out.stdout and time.monotonic() - started < 60


def test_report_module_stays_light():
    code = ("import sys, swinctl.report; bad = [m for m in ('torch', 'mmengine', 'mmdet', 'mmseg', 'mmcv', "
            "'matplotlib', 'wandb', 'pandas') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_import_a_swinctl_run_dir_from_another_root(runs, tmp_path):
    """A run dir copied from another machine: its recipe.yaml names the recipe and the expected values."""
    other = runs.add(curve=det(0.426, 0.395), tolerance=0.2)
    rep = report.build_report(tmp_path / "elsewhere", import_dirs=[other.work_dir])
    (row,) = rep.runs
    assert (row.id, row.recipe, row.verdict) == (f"import:{other.id}", "maskrcnn-swin-t", REPRODUCED)
    assert row.result("bbox_mAP").tolerance == 0.2


def test_report_on_real_smoke_runs(runs, tmp_path):
    det_run = runs.add(fixture="swinctl_smoke/maskrcnn-swin-t/work_dir", smoke=True, gpus=0, elapsed_s=37.0)
    seg_run = runs.add(recipe="upernet-swin-t", fixture="swinctl_smoke/upernet-swin-t/work_dir", smoke=True, gpus=0)
    rep = report.build_report(runs.root)
    rows = {r.id: r for r in rep.runs}
    assert rows[det_run.id].verdict == SMOKE and rows[det_run.id].result("bbox_mAP").value is None
    assert rows[det_run.id].problems[0].startswith("2 validations logged no metric")
    assert rows[seg_run.id].verdict == SMOKE and rows[seg_run.id].result("mIoU").value == 0.05
    assert rows[det_run.id].progress == {"iter": 16, "total": 16, "epoch": 2, "max_epochs": 2, "eta_s": 0.0,
                                         "phase": "val"}
    pngs = report.save_plots(rep, tmp_path / "plots")
    assert [p.name for p in pngs] == ["maskrcnn-swin-t-smoke-loss.png", "upernet-swin-t-smoke-mIoU.png",
                                      "upernet-swin-t-smoke-loss.png"]  # the Mask R-CNN smoke logged no metric


def test_import_swinctl_smoke_run_dir(tmp_path):
    rep = report.build_report(tmp_path / "none", import_dirs=[LOGS / "swinctl_smoke" / "upernet-swin-t" / "work_dir"])
    (row,) = rep.runs
    assert (row.id, row.recipe, row.codebase) == ("import:upernet-swin-t", "upernet-swin-t", "mmseg")
    # a smoke run (it trained on the generated demo set): never compared with the published 44.3
    assert row.smoke and row.verdict == SMOKE and row.result("mIoU").references == []


def test_a_test_of_the_published_weights_says_whether_the_data_and_evaluation_are_right():
    expectation = ([report.Expectation("bbox_mAP", 42.7, METAFILE)], 0.5)

    def row(value: float, smoke: bool = False, state: str = "COMPLETED"):
        return report.make_row(
            id="t", origin="ledger", kind="test", recipe="maskrcnn-swin-t", codebase="mmdet", sweep=None, seed=None,
            overrides=[], state=state, smoke=smoke, executor="local", gpus=0, elapsed_s=1.0, gpu_hours=None,
            work_dir=None, log_format="mmengine", progress=None, flags=set(), problems=[], last={"bbox_mAP": value},
            best={}, last_at=None, expectation=expectation, metrics=None, pick="last",
            published_weights="https://download.openmmlab.com/x.pth")

    assert row(42.7).notes == ["published weights: 42.7 box mAP vs 42.7 expected: data and evaluation OK"]
    below = row(40.1)
    assert below.verdict == BELOW and below.notes[0].startswith(
        "published weights: 40.1 box mAP vs 42.7 expected: data or evaluation differ")
    assert row(42.7, smoke=True).notes == [] and row(42.7, state="RUNNING").notes == []  # nothing to conclude yet
    table = report.render(report.Report(source="local", pick="last", metrics=None, selectors=[], runs=[below],
                                        groups=[], sweeps=[], problems=[]), "md")
    assert "data or evaluation differ" in table


def test_tests_of_the_published_weights_are_not_seeds_of_tests_of_other_weights():
    expectation = ([report.Expectation("mIoU", 44.3, SEED_README), report.Expectation("mIoU_ms_flip", 45.8, "x")],
                   0.5)

    def test_row(run_id: str, last: dict, published_weights=None):
        return report.make_row(
            id=run_id, origin="ledger", kind="test", recipe="upernet-swin-t", codebase="mmseg", sweep=None,
            seed=None, overrides=[], state="COMPLETED", smoke=False, executor="local", gpus=0, elapsed_s=1.0,
            gpu_hours=None, work_dir=None, log_format="mmengine", progress=None, flags=set(), problems=[], last=last,
            best={}, last_at=None, expectation=expectation, metrics=None, pick="last",
            published_weights=published_weights)

    rows = [test_row("a", {"mIoU": 44.0}), test_row("b", {"mIoU": 40.0}),
            test_row("c", {"mIoU": 44.4}, "https://x/y.pth"), test_row("d", {"mIoU_ms_flip": 45.9}, "https://x/y.pth")]
    groups = report.judging.aggregate(rows, {r.id: expectation for r in rows})
    assert sorted(g.run_ids for g in groups) == [["a", "b"], ["c"], ["d"]]


def test_a_smoke_run_is_never_compared_with_a_published_number(runs):
    """No delta, no source verdict, no metric per device-hour: not in the table, Markdown, CSV, JSON or HTML."""
    for seed in (0, 1):  # two seeds of a smoke run: a seed group, not compared either
        runs.add(smoke=True, gpus=0, elapsed_s=61.0, curve=det(0.05, 0.04), overrides=[f"seed={seed}"], seed=seed)
    rep = report.build_report(runs.root)
    for row in rep.runs:
        assert row.smoke and row.verdict == SMOKE
        assert all(r.references == [] and r.per_gpu_hour is None for r in row.results)
    (group,) = rep.groups
    assert group.verdict == SMOKE and all(r.references == [] for r in group.results)
    data = json.loads(report.render(rep, "json"))
    assert all(res["references"] == [] and res["per_gpu_hour"] is None for run in data["runs"]
               for res in run["results"])
    assert all(res["references"] == [] for g in data["groups"] for res in g["results"])
    for line in csv.DictReader(io.StringIO(report.render(rep, "csv"))):
        assert line["smoke"] == "1" and line["verdict"] == SMOKE
        assert line["expected"] == line["delta"] == line["source_verdict"] == line["per_gpu_hour"] == ""
    table = report.render(rep, "table")
    assert "-37." not in table and "Δ vs expected" not in table and "smoke" in table
    for fmt in ("md", "html"):
        text = report.render(rep, fmt)
        body = text.split("</style>")[-1]  # html: past the CSS, which names every verdict class
        assert "42.6" not in body and "-37." not in body and "below" not in body, fmt


BATCH = ("total batch 8 (4 GPUs x 2) vs 16 published (8 GPUs x 2): learning rate scaled 1e-4 -> 5e-5 (linear "
         "rule)")
SPLIT = "train split: 11,829 images vs 118,287 published (COCO train2017): a subset (10.0%)"
SCHEDULE = "schedule 6 epochs vs 12 epochs published: the learning rate steps move with it"


def test_deviations_read_one_line_each_and_a_sweep_lists_its_shared_ones_once(runs):
    for i, lr in enumerate(("1e-4", "2e-4", "5e-5")):
        run = runs.add(curve=det(0.424, 0.393), overrides=[f"optimizer.lr={lr}"], sweep="lr")
        found = [BATCH, SPLIT] + ([SCHEDULE] if i == 2 else [])
        runs.ledger.update(run.id, deviations=[{"kind": "x", "severity": "warning", "message": m} for m in found])
    rep = report.build_report(runs.root)
    assert rep.sweeps[0].deviations == [BATCH, SPLIT]
    text = report.render(rep, "table")  # with --wide: each deviation on one line
    lines = [line.strip() for line in text.splitlines()]
    assert lines.count(BATCH) == lines.count(SPLIT) == lines.count(SCHEDULE) == 1, text
    assert "sweep lr, every run:" in lines and f"run {rep.runs[2].id}:" in lines
    from test_views_width import render

    narrow = render(report.rich_tables(rep), 80)  # at 80 columns: sentences wrap whole, never a word a line
    words = narrow.split()
    for message in (BATCH, SPLIT, SCHEDULE):
        assert " ".join(message.split()) in " ".join(words) and " ".join(words).count(message) == 1, narrow
    assert not any(line.strip() in ("total", "batch", "learning", "rate") for line in narrow.splitlines()), narrow
    assert f"run {rep.runs[2].short_id}:" in narrow
    md = report.render(rep, "md")
    assert md.count(BATCH) == md.count(SPLIT) == 1 and md.count(SCHEDULE) == 1  # shared once, under the sweep
    assert f"- {BATCH}" in md
