"""Shared fixtures: every test gets its own runs root; demo data and W&B stay inside the test session's temp dir."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory):
    """No test writes to the user's ~/.cache, ./runs or a W&B account."""
    data = tmp_path_factory.mktemp("demo-data")
    patch = pytest.MonkeyPatch()
    patch.setenv("SWINCTL_DATA", str(data))
    # the reproduction guard's caches (pretrained checks, split counts, reference logs, torch hub) stay here, and
    # it never downloads: tests use fixtures, never the network
    patch.setenv("SWINCTL_CACHE", str(tmp_path_factory.mktemp("swinctl-cache")))
    patch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))
    patch.setenv("SWINCTL_OFFLINE", "1")
    patch.setenv("WANDB_MODE", "offline")
    patch.setenv("WANDB_SILENT", "true")
    patch.delenv("WANDB_API_KEY", raising=False)
    patch.delenv("SWINCTL_RECIPES", raising=False)
    yield
    patch.undo()


@pytest.fixture
def runs_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "runs"
    monkeypatch.setenv("SWINCTL_RUNS", str(root))
    return root


@pytest.fixture
def cli():
    """Invoke the real CLI in-process; returns the result (exit_code, stdout, stderr)."""
    from typer.testing import CliRunner

    from swinctl.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200", **os.environ})

    return invoke


@pytest.fixture
def no_slurm_client(monkeypatch):
    """A laptop: no SLURM client on PATH (only this interpreter's bin)."""
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
