"""`swinctl test --published` and `--tta`, end to end on a trained smoke model: its checkpoint, served from a local
HTTP server (127.0.0.1 only), stands for a recipe's released weights. Real mim test runs on generated demo data;
nothing mocked but the network (a real server on the loopback interface).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import threading
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

from swinctl import published, recipes
from swinctl.cli import app
from swinctl.runs.ledger import Ledger

try:
    from slurm_cluster import slurm_cluster  # noqa: F401  (fixture; see tests/slurm_cluster.py for the import)
except ImportError:  # pragma: no cover
    from tests.slurm_cluster import slurm_cluster  # noqa: F401

pytestmark = pytest.mark.slow

BASE = ["--executor", "local", "--wandb", "disabled"]
# The learning smoke profile (recipes' smoke.learn): a model that scores far above chance, so that a backbone that
# failed to load could not score the same as the checkpoint it came from.
LEARN = [arg for item in recipes.load_recipe("upernet-swin-t").smoke.learn_overrides() for arg in ("--set", item)]


def _invoke(root: Path, hub: Path, *args):
    env = {**os.environ, "SWINCTL_RUNS": str(root), "TORCH_HOME": str(hub), "SWINCTL_OFFLINE": "", "COLUMNS": "200"}
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


class _Server:
    """http.server on 127.0.0.1 serving `folder`, counting the GETs of each path; `/cut/NAME` announces NAME's
    whole length and closes the connection after half of it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.gets: dict[str, int] = {}
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.gets[self.path] = server.gets.get(self.path, 0) + 1
                if self.path.startswith("/cut/"):
                    data = (folder / self.path.removeprefix("/cut/")).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One UPerNet smoke model, trained for real; its last checkpoint."""
    root = tmp_path_factory.mktemp("train-runs")
    result = _invoke(root, tmp_path_factory.mktemp("hub"), "run", "upernet-swin-t", "--smoke", *BASE, *LEARN,
                     "--wait")
    assert result.exit_code == 0, result.output
    [record] = Ledger(root).list_runs()
    assert record.state == "COMPLETED", record.error
    checkpoint = Path((record.work_dir / "last_checkpoint").read_text().strip())
    assert checkpoint.is_file()
    return record, checkpoint


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """The smoke checkpoint as released (MMSeg's Swin names, converted from swinctl's) and as saved, a text file
    and a truncated copy, served on 127.0.0.1."""
    from swinctl.models.checkpoints import convert_checkpoint_file, detect_layout, read_checkpoint

    _, checkpoint = trained
    folder = tmp_path_factory.mktemp("served")
    convert_checkpoint_file(checkpoint, folder / "upernet_smoke_mmseg.pth", to="mmdet", shape="model")
    assert detect_layout(read_checkpoint(folder / "upernet_smoke_mmseg.pth")) == "mmdet"
    shutil.copy(checkpoint, folder / "upernet_smoke.pth")
    (folder / "not_a_checkpoint.pth").write_text("<html>404 page of a mirror</html>\n")
    data = checkpoint.read_bytes()
    (folder / "truncated.pth").write_bytes(data[: len(data) // 2])
    served = _Server(folder)
    yield served
    served.close()


def _test_runs(root: Path) -> list:
    return [r for r in Ledger(root).list_runs() if r.kind == "test"]


def test_published_weights_download_once_convert_and_score_as_the_checkpoint(trained, server, tmp_path):
    _, checkpoint = trained
    root, hub = tmp_path / "runs", tmp_path / "torch"
    url = server.url("upernet_smoke_mmseg.pth")
    first = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--published", *BASE, *LEARN,
                    "--set", f"published_weights={url}")
    assert first.exit_code == 0, first.output
    cached = hub / "hub" / "checkpoints" / "upernet_smoke_mmseg.pth"
    converted = cached.with_name("upernet_smoke_mmseg.swinctl.pth")
    assert f"downloaded to {cached}" in first.output and "mmdet layout converted once" in first.output
    assert cached.is_file() and converted.is_file()
    assert sorted(p.name for p in cached.parent.iterdir()) == [cached.name, converted.name]  # no partial left
    assert server.gets == {"/upernet_smoke_mmseg.pth": 1}

    converted_at = converted.stat().st_mtime_ns
    again = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--published", *BASE, *LEARN,
                    "--set", f"published_weights={url}")
    assert again.exit_code == 0, again.output
    assert f"cached at {cached}" in again.output
    assert re.search(rf"weights\W+published {re.escape(url)}", again.output), again.output  # what was tested
    assert server.gets == {"/upernet_smoke_mmseg.pth": 1}  # the second test downloads nothing
    assert converted.stat().st_mtime_ns == converted_at  # ... and converts nothing

    plain = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--checkpoint", checkpoint, *BASE, *LEARN)
    assert plain.exit_code == 0, plain.output
    # the same MMSeg-layout file given as --checkpoint: converted once into swinctl's cache, not beside it
    given = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--checkpoint", server.folder / cached.name,
                    *BASE, *LEARN)
    assert given.exit_code == 0, given.output
    assert "mmdet layout converted once" in given.output and "/converted/" in given.output, given.output

    first_run, second_run, plain_run, given_run = _test_runs(root)
    for record in (first_run, second_run, plain_run, given_run):
        assert record.state == "COMPLETED", record.error
    assert plain_run.metrics["mIoU"] >= 30.0, plain_run.metrics  # learnt: an unloaded backbone scores far less
    # the released file (MMSeg's Swin names) scores exactly what the checkpoint it was made from scores
    assert first_run.metrics == second_run.metrics == plain_run.metrics == given_run.metrics
    record = published.read_record(first_run.run_dir)
    assert record["published"] == url and record["path"] == str(converted) and record["layout"] == "mmdet"
    assert published.read_record(plain_run.run_dir)["published"] is None

    report = _invoke(root, hub, "report", "--format", "json")
    assert report.exit_code == 0, report.output
    rows = {row["id"]: row for row in json.loads(report.output)["runs"]}
    assert rows[first_run.id]["published_weights"] == url and rows[plain_run.id]["published_weights"] is None
    assert rows[first_run.id]["notes"] == []  # a smoke run is never compared with a published number


def test_a_published_test_off_smoke_is_judged_in_words(trained, server, tmp_path):
    """The smoke model's sizes passed as plain overrides (not --smoke): a real verdict against 44.3 mIoU."""
    _, checkpoint = trained
    root, hub = tmp_path / "runs", tmp_path / "torch"
    recipe = recipes.load_recipe("upernet-swin-t")
    from swinctl.data import demo

    sizes = [f"{key}={json.dumps(value)}" for key, value in {**recipe.smoke.set, **recipe.smoke.config,
                                                             **recipe.smoke.learn}.items()]
    sets = [arg for item in [*sizes, f"data.root={demo.ensure('ade20k')}",
                             f"published_weights={server.url('upernet_smoke.pth')}"] for arg in ("--set", item)]
    result = _invoke(root, hub, "test", "upernet-swin-t", "--published", *BASE, *sets)
    assert result.exit_code == 0, result.output
    [run] = _test_runs(root)
    assert run.state == "COMPLETED" and not run.smoke, run.error
    report = _invoke(root, hub, "report", "--format", "json")
    [row] = json.loads(report.output)["runs"]
    [res] = [r for r in row["results"] if r["metric"] == "mIoU"]
    assert res["verdict"] in ("below", "above") and res["value"] == run.metrics["mIoU"]
    assert row["notes"][0] == (f"published weights: {run.metrics['mIoU']:.1f} mIoU vs 44.3 expected: data or "
                               "evaluation differ (dataset version or split, annotations, test pipeline or metric "
                               "settings)")
    table = _invoke(root, hub, "report", "--wide")
    assert "published weights:" in table.output and "data or evaluation differ" in table.output, table.output


