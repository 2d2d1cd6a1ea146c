"""A job resumed inside an epoch (or deep into an iteration-based run) starts its sampler at the resumed batch: the
images of the batches trained before the preemption are never loaded, the batches trained after it are those of
the uninterrupted run, in the same order, and the final weights are bit-identical to the uninterrupted run's.

Real training (the codebase's own train script on the job config swinctl writes, generated demo data, seeded CPU
kernels); the probes (tests/resume_probe.py) record every image the training pipeline prepares, every batch trained,
and send the process SIGUSR2 at a chosen iteration, as SLURM does before a time limit.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import resume_probe
import torch
from mmengine.config import Config

from swinctl.job import task as jobs
from swinctl.models import safe_load
from swinctl.models.preemption import EXIT_CHECKPOINTED
from swinctl.runs import lifecycle as runs

TESTS = Path(__file__).resolve().parent


def _job(tmp_path: Path, recipe: str, overrides: list[str]) -> jobs.JobSpec:
    """The training job of a seeded smoke run of `recipe`, its job config carrying the probes."""
    prepared = runs.prepare(recipe, overrides=["seed=7", *overrides], smoke=True, executor="local",
                            wandb="disabled", root=tmp_path / "runs")
    spec = prepared.spec
    spec.run_dir.mkdir(parents=True)
    spec.config.write_text(prepared.config_text)
    cfg = Config.fromfile(str(jobs.write_job_config(spec)), import_custom_modules=False)
    cfg.custom_imports["imports"].append("resume_probe")
    cfg.custom_hooks += [dict(type="RecordTrained"), dict(type="SignalAt")]
    cfg.train_dataloader.dataset.pipeline.insert(0, dict(type="RecordLoad"))
    cfg.dump(str(spec.job_config))
    return spec


def _train(spec: jobs.JobSpec, name: str, *, resume: bool = False, signal_at: int | None = None) -> tuple:
    """Run the job's training into work dir `name`; its exit code and what the probes saw."""
    spec = replace(spec, work_dir=spec.run_dir / name)
    probe = spec.run_dir / f"{name}.probe"
    probe.unlink(missing_ok=True)
    env = {**os.environ, jobs.SIGNAL_CHECKPOINT_ENV: "1", resume_probe.PROBE_ENV: str(probe),
           resume_probe.SIGNAL_AT_ENV: "" if signal_at is None else str(signal_at),
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(spec.command(resume=resume), env=env, cwd=spec.run_dir, capture_output=True, text=True)
    log = done.stdout + done.stderr
    return done.returncode, *resume_probe.read(probe), log


def _weights(path: Path) -> dict:
    return safe_load.load(path)["state_dict"]


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert differing == [], f"{len(differing)} of {len(a)} tensors differ, e.g. {differing[:3]}"


def test_a_pass_started_at_any_batch_is_the_rest_of_the_uninterrupted_pass():
    """ResumableBatchSampler over mmdet's AspectRatioBatchSampler over a shuffling DefaultSampler, on the demo COCO
    annotations: started at batch k of an epoch, a pass draws batches k... of that epoch's order, then the next pass
    is whole again; its length and sampler are those of the batch sampler it wraps (MMEngine's hooks read them)."""
    from mmdet.datasets import AspectRatioBatchSampler, CocoDataset
    from mmengine.dataset import DefaultSampler

    from swinctl.data import demo
    from swinctl.models.preemption import ResumableBatchSampler

    root = demo.ensure("coco")
    dataset = CocoDataset(data_root=str(root), ann_file="annotations/instances_train2017.json",
                          data_prefix=dict(img="train2017/"), pipeline=[])
    sampler = DefaultSampler(dataset, shuffle=True, seed=7)
    batches = ResumableBatchSampler(AspectRatioBatchSampler(sampler, batch_size=3))
    assert len(batches) == 6 and batches.sampler is sampler and batches.batch_size == 3
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        whole = list(batches)
        assert [len(b) for b in whole] == [3, 3, 3, 3, 3, 1]
        for start in range(len(whole) + 1):
            batches.start_next_pass_at(start)
            assert list(batches) == whole[start:]
            assert list(batches) == whole
    sampler.set_epoch(0)
    assert list(batches) != whole  # (the epochs' orders differ: the test above compared something)


# Mask R-CNN (EpochBasedTrainLoop, DefaultSampler + AspectRatioBatchSampler) on the 16 demo training images in
# batches of 3: epochs of 6 batches, the last of one image. No validation: only training loads images.
EPOCHS = ["schedule.max_epochs=2", "schedule.log_interval=1", "train_dataloader.batch_size=3",
          "val_cfg=null", "val_dataloader=null", "val_evaluator=null"]


@pytest.fixture(scope="module")
def maskrcnn(tmp_path_factory):
    spec = _job(tmp_path_factory.mktemp("maskrcnn"), "maskrcnn-swin-t", EPOCHS)
    code, loads, trained, log = _train(spec, "plain")
    assert code == 0, log[-3000:]
    assert sorted(trained) == list(range(12)) and len(trained[5]) == 1 and len(trained[11]) == 1, trained
    return spec, loads, trained


@pytest.mark.slow
@pytest.mark.parametrize("signal_at", [7, 5], ids=["inside-the-second-epoch", "at-the-end-of-the-first"])
def test_an_epoch_resumed_inside_loads_no_image_of_its_trained_batches(maskrcnn, signal_at):
    spec, plain_loads, plain = maskrcnn
    name = f"preempted-{signal_at}"
    code, loads, trained, log = _train(spec, name, signal_at=signal_at)
    assert code == EXIT_CHECKPOINTED, log[-3000:]
    assert sorted(trained) == list(range(signal_at + 1))
    code, loads, trained, log = _train(spec, name, resume=True)
    assert code == 0, log[-3000:]
    # the iterations after the preemption, each with the batch the uninterrupted run trained there
    assert trained == {i: plain[i] for i in range(signal_at + 1, 12)}
    # and only their images were loaded: none of a batch trained before the preemption
    assert loads == [path for i in range(signal_at + 1, 12) for path in plain[i]]
    assert loads == plain_loads[-len(loads):]
    _assert_identical(_weights(spec.run_dir / "plain" / "epoch_2.pth"),
                      _weights(spec.run_dir / name / "epoch_2.pth"))
    if signal_at == 7:
        assert "resuming inside epoch 2: its first 2 of 6 batches are trained" in log


# UPerNet (IterBasedTrainLoop, no batch sampler of its own) on the 16 demo training images: the InfiniteSampler's
# one stream of permutations (batches of 3, across their seams), or a DefaultSampler's passes of 3 batches of 6, 6
# and 4 images (a batch of one would not train: UPerNet's pooling module has batch norms), each pass in the order of
# its epoch, preempted twice: inside a pass, then at the end of one. And with two persistent data-loader workers,
# as MMSeg's configs load: they prefetch 2 batches each from the moment the loop makes its iterator.
ITERS = ["schedule.max_iters=14", "schedule.log_interval=1", "schedule.val_interval=100000",
         "schedule.checkpoint_interval=100000"]
PREFETCH = 2  # batches per worker: DataLoader's prefetch_factor


@pytest.mark.slow
@pytest.mark.parametrize("sampler, batch, signals, workers", [("InfiniteSampler", 3, [7], 0),
                                                              ("DefaultSampler", 6, [4, 8], 0),
                                                              ("InfiniteSampler", 3, [7], 2)])
def test_an_iteration_run_resumed_loads_no_image_of_its_trained_batches(tmp_path, sampler, batch, signals, workers):
    spec = _job(tmp_path, "upernet-swin-t", [*ITERS, f"train_dataloader.sampler.type={sampler}",
                                             f"train_dataloader.batch_size={batch}",
                                             f"train_dataloader.num_workers={workers}",
                                             f"train_dataloader.persistent_workers={str(workers > 0).lower()}"])
    code, _, plain, log = _train(spec, "plain")
    assert code == 0, log[-3000:]
    assert sorted(plain) == list(range(14))
    code, _, trained, log = _train(spec, "preempted", signal_at=signals[0])
    assert code == EXIT_CHECKPOINTED, log[-3000:]
    assert trained == {i: plain[i] for i in range(signals[0] + 1)}
    for stopped, then in zip(signals, [*signals[1:], None], strict=True):
        code, loads, trained, log = _train(spec, "preempted", resume=True, signal_at=then)
        assert code == (0 if then is None else EXIT_CHECKPOINTED), log[-3000:]
        after = range(stopped + 1, 14 if then is None else then + 1)
        assert trained == {i: plain[i] for i in after}
        wanted = [path for i in after for path in plain[i]]
        if workers:  # in the workers' interleaved order, and at most what they prefetch beyond the last batch
            assert not Counter(wanted) - Counter(loads)
            assert len(loads) <= len(wanted) + PREFETCH * workers * batch < len(wanted) + (stopped + 1) * batch
        else:
            assert loads == wanted  # nothing of the batches trained before
        assert f"swinctl: resuming at iteration {stopped + 1}: the sampler starts at batch" in log
    if not workers:  # (workers draw their augmentations from their own seeds, which a restart starts over)
        _assert_identical(_weights(spec.run_dir / "plain" / "iter_14.pth"),
                          _weights(spec.run_dir / "preempted" / "iter_14.pth"))
