"""Checkpoint at the scheduler's signal, and resume from it to the same weights an uninterrupted run gets.

SLURM warns a job with USR2 before its time limit and stops it with SIGTERM when it preempts it. In a job
(`SWINCTL_SIGNAL_CHECKPOINT=1`, set by swinctl.job.task) either signal only raises a flag; `SignalCheckpointHook` saves
an iteration-exact checkpoint at the end of the current iteration -- with the random states of torch, numpy and
Python -- and the training exits with `EXIT_CHECKPOINTED`, so the requeued job resumes exactly there. Without
this, a requeue loses everything since the last periodic checkpoint, and a time limit shorter than the checkpoint
interval never progresses.

MMEngine resumes an epoch-based run at the start of the epoch it saved in, and restores no random state. The two
loops below skip the batches already trained in that epoch (as MMEngine's own IterBasedTrainLoop skips on resume),
then put back the random states saved with the checkpoint, just before the next batch is loaded. With
`num_workers=0` and deterministic kernels the resumed run then computes bit for bit what the uninterrupted one
would; with data-loader workers the data order is exact but their augmentation draws are not.

In a distributed run each rank draws its own augmentations, so its random states differ from rank 0's: every
checkpoint holds all ranks' states (gathered when the checkpoint is saved) and each rank resumes with its own.
"""

from __future__ import annotations

import os
import random
import signal

import numpy as np
import torch
from mmengine.dist import all_gather_object, all_reduce, get_rank, get_world_size, is_distributed
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import Registry
from mmengine.runner import EpochBasedTrainLoop as MMEngineEpochLoop
from mmengine.runner import IterBasedTrainLoop as MMEngineIterLoop

from swinctl.job.checkpoints import LAST, SIGNAL_MARK, write_atomic
from swinctl.job.checkpoints import SIGNAL_CHECKPOINT_ENV as ENV_FLAG
from swinctl.job.files import EXIT_CHECKPOINTED

HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='swinctl', locations=['swinctl.models'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, scope='swinctl', locations=['swinctl.models'])

RNG_KEY = 'swinctl_rng'  # rank 0's random states
RANKS_RNG_KEY = 'swinctl_rng_ranks'  # every rank's, in rank order (distributed runs)

_requested: list[int] = []  # the signals that asked for a checkpoint (the handler only appends)
_main_pid = os.getpid()
_pending_rng: list[dict] = []  # random states read from the checkpoint being resumed, put back by the loops
_gathered_rng: list[list[dict]] = []  # every rank's states while a checkpoint is being saved


def _on_signal(signum, frame) -> None:
    if os.getpid() != _main_pid:  # a forked data-loader worker: behave as if nothing were installed
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _requested.append(signum)