@pytest.mark.parametrize("name, problem", [
    ("not_a_checkpoint.pth", "not a torch checkpoint"),
    ("truncated.pth", "damaged or truncated torch checkpoint"),
    ("cut/upernet_smoke.pth", "cannot be downloaded (the connection closed after"),
    ("no_such_file.pth", "cannot be downloaded (HTTP 404: File not found)"),
])
def test_a_wrong_or_truncated_download_is_one_clear_error_and_leaves_nothing(server, tmp_path, name, problem):
    root, hub = tmp_path / "runs", tmp_path / "torch"
    url = server.url(name)
    result = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--published", *BASE,
                     "--set", f"published_weights={url}")
    assert result.exit_code == 2, result.output
    [error] = _errors(result.output)
    print(f"[error] {error}")
    assert url in error and problem in error, error
    assert "Traceback" not in result.output
    assert not root.exists() or not any(root.iterdir()) or Ledger(root).list_runs() == []
    assert not root.exists() or [p for p in root.iterdir() if p.is_dir()] == []  # no run dir
    checkpoints = hub / "hub" / "checkpoints"
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []  # nothing kept, no partial file


def test_a_damaged_cached_copy_names_itself_and_how_to_fix_it(server, tmp_path):
    root, hub = tmp_path / "runs", tmp_path / "torch"
    cached = hub / "hub" / "checkpoints" / "upernet_smoke.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    before = dict(server.gets)
    result = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--published", *BASE,
                     "--set", f"published_weights={server.url('upernet_smoke.pth')}")
    assert result.exit_code == 2, result.output
    [error] = _errors(result.output)
    assert f"the cached copy {cached}" in error and "damaged or truncated" in error, error
    assert server.gets == before  # the cache answered; nothing was fetched
    assert not root.exists() or Ledger(root).list_runs() == []


