"""Probes that a training config imports (custom_imports) in tests of resuming: what the data pipeline loads, what
each iteration trains, and a preemption at a chosen iteration. They write to the file named by $SWINCTL_TEST_PROBE,
one line per event, appended and flushed, so a test reads them after the training process has exited.

- `RecordLoad`, put first in the training pipeline: `load <img_path>` for every sample the dataset prepares (what
  the next transform, LoadImageFromFile, would read and decode).
- `RecordTrained` (a hook): `train <iteration> <img_path> ...` for every batch before it is trained.
- `SignalAt` (a hook): at iteration $SWINCTL_TEST_SIGNAL_AT (0-based), sends its own process SIGUSR2, as SLURM does;
  swinctl's SignalCheckpointHook then saves at the end of that iteration and exits.
"""

from __future__ import annotations

import os
import signal

from mmcv.transforms import BaseTransform
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, TRANSFORMS

PROBE_ENV = "SWINCTL_TEST_PROBE"
SIGNAL_AT_ENV = "SWINCTL_TEST_SIGNAL_AT"


def _write(line: str) -> None:
    with open(os.environ[PROBE_ENV], "a") as probe:
        probe.write(line + "\n")


@TRANSFORMS.register_module()
class RecordLoad(BaseTransform):
    def transform(self, results: dict) -> dict:
        _write(f"load {results['img_path']}")
        return results


@HOOKS.register_module()
class RecordTrained(Hook):
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        paths = [sample.metainfo["img_path"] for sample in data_batch["data_samples"]]
        _write(f"train {runner.iter} {' '.join(paths)}")


@HOOKS.register_module()
class SignalAt(Hook):
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if str(runner.iter) == os.environ.get(SIGNAL_AT_ENV):
            os.kill(os.getpid(), signal.SIGUSR2)


def read(path) -> tuple[list[str], dict[int, list[str]]]:
    """The images loaded, in order, and the images each iteration trained."""
    loads, trained = [], {}
    for line in open(path).read().splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "load":
            loads.append(rest)
        else:
            iteration, *paths = rest.split()
            trained[int(iteration)] = paths
    return loads, trained