def install_signal_handlers() -> None:
    """In a swinctl job, USR2 and SIGTERM ask for a checkpoint instead of ending the training at once."""
    global _main_pid
    if os.environ.get(ENV_FLAG) == '1':
        _main_pid = os.getpid()
        for signum in (signal.SIGUSR2, signal.SIGTERM):
            signal.signal(signum, _on_signal)


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {'torch': torch.get_rng_state(), 'python': random.getstate(),
             'numpy': {'kind': kind, 'keys': keys.tolist(), 'pos': int(pos), 'has_gauss': int(has_gauss),
                       'cached_gaussian': float(cached)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    n = state['numpy']
    np.random.set_state((n['kind'], np.asarray(n['keys'], dtype=np.uint32), n['pos'], n['has_gauss'],
                         n['cached_gaussian']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def restore_pending_rng() -> None:
    """Put back the random states of the checkpoint being resumed (once; a fresh run has none)."""
    if _pending_rng:
        set_rng_state(_pending_rng.pop())


@HOOKS.register_module()
class SignalCheckpointHook(Hook):
    """Save at the end of the iteration during which USR2/SIGTERM arrived, then exit for the requeue."""

    priority = 'LOWEST'  # after the schedulers, the logger and the periodic checkpoint of this iteration

    def before_run(self, runner) -> None:
        if is_distributed():
            _gather_rng_when_saving(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[RNG_KEY] = rng_state()
        if _gathered_rng:
            checkpoint[RANKS_RNG_KEY] = _gathered_rng[0]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        _pending_rng.clear()
        ranks = checkpoint.get(RANKS_RNG_KEY)
        if isinstance(ranks, list) and len(ranks) == get_world_size() and isinstance(ranks[get_rank()], dict):
            _pending_rng.append(ranks[get_rank()])
        elif isinstance(checkpoint.get(RNG_KEY), dict):  # (saved by one process, or by another world size)
            _pending_rng.append(checkpoint[RNG_KEY])

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        stop = torch.tensor(float(bool(_requested)))
        if is_distributed():  # every rank stops at the same iteration, or the others hang in their next all-reduce
            all_reduce(stop, op='max')
        if not stop.item():
            return
        done = runner.iter + 1
        filename = f'iter_{done}.pth'
        runner.save_checkpoint(runner.work_dir, filename, meta=dict(epoch=runner.epoch, iter=done),
                               save_optimizer=True, save_param_scheduler=True)
        if runner.rank == 0:  # (the checkpoint is whole under its name: atomic_save renamed it into place)
            write_atomic(os.path.join(runner.work_dir, LAST),
                         os.path.join(runner.work_dir, filename).encode())
            write_atomic(os.path.join(runner.work_dir, SIGNAL_MARK), filename.encode())
        names = ', '.join(signal.Signals(s).name for s in dict.fromkeys(_requested)) or 'a peer rank'
        print_log(f'swinctl: {names} received: saved {filename} (epoch {runner.epoch + 1}, iteration {done}); '
                  'exiting to be requeued', logger='current')
        raise SystemExit(EXIT_CHECKPOINTED)


def _gather_rng_when_saving(runner) -> None:
    """Have `runner.save_checkpoint` gather every rank's random states first. Only rank 0 saves, but every rank calls
    it at the same point (MMEngine's CheckpointHook does, as its sharded runners need, and so does the hook above),
    so the gather there is a collective all ranks reach, once per checkpoint."""
    save = runner.save_checkpoint
    if getattr(save, '_swinctl_gathers_rng', False):
        return

    def save_checkpoint(*args, **kwargs):
        _gathered_rng[:] = [all_gather_object(rng_state())]
        try:
            return save(*args, **kwargs)
        finally:
            _gathered_rng.clear()

    save_checkpoint._swinctl_gathers_rng = True
    runner.save_checkpoint = save_checkpoint


@LOOPS.register_module()
class EpochBasedTrainLoop(MMEngineEpochLoop):
    """MMEngine's epoch loop, resuming inside an epoch where a signal checkpoint was saved."""

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        trained = self._iter - self._epoch * len(self.dataloader)  # batches of this epoch already trained
        if trained > 0:
            print_log(f'swinctl: resuming inside epoch {self._epoch + 1}: skipping its {trained} trained batches',
                      logger='current')
        else:
            restore_pending_rng()
        for idx, data_batch in enumerate(self.dataloader):
            if idx < trained:
                if idx == trained - 1:
                    restore_pending_rng()  # the next batch loads with the states it had in the first run
                continue
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


@LOOPS.register_module()
class IterBasedTrainLoop(MMEngineIterLoop):
    """MMEngine's iteration loop (which skips trained batches on resume) that also puts back the random states."""

    def run(self):
        iterator = self.dataloader_iterator
        loop = self

        class _RestoreAfterSkip:
            """MMEngine skips `_iter` batches with next() before training: restore once they are skipped."""

            def __init__(self):
                self.left = loop._iter

            def __next__(self):
                batch = next(iterator)
                self.left -= 1
                if self.left == 0:
                    restore_pending_rng()
                    loop.dataloader_iterator = iterator
                return batch

        if self._iter > 0:
            self.dataloader_iterator = _RestoreAfterSkip()
        else:
            restore_pending_rng()
        return super().run()
