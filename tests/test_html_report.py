"""The HTML report: every reported metric is plotted, and the page renders in headless Chromium (a screenshot,
the embedded plots decode, no console output). Chromium is installed by .ci/run; elsewhere the browser tests skip
when it is missing (SWINCTL_REQUIRE_CHROMIUM=1, as CI sets, turns that into a failure)."""

import io
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from PIL import Image
from test_report import LOGS, Runs, det

from swinctl import recipes, report
from swinctl.report import plots

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]
CONSOLE = re.compile(r":CONSOLE(?::\d+|\(\d+\))\] \"(?P<message>.*)\", source: (?P<source>\S*)")


@pytest.fixture
def mixed(tmp_path):
    runs = Runs(tmp_path / "runs")
    for seed, bbox in ((0, 0.424), (1, 0.428)):
        runs.add(curve=det(bbox, 0.393), overrides=["optimizer.lr=2e-4", f"seed={seed}"], seed=seed, sweep="lr")
    runs.add(smoke=True, gpus=0, elapsed_s=60.0)
    runs.add(recipe="upernet-swin-t", fixture="mmengine/seg_iter", curve={"mIoU": [40.0, 44.6]})
    return runs


def realistic(root: Path) -> Runs:
    """A runs root as a user has it: a learning-rate sweep of Mask R-CNN with two seeds at one point, its
    recipe's reference training log, the real smoke runs of both recipes, and UperNet runs of which one validated
    once."""
    runs = Runs(root)
    reference = next((LOGS / "mmcv1" / "maskrcnn_1x").glob("*.log.json"))  # epochs 1-3: 28.3/35.6/42.6 box mAP
    for lr, seed, bbox, segm in (("1e-4", 0, 0.424, 0.393), ("1e-4", 1, 0.428, 0.396), ("2e-4", 0, 0.415, 0.386)):
        record = runs.add(curve={"bbox_mAP": [0.291, 0.361, bbox], "segm_mAP": [0.268, 0.334, segm]},
                          overrides=[f"optimizer.lr={lr}", f"seed={seed}"], seed=seed, sweep="lr")
        recipe = recipes.apply_recipe_overrides(recipes.load_recipe("maskrcnn-swin-t"),
                                                [("reference_log.url", str(reference))])
        (record.run_dir / "recipe.yaml").write_text(recipes.dump_recipe(recipe))
    runs.add(fixture="swinctl_smoke/maskrcnn-swin-t/work_dir", smoke=True, gpus=0, elapsed_s=37.0)
    runs.add(recipe="upernet-swin-t", fixture="mmengine/seg_iter", curve={"mIoU": [40.2, 44.6]})
    runs.add(recipe="upernet-swin-t", fixture="mmengine/seg_val_only", curve={"mIoU": [44.1]}, state="FAILED")
    runs.add(recipe="upernet-swin-t", fixture="swinctl_smoke/upernet-swin-t/work_dir", smoke=True, gpus=0,
             elapsed_s=52.0)
    return runs


def panels(rep) -> dict[str, list[tuple[str, int]]]:
    """Each figure's panels: (title, number of plotted points)."""
    return {name: [(ax.get_title(), sum(len(line.get_xdata()) for line in ax.get_lines()
                                        if not line.get_label().startswith("expected")))
                   for ax in fig.axes]
            for name, fig in plots.draw(rep)}


def test_every_reported_metric_is_plotted(mixed):
    drawn = panels(report.build_report(mixed.root))
    assert drawn == {
        "maskrcnn-swin-t-bbox_mAP.png": [("maskrcnn-swin-t: bbox_mAP", 9), ("maskrcnn-swin-t: segm_mAP", 9),
                                         ("maskrcnn-swin-t: training loss", 27)],
        "upernet-swin-t-mIoU.png": [("upernet-swin-t: mIoU", 2), ("upernet-swin-t: training loss", 8)]}
    asked = panels(report.build_report(mixed.root, ["upernet-swin-t"], metric=["mIoU", "mAcc", "aAcc"]))
    assert [title for title, _ in asked["upernet-swin-t-mIoU.png"]] == [
        "upernet-swin-t: mIoU", "upernet-swin-t: mAcc", "upernet-swin-t: aAcc", "upernet-swin-t: training loss"]
    assert all(points for _, points in asked["upernet-swin-t-mIoU.png"])
    (name, png), = report.figures(report.build_report(mixed.root, ["upernet-swin-t"],
                                                      metric=["mIoU", "mAcc", "aAcc"]))
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (1100, 840)  # four panels: two rows of three


# ---------------------------------------------------------------------------------------------- Chromium


@pytest.fixture(scope="module")
def chromium() -> str:
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
                 None)
    if found is None:
        if os.environ.get("SWINCTL_REQUIRE_CHROMIUM") or os.environ.get("CI"):
            pytest.fail("headless Chromium is required here (.ci/run installs the Debian package `chromium`)")
        pytest.skip("no chromium on PATH (apt-get install -y chromium; .ci/run installs it)")
    return found


def browse(chromium: str, page: Path, shot: Path, size=(1280, 4000)) -> list[str]:
    """Load `page` in headless Chromium, screenshot it; returns what the page wrote to the console."""
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                               f"--window-size={size[0]},{size[1]}", page.as_uri()],
                              capture_output=True, text=True, timeout=120)
    assert shot.is_file(), done.stderr[-3000:]
    return [m["message"] for m in CONSOLE.finditer(done.stderr) if m["source"].startswith("file:")]


def test_console_messages_are_seen(chromium, tmp_path):
    """The check below is real: a page that writes to the console is caught."""
    page = tmp_path / "noisy.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>console.error('marker-1'); missing();</script>")
    messages = browse(chromium, page, tmp_path / "noisy.png", size=(400, 300))
    assert "marker-1" in messages and any("missing is not defined" in m for m in messages)


def test_html_report_in_headless_chromium(chromium, mixed, tmp_path):
    rep = report.build_report(mixed.root)
    page = report.render(rep, "html", tmp_path / "report.html")
    shot = tmp_path / "report.png"
    assert browse(chromium, page, shot) == []  # no errors, no output at all
    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 500  # tables, coloured verdicts and the plots drawn
    # the same page with a probe: the embedded plots decode at their size, the tables and verdicts are there
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", """<script>
for (const img of document.images) console.log(`img ${img.alt} ${img.naturalWidth}x${img.naturalHeight}`);
console.log(`tables ${document.querySelectorAll('table').length}`);
console.log(`headings ${[...document.querySelectorAll('h2')].map(h => h.textContent).join(' | ')}`);
console.log(`reproduced ${document.querySelectorAll('td.reproduced').length}`);
console.log(`overflow ${document.documentElement.scrollWidth > window.innerWidth}`);
</script></body>"""))
    messages = browse(chromium, probe, tmp_path / "probe.png")
    assert "img maskrcnn-swin-t-bbox_mAP.png 1100x420" in messages
    assert "img upernet-swin-t-mIoU.png 1100x420" in messages
    assert "tables 4" in messages  # the sweep, the seeds, the runs of each recipe
    assert ("headings Sweep lr: bbox_mAP | Seeds | Runs of maskrcnn-swin-t | Runs of upernet-swin-t | "
            "Learning curves") in messages
    assert any(m.startswith("reproduced ") and int(m.split()[1]) >= 4 for m in messages), messages
    assert "overflow false" in messages  # nothing wider than a 1280-pixel window
