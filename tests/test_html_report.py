"""The HTML report: every reported metric is plotted, and the page renders in headless Chromium (a screenshot,
the embedded plots decode, no console output). Chromium is installed by .ci/run; elsewhere the browser tests skip
when it is missing (SWINCTL_REQUIRE_CHROMIUM=1, as CI sets, turns that into a failure)."""

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


def realistic(root: Path) -> Runs:
    """A runs root as a user has it: a learning-rate sweep of Mask R-CNN with two seeds at one point, checked
    against its recipe's reference training log; the real smoke runs of both recipes; UperNet runs of which one
    logged its validation without an iteration; a run of another recipe that validated once before it died."""
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
    runs.add(recipe="maskrcnn-swin-t-fp16", fixture="mmcv1/truncated", state="FAILED")  # one validation, epoch 1
    return runs


@pytest.fixture(scope="module")
def realistic_root(tmp_path_factory) -> Path:
    return realistic(tmp_path_factory.mktemp("realistic") / "runs").root


@pytest.fixture(scope="module")
def realistic_report(realistic_root):
    return report.build_report(realistic_root)


def lines_of(plot) -> dict[str, list[tuple[float, float]]]:
    """Each line of a plot's axes by its label, as its legend shows it: its (x, y) points."""
    (ax,) = plot.figure.axes
    drawn = {line.get_label(): [(float(x), float(y)) for x, y in zip(line.get_xdata(), line.get_ydata(),
                                                                      strict=True)]
             for line in ax.get_lines()}
    assert list(drawn) == [text.get_text().replace("\n", " ") for text in plot.figure.legends[0].texts]
    return drawn


def test_a_figure_per_metric_with_its_published_values_and_reference_log(realistic_report):
    drawn = {plot.name: plot for plot in plots.draw(realistic_report)}
    assert list(drawn) == [
        "maskrcnn-swin-t-bbox_mAP.png", "maskrcnn-swin-t-segm_mAP.png", "maskrcnn-swin-t-loss.png",
        "maskrcnn-swin-t-smoke-loss.png",  # the smoke run logged no metric (its model detects nothing yet)
        "upernet-swin-t-mIoU.png", "upernet-swin-t-loss.png", "upernet-swin-t-smoke-mIoU.png",
        "upernet-swin-t-smoke-loss.png",
        "maskrcnn-swin-t-fp16-bbox_mAP.png", "maskrcnn-swin-t-fp16-segm_mAP.png", "maskrcnn-swin-t-fp16-loss.png"]
    assert all(len(plot.figure.axes) == 1 for plot in drawn.values())  # one panel a figure
    bbox = lines_of(drawn["maskrcnn-swin-t-bbox_mAP.png"])
    assert bbox["0001 optimizer.lr=1e-4 seed=0"] == [(7, 29.1), (14, 36.1), (21, 42.4)]
    assert bbox["published 42.6 (seed README (MIM Swin example))"][0][1] == 42.6
    assert bbox["published 42.7 (MMDet 3.x metafile)"][0][1] == 42.7
    # the reference log's epochs 1-3 at the sweep runs' 7 iterations per epoch
    (label, points), = [(k, v) for k, v in bbox.items() if k.startswith("reference log: ")]
    assert points == [(7, 28.3), (14, 35.6), (21, 42.6)]
    assert drawn["maskrcnn-swin-t-bbox_mAP.png"].caption == (
        "maskrcnn-swin-t: bbox_mAP of 3 runs at each validation, by iteration; dashed: the published 42.6 (seed "
        "README (MIM Swin example)), 42.7 (MMDet 3.x metafile); grey crosses: the reference training log (MMDet "
        "2.x mask_rcnn_swin-t-p4-w7_fpn_1x_coco log), its epochs at this run's iterations per epoch.")
    # a validation logged without an iteration has no place on the axis: the caption says so
    assert "not drawn: 0006: 44.1 (logged without an iteration)" in drawn["upernet-swin-t-mIoU.png"].caption


def test_every_metric_asked_for_is_drawn(realistic_root):
    asked = plots.draw(report.build_report(realistic_root, ["upernet-swin-t"], metric=["mIoU", "mAcc", "aAcc"]))
    assert [p.name for p in asked] == [
        "upernet-swin-t-mIoU.png", "upernet-swin-t-mAcc.png", "upernet-swin-t-aAcc.png", "upernet-swin-t-loss.png",
        "upernet-swin-t-smoke-mIoU.png", "upernet-swin-t-smoke-mAcc.png", "upernet-swin-t-smoke-aAcc.png",
        "upernet-swin-t-smoke-loss.png"]
    assert all(lines_of(p) for p in asked)


def test_smoke_runs_are_never_drawn_against_a_published_number(realistic_report):
    for plot in plots.draw(realistic_report):
        labels = list(lines_of(plot))
        smoke = [label for label in labels if "smoke (not comparable)" in label]
        assert plot.smoke == bool(smoke), (plot.name, labels)
        if plot.smoke:
            assert smoke == labels  # nothing else: no published line, no reference log, no real run
            assert "(smoke runs)" in plot.figure.axes[0].get_title() and "-smoke-" in plot.name
            assert "not comparable with published" in plot.caption or "loss" in plot.name
            assert not re.search(r"\b44\.3|42\.6|published \d", plot.caption)