def test_published_offline_uses_the_cache_only(server, tmp_path):
    root, hub = tmp_path / "runs", tmp_path / "torch"
    url = server.url("upernet_smoke.pth")
    env = {**os.environ, "SWINCTL_RUNS": str(root), "TORCH_HOME": str(hub), "SWINCTL_OFFLINE": "1"}
    result = CliRunner().invoke(app, ["test", "upernet-swin-t", "--smoke", "--published", *BASE, "--set",
                                      f"published_weights={url}"], env=env)
    assert result.exit_code == 2
    [error] = _errors(result.output)
    assert "not in the torch hub cache" in error and "SWINCTL_OFFLINE" in error, error


def test_published_needs_weights_and_excludes_checkpoint(trained, tmp_path):
    _, checkpoint = trained
    root, hub = tmp_path / "runs", tmp_path / "torch"
    both = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--published", "--checkpoint", checkpoint, *BASE)
    assert both.exit_code == 2 and "exclude each other" in _errors(both.output)[0], both.output
    neither = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", *BASE)
    assert neither.exit_code == 2 and "--checkpoint PATH" in _errors(neither.output)[0], neither.output
    unnamed = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--published", *BASE,
                      "--set", "published_weights=null")
    assert unnamed.exit_code == 2 and "names no published_weights" in _errors(unnamed.output)[0], unnamed.output
    assert not root.exists()


def test_the_seed_and_zoo_recipes_name_their_metafile_weights():
    for name in ("maskrcnn-swin-t", "maskrcnn-swin-t-fp16", "upernet-swin-t",
                 "upernet-swin-s-in1k-160k-ade20k-512x512", "mask2former-swin-t-lsj-50e-coco"):
        weights = recipes.load_recipe(name).published_weights
        assert weights and weights.startswith("https://download.openmmlab.com/") and weights.endswith(".pth"), name


