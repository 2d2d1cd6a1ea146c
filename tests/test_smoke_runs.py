"""The real chain, end to end: recipe -> rendered config -> submitit (local) -> the codebase's train script found
through mim -> metrics from the real evaluators -> ledger, W&B offline run, status, logs, test."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from swinctl.cli import app
from swinctl.runs.ledger import Ledger

pytestmark = pytest.mark.slow


# A W&B key in the environment of the run (offline: never sent anywhere) that must not be written under the runs root.
SECRET = "5ec2e7ab" * 5


def _invoke(root, *args, env=None):
    env = {**os.environ, "SWINCTL_RUNS": str(root), "COLUMNS": "200", **(env or {})}
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def maskrcnn_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    result = _invoke(root, "run", "maskrcnn-swin-t", "--smoke", "--executor", "local", "--wandb", "offline", "--wait",
                     env={"WANDB_API_KEY": SECRET})
    assert result.exit_code == 0, result.output
    [record] = Ledger(root).list_runs()
    return root, record, result.output


def test_maskrcnn_smoke_trains_and_evaluates_with_pycocotools(maskrcnn_run):
    root, record, output = maskrcnn_run
    assert record.state == "COMPLETED" and record.smoke and record.kind == "train"
    assert record.executor == "local" and record.job_id
    for metric in ("bbox_mAP", "bbox_mAP_50", "segm_mAP"):
        assert 0.0 <= record.metrics[metric] <= 100.0
    assert "bbox_mAP" in output and "COMPLETED" in output
    assert (record.work_dir / "epoch_2.pth").is_file()
    config = (record.run_dir / "config.py").read_text()
    assert "swinctl.SwinTransformer" in config and "swinctl.models" in config
    assert (record.run_dir / "recipe.yaml").is_file()
    events = [e.kind for e in Ledger(root).events(record.id)]
    assert events[:2] == ["created", "submitted"] and events[-1] == "state"


def test_the_wandb_key_is_in_no_file_under_the_runs_root(maskrcnn_run):
    root, _, _ = maskrcnn_run
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) > 10  # config, logs, checkpoints, the offline W&B run
    assert [p for p in files if SECRET.encode() in p.read_bytes()] == []


def test_smoke_run_logged_to_wandb_offline(maskrcnn_run):
    _, record, _ = maskrcnn_run
    [wandb_run] = list((record.run_dir / "wandb").glob("offline-run-*"))
    assert list(wandb_run.glob("*.wandb")), "the offline run holds W&B's own binary log"


def test_status_and_logs_reattach_from_the_ledger(maskrcnn_run):
    root, record, _ = maskrcnn_run
    result = _invoke(root, "status", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["id"] == record.id and row["state"] == "COMPLETED" and row["smoke"] is True
    assert row["metrics"]["bbox_mAP"] == record.metrics["bbox_mAP"]
    assert row["progress"]["iter"] == row["progress"]["total"] > 0
    logs = _invoke(root, "logs", record.id[:-2])  # MMEngine logs to stdout
    assert logs.exit_code == 0 and "Epoch(train)" in logs.output, logs.output


def test_test_verb_evaluates_a_checkpoint(maskrcnn_run):
    root, record, _ = maskrcnn_run
    result = _invoke(root, "test", "maskrcnn-swin-t", "--smoke", "--executor", "local",
                     "--checkpoint", record.work_dir / "epoch_2.pth")
    assert result.exit_code == 0, result.output
    test_run = [r for r in Ledger(root).list_runs() if r.kind == "test"][0]
    assert test_run.state == "COMPLETED"
    # The same weights on the same data give the same numbers as the last validation.
    assert test_run.metrics["bbox_mAP"] == pytest.approx(record.metrics["bbox_mAP"], abs=0.05)


def test_upernet_smoke_trains_and_evaluates_miou(tmp_path):
    result = _invoke(tmp_path, "run", "upernet-swin-t", "--smoke", "--executor", "local", "--wandb", "offline",
                     "--wait")
    assert result.exit_code == 0, result.output
    [record] = Ledger(tmp_path).list_runs()
    assert record.state == "COMPLETED"
    assert 0.0 <= record.metrics["mIoU"] <= 100.0 and "aAcc" in record.metrics
    assert list((record.run_dir / "wandb").glob("offline-run-*"))
    # the last line says what the numbers mean, and how to get a run that learns
    assert "numbers near 0 are expected" in result.output and "--smoke-profile learn" in result.output


def test_a_failing_run_is_recorded_as_failed_with_its_error(tmp_path):
    # A learning-rate schedule whose milestones exceed the run: mmengine refuses it at start-up, for real.
    result = _invoke(tmp_path, "run", "upernet-swin-t", "--smoke", "--executor", "local", "--wandb", "disabled",
                     "--wait", "--set", "cfg.train_dataloader.dataset.type=NoSuchDataset")
    assert result.exit_code == 1
    [record] = Ledger(tmp_path).list_runs()
    assert record.state == "FAILED"
    assert "NoSuchDataset" in record.error