def test_a_single_point_gets_room_and_its_published_line():
    assert plots.y_limits([8.0], percent=True) == (6.0, 10.0)  # not matplotlib's 7.6 to 8.4
    assert plots.y_limits([0.05], percent=True) == (0.0, 2.05)  # percent stays within 0..100
    assert plots.y_limits([99.5], percent=True) == (97.5, 100.0)
    assert plots.y_limits([1.0], percent=False) == (0.9, 1.1)
    low, high = plots.y_limits([28.3, 42.6, 42.7], percent=True)
    assert low < 28.3 and 42.7 < high < 45.0


def test_the_single_validation_of_a_run_is_drawn_with_its_published_values(realistic_report):
    (plot,) = [p for p in plots.draw(realistic_report) if p.name == "maskrcnn-swin-t-fp16-bbox_mAP.png"]
    drawn = lines_of(plot)
    (run,) = [points for label, points in drawn.items() if not label.startswith("published")]
    assert len(run) == 1
    (_, value), = run
    low, high = plot.figure.axes[0].get_ylim()
    published = [points[0][1] for label, points in drawn.items() if label.startswith("published")]
    assert published and low < value - 1 and all(low < v < high for v in [value, *published])
    assert high - low > 4  # room around the point and the line, not a magnified sliver
    assert run[0][0] == 100 and plot.figure.axes[0].get_xlim() == (0, 206)  # where training got to: iteration 200