def test_dry_run_on_slurm_prints_the_script_and_downloads_nothing(server, tmp_path, no_slurm_client):
    root, hub = tmp_path / "runs", tmp_path / "torch"
    url = server.url("upernet_smoke_mmseg.pth")
    before = dict(server.gets)
    result = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--published", "--tta", "--dry-run",
                     "--executor", "slurm", "--set", f"published_weights={url}")
    assert result.exit_code == 0, result.output
    cached = hub / "hub" / "checkpoints" / "upernet_smoke_mmseg.pth"
    assert f"published weights: {url} -> {cached}" in result.output
    assert "#SBATCH" in result.output and "submission script" in result.output
    command = result.output.split("─ command ─")[1] if "─ command ─" in result.output else result.output
    assert str(cached) in command and "--tta --cfg-options test_evaluator.prefix=ms_flip" in command, command
    assert server.gets == before and not cached.exists() and not root.exists()


def test_tta_is_refused_where_the_config_has_none(tmp_path):
    root, hub = tmp_path / "runs", tmp_path / "torch"
    result = _invoke(root, hub, "test", "maskrcnn-swin-t", "--smoke", "--tta", "--published", *BASE, "--dry-run")
    assert result.exit_code == 2
    [error] = _errors(result.output)
    assert "--tta" in error and "MMDetection" in error, error
    no_tta = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--tta", "--published", *BASE, "--dry-run",
                     "--set", "cfg.tta_model=null")
    assert no_tta.exit_code == 2 and "has no tta_model" in _errors(no_tta.output)[0], no_tta.output


def test_tta_records_miou_ms_flip_and_the_report_judges_it(trained, tmp_path):
    record, checkpoint = trained
    root, hub = tmp_path / "runs", tmp_path / "torch"
    result = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--tta", "--checkpoint", checkpoint, *BASE,
                     *LEARN)
    assert result.exit_code == 0, result.output
    [run] = _test_runs(root)
    assert run.state == "COMPLETED", run.error
    assert 0.0 <= run.metrics["mIoU_ms_flip"] <= 100.0 and "mIoU" not in run.metrics, run.metrics
    print(f"[numbers] smoke mIoU (last validation) {record.metrics['mIoU']} vs mIoU_ms_flip "
          f"{run.metrics['mIoU_ms_flip']}")
    report = _invoke(root, hub, "report", "--format", "json")
    [row] = json.loads(report.output)["runs"]
    [res] = row["results"]
    assert res["metric"] == "mIoU_ms_flip" and res["value"] == run.metrics["mIoU_ms_flip"]
    assert res["verdict"] == "smoke (not a reproduction)"
    assert res["references"] == []  # a smoke run is never compared with the published 45.79
    table = _invoke(root, hub, "report", "--wide")
    assert "mIoU_ms_flip" in table.output, table.output


@pytest.mark.slurm
def test_published_weights_with_tta_on_slurm_score_as_the_checkpoint_does_locally(trained, server, tmp_path,
                                                                                   slurm_cluster):
    """Downloaded on the submit host (the job needs no network), tested by a real SLURM job with the config's
    test-time augmentation: the same mIoU_ms_flip as the original checkpoint's local --tta test."""
    _, checkpoint = trained
    root, hub = tmp_path / "runs", tmp_path / "torch"
    url = server.url("upernet_smoke_mmseg.pth")
    result = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--published", "--tta", "--executor", "slurm",
                     "--wandb", "disabled", *LEARN, "--set", f"published_weights={url}")
    assert result.exit_code == 0, result.output
    local = _invoke(root, hub, "test", "upernet-swin-t", "--smoke", "--tta", "--checkpoint", checkpoint, *BASE,
                    *LEARN)
    assert local.exit_code == 0, local.output
    on_slurm, here = _test_runs(root)
    assert on_slurm.executor == "slurm" and on_slurm.job_id.isdigit() and here.executor == "local"
    assert on_slurm.state == here.state == "COMPLETED", (on_slurm.error, here.error)
    assert "mIoU_ms_flip" in on_slurm.metrics and on_slurm.metrics == here.metrics
