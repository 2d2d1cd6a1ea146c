"""Signals from outside, in real processes: Ctrl-C while `run`/`sweep` render (exit 130, nothing written), SIGTERM
and SIGHUP to a `status --watch` (the cursor shown again), the Ctrl-C hint of `status --all --watch`.

The signal is sent once the process reached a known point (a file the render hook writes, the cursor-hiding
escape on stdout), never after a fixed sleep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from polling import wait_for

from swinctl.runs.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]
HIDE, SHOW = b"\x1b[?25l", b"\x1b[?25h"


def _env(root: Path, **extra: str) -> dict[str, str]:
    return dict(os.environ, SWINCTL_RUNS=str(root), PYTHONPATH=str(REPO), COLUMNS="120", **extra)


def _spawn(args, env) -> tuple[subprocess.Popen, bytearray, threading.Thread]:
    proc = subprocess.Popen([sys.executable, "-m", "swinctl.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
    out = bytearray()
    reader = threading.Thread(target=lambda: [out.extend(c) for c in iter(lambda: proc.stdout.read1(4096), b"")],
                              daemon=True)
    reader.start()
    return proc, out, reader


def _stop(proc: subprocess.Popen, sig: int) -> int:
    os.killpg(proc.pid, sig)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("verb", [
    ["run", "upernet-swin-t", "--smoke", "--executor", "local"],
    ["sweep", "upernet-swin-t", "--smoke", "--grid", "optimizer.lr=1e-4,2e-4", "--executor", "local"],
], ids=["run", "sweep"])
def test_ctrl_c_while_rendering_submits_nothing(verb, tmp_path):
    root, mark = tmp_path / "runs", tmp_path / "rendering"
    proc, out, reader = _spawn(verb, _env(root, SWINCTL_TEST_PAUSE_RENDERING=str(mark)))
    wait_for(mark.exists, 120, "the render hook")
    assert _stop(proc, signal.SIGINT) == 130, out.decode()
    reader.join(10)
    text = out.decode()
    assert "interrupted: nothing submitted" in text and "Traceback" not in text, text
    assert not root.exists() or Ledger(root).list_runs() == []
    assert not root.exists() or [p.name for p in root.iterdir() if not p.name.startswith(("ledger.sqlite", "."))] \
        == []


def test_ctrl_c_inside_mmengines_formatter_stays_an_interrupt(monkeypatch):
    """MMEngine formats the config with yapf under a bare `except:` that turns Ctrl-C into a SyntaxError."""
    import mmengine.config.config as mmconfig

    from swinctl import render
    from swinctl.runs import lifecycle as runs

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    recipe, _ = runs.resolve_recipe("upernet-swin-t", [], smoke=True)
    cfg = render.render(recipe)
    monkeypatch.setattr(mmconfig, "FormatCode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        render.to_text(cfg)


def _watch(tmp_path, *args: str):
    from test_bad_inputs import _add_runs

    root = tmp_path / "runs"
    _add_runs(root, 1)  # a PENDING run that never ends: the watch goes on until stopped
    proc, out, reader = _spawn(["status", *args, "--watch"], _env(root, TTY_COMPATIBLE="1"))
    wait_for(lambda: HIDE in out, 120, "the live table to hide the cursor")
    return proc, out, reader


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_to_status_watch_shows_the_cursor_again(sig, tmp_path):
    proc, out, reader = _watch(tmp_path, "--all")
    assert _stop(proc, sig) == 128 + sig
    reader.join(10)
    assert SHOW in out[out.index(HIDE):], bytes(out[-400:])
    assert b"Traceback" not in out


def test_ctrl_c_hint_of_status_all_watch_names_commands_that_exist(tmp_path):
    proc, out, reader = _watch(tmp_path, "--all")
    assert _stop(proc, signal.SIGINT) == 130
    reader.join(10)
    text = " ".join(out.decode().split())
    assert SHOW.decode() in text and "swinctl status --all --watch to watch again" in text, text
    assert "cancel --all" not in text and "swinctl cancel RUN" in text, text