def text_boxes(fig) -> list[tuple[str, object]]:
    """(what, window extent) of every piece of text and legend of a drawn figure, and of each axes' plotting
    area."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for ax in fig.axes:
        boxes.append(("axes area", ax.patch.get_window_extent(renderer)))
        for name, text in (("title", ax.title), ("x label", ax.xaxis.label), ("y label", ax.yaxis.label)):
            if text.get_text():
                boxes.append((name, text.get_window_extent(renderer)))
        for axis in "xy":
            low, high = sorted(getattr(ax, f"get_{axis}lim")())
            for at, tick in zip(getattr(ax, f"get_{axis}ticks")(), getattr(ax, f"get_{axis}ticklabels")(),
                                strict=True):
                if low <= at <= high and tick.get_visible() and tick.get_text():  # matplotlib draws only these
                    boxes.append((f"{axis} tick {tick.get_text()}", tick.get_window_extent(renderer)))
    for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]:
        boxes.append(("legend", legend.get_window_extent(renderer)))
    return boxes


def layout_problems(fig) -> list[str]:
    """Text or legends that overlap each other or the plotting area, or lie (partly) outside the figure."""
    boxes = text_boxes(fig)
    problems = []
    outer = fig.bbox
    for name, box in boxes:
        if box.x0 < outer.x0 - 0.5 or box.y0 < outer.y0 - 0.5 or box.x1 > outer.x1 + 0.5 or box.y1 > outer.y1 + 0.5:
            problems.append(f"{name} sticks out of the figure")
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            width = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            height = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if width > 0.5 and height > 0.5:
                problems.append(f"{a} overlaps {b}")
    return problems


def test_nothing_overlaps_in_any_figure(realistic_report):
    drawn = plots.draw(realistic_report)
    assert drawn
    for plot in drawn:
        assert layout_problems(plot.figure) == [], plot.name
    # the check sees an overlap: a legend put over the axes and the title, as the old panels had them
    plot = drawn[0]
    plot.figure.legends[0].set_loc("upper center")
    problems = layout_problems(plot.figure)
    assert "title overlaps legend" in problems and "axes area overlaps legend" in problems, problems


def test_many_long_labels_still_fit(tmp_path):
    runs = Runs(tmp_path / "runs")
    for i in range(14):  # more than the 12 drawn
        runs.add(curve=det(0.40 + i / 1000, 0.39), overrides=[f"optimizer.lr={i + 1}e-5", "model.backbone."
                                                             f"drop_path_rate=0.{i}", f"seed={i}"], seed=i)
    (bbox, *_) = plots.draw(report.build_report(runs.root))
    assert len(lines_of(bbox)) == 12 + 2 and "the first 12 of 14" in bbox.caption
    assert layout_problems(bbox.figure) == []
    width, height = bbox.figure.get_size_inches()
    assert width == plots.WIDTH_IN and height > plots.AXES_IN + 1  # grown for its legend
    assert bbox.figure.axes[0].get_window_extent().height > 0.6 * plots.AXES_IN * plots.DPI  # the axes kept


def test_plot_files_are_the_figures(realistic_report, tmp_path):
    drawn = {p.name: p for p in plots.draw(realistic_report)}
    paths = report.save_plots(realistic_report, tmp_path / "plots")
    assert [p.name for p in paths] == list(drawn)
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG"
            width, height = drawn[path.name].figure.get_size_inches() * plots.DPI * plots.SCALE
            assert image.size == (round(width), round(height)) and image.width == 560 * plots.SCALE
    assert not list((tmp_path / "plots").glob("*.tmp-*"))  # written under temporary names and renamed


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


# Runs in the page once it has loaded: what the page shows where, as console lines (bounding boxes in page
# coordinates; two boxes overlap when they share more than half a pixel each way).
PROBE = """<script>
addEventListener('load', () => {
  const box = e => { const r = e.getBoundingClientRect();
                     return {x0: r.left, y0: r.top + scrollY, x1: r.right, y1: r.bottom + scrollY}; };
  const boxes = [];
  for (const e of document.querySelectorAll('h1, h2, h3, p, table, ul')) boxes.push([e.tagName, box(e)]);
  const figures = [...document.querySelectorAll('.plots figure')];
  for (const f of figures) {
    const img = f.querySelector('img'), caption = f.querySelector('figcaption');
    boxes.push([`image ${f.id}`, box(img)], [`caption ${f.id}`, box(caption)]);
    console.log(`figure ${f.id} ${img.naturalWidth}x${img.naturalHeight} shown ${img.clientWidth}x${img.clientHeight}`
                + ` caption ${caption.textContent.length > 0 && box(caption).y0 >= box(img).y1 ? 'below' : 'misplaced'}`
                + ` inside ${box(f).x0 >= 0 && box(f).x1 <= document.documentElement.clientWidth}`);
  }
  for (let i = 0; i < boxes.length; i++)
    for (let j = i + 1; j < boxes.length; j++) {
      const [a, p] = boxes[i], [b, q] = boxes[j];
      if (Math.min(p.x1, q.x1) - Math.max(p.x0, q.x0) > 0.5 && Math.min(p.y1, q.y1) - Math.max(p.y0, q.y0) > 0.5)
        console.log(`overlap ${a} ${b}`);
    }
  console.log(`rows of figures ${new Set(figures.map(f => Math.round(box(f).y0))).size}`);
  console.log(`tables ${document.querySelectorAll('table').length}`);
  console.log(`headings ${[...document.querySelectorAll('h2')].map(h => h.textContent).join(' | ')}`);
  console.log(`reproduced ${document.querySelectorAll('td.reproduced').length}`);
  console.log(`overflow ${document.documentElement.scrollWidth > window.innerWidth}`);
});
</script></body>"""


def test_html_report_in_headless_chromium(chromium, realistic_report, tmp_path):
    page = report.render(realistic_report, "html", tmp_path / "report.html")
    shot = tmp_path / "report.png"
    assert browse(chromium, page, shot) == []  # no errors, no output at all
    with Image.open(shot) as image:
        assert image.size == (1280, 4000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 500  # tables, coloured verdicts and the plots drawn
    # the same page with a probe: where everything is, the plots decoded, the tables and verdicts there
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE))
    messages = browse(chromium, probe, tmp_path / "probe.png")
    assert not [m for m in messages if m.startswith("overlap ")], messages  # no heading, table, image or caption
    figures = [m.split() for m in messages if m.startswith("figure ")]
    assert [f[1] for f in figures] == [p.name for p in plots.draw(realistic_report)]
    for _, name, natural, _, shown, _, where, _, inside in figures:
        width, height = (int(v) for v in shown.split("x"))
        assert natural == f"{width * plots.SCALE}x{height * plots.SCALE}" and width == 560, (name, natural, shown)
        assert where == "below" and inside == "true", name  # its own caption under it, within the window
    assert "rows of figures 6" in messages  # 11 figures, two a row: 2 + 1 for each recipe's four, three
    assert "tables 5" in messages  # the sweep, the seeds, the runs of each recipe
    assert ("headings Sweep lr: bbox_mAP | Seeds | Runs of maskrcnn-swin-t | Runs of upernet-swin-t | "
            "Runs of maskrcnn-swin-t-fp16 | Learning curves") in messages
    assert any(m.startswith("reproduced ") and int(m.split()[1]) >= 4 for m in messages), messages
    assert "overflow false" in messages  # nothing wider than a 1280-pixel window


def test_figures_stack_in_a_narrow_window(chromium, realistic_report, tmp_path):
    probe = report.render(realistic_report, "html", tmp_path / "report.html")
    probe.write_text(probe.read_text().replace("</body>", PROBE))
    messages = browse(chromium, probe, tmp_path / "probe.png", size=(500, 800))
    assert not [m for m in messages if m.startswith("overlap ")], messages
    figures = [m.split() for m in messages if m.startswith("figure ")]
    assert len(figures) == 11 and "rows of figures 11" in messages  # one a row
    for _, name, _, _, shown, _, where, _, inside in figures:
        assert int(shown.split("x")[0]) < 560 and where == "below" and inside == "true", (name, shown)
    # the probe sees an overlap: captions pulled up over their images
    probe.write_text(probe.read_text().replace("</style>", ".plots figcaption { margin-top: -3em; }</style>"))
    messages = browse(chromium, probe, tmp_path / "probe.png", size=(500, 800))
    assert "overlap image maskrcnn-swin-t-loss.png caption maskrcnn-swin-t-loss.png" in messages
    assert any(m.startswith("figure ") and " caption misplaced " in m for m in messages), messages
