"""Checkpoint at the scheduler's signal, and resume from it to the same weights an uninterrupted run gets.

SLURM warns a job with USR2 before its time limit and stops it with SIGTERM when it preempts it. In a job
(`SWINCTL_SIGNAL_CHECKPOINT=1`, set by swinctl.job.task) either signal only raises a flag; `SignalCheckpointHook` saves
an iteration-exact checkpoint at the end of the current iteration -- with the random states of torch, numpy and
Python -- and the training exits with `EXIT_CHECKPOINTED`, so the requeued job resumes exactly there. Without
this, a requeue loses everything since the last periodic checkpoint, and a time limit shorter than the checkpoint
interval never progresses.

MMEngine resumes an epoch-based run at the start of the epoch it saved in, and restores no random state; its
iteration loop resumes by loading and dropping every batch trained before. The two loops below skip the trained
batches at the batch sampler instead (`ResumableBatchSampler`): it draws the same index batches as the
uninterrupted run -- same sampler order, same epoch -- and hands the data loader only those from the resumed one
on, so a job preempted late in a long epoch starts training again as fast as one preempted early. They then put
back the random states saved with the checkpoint, just before the next batch is loaded. With `num_workers=0` and
deterministic kernels the resumed run then computes bit for bit what the uninterrupted one would; with data-loader
workers the data order is exact but their augmentation draws are not.

In a distributed run each rank draws its own augmentations, so its random states differ from rank 0's: every
checkpoint holds all ranks' states (gathered when the checkpoint is saved) and each rank resumes with its own.
"""

from __future__ import annotations

import itertools
import os
import random
import signal

import numpy as np
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.dist import all_gather_object, all_reduce, get_rank, get_world_size, is_distributed
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import Registry
from mmengine.runner import EpochBasedTrainLoop as MMEngineEpochLoop
from mmengine.runner import IterBasedTrainLoop as MMEngineIterLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import DataLoader, IterableDataset, Sampler

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


class ResumableBatchSampler(Sampler):
    """A data loader's batch sampler whose next pass can start some batches in, skipping on the indices.

    The wrapped batch sampler (torch's BatchSampler, mmdet's AspectRatioBatchSampler, ...) makes its whole pass over
    the sampler's order (DefaultSampler: seed + epoch), so the batches are those of the uninterrupted run, but only
    those from the start position on reach the data loader: no image of a skipped batch is read, decoded or
    augmented. The loader's main process draws the batches and hands index lists to its workers, so the workers stay
    in step, and each rank skips the same number of its own batches.
    """

    def __init__(self, batch_sampler) -> None:
        self.batch_sampler = batch_sampler
        self._start = 0
        self._held = False

    def __getattr__(self, name: str):  # sampler, batch_size, drop_last: what MMEngine's hooks read through it
        if name == 'batch_sampler':  # (not yet set: unpickling)
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def hold(self) -> None:
        """Passes are empty until `start_next_pass_at`."""
        self._held = True

    def start_next_pass_at(self, batches: int) -> None:
        """The next pass (only) skips its first `batches` batches."""
        self._start, self._held = batches, False

    def __iter__(self):
        if self._held:
            return iter(())
        start, self._start = self._start, 0
        batches = iter(self.batch_sampler)
        for _ in itertools.islice(batches, start):  # indices only
            pass
        return batches


def _resumable(loader: DataLoader) -> ResumableBatchSampler | None:
    """`loader`'s batch sampler, wrapped (once) to start late; None where it has none (batch_size=None) or where
    its indices do not choose the data (an IterableDataset yields what it yields)."""
    if loader.batch_sampler is None or isinstance(loader.dataset, IterableDataset):
        return None
    if isinstance(loader.batch_sampler, ResumableBatchSampler):
        return loader.batch_sampler
    wrapped = ResumableBatchSampler(loader.batch_sampler)
    # DataLoader refuses a new batch sampler once built, since an iterator it already made would not see it: the
    # loops install this one before any iterator exists.
    object.__setattr__(loader, 'batch_sampler', wrapped)
    return wrapped


def _set_sampler_epoch(loader: DataLoader, epoch: int) -> None:
    """As MMEngine's _InfiniteDataloaderIterator does when it starts a new pass."""
    sampler = getattr(loader.batch_sampler, 'sampler', None)
    for candidate in (loader.sampler, sampler):
        if hasattr(candidate, 'set_epoch'):
            candidate.set_epoch(epoch)
            return


@LOOPS.register_module()
class EpochBasedTrainLoop(MMEngineEpochLoop):
    """MMEngine's epoch loop, resuming inside an epoch where a signal checkpoint was saved."""

    def __init__(self, runner, dataloader, *args, **kwargs) -> None:
        super().__init__(runner, dataloader, *args, **kwargs)
        self._batches = _resumable(self.dataloader)  # (no iterator of it exists yet)

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')  # (DistSamplerSeedHook: the sampler's epoch, hence its order)
        self.runner.model.train()
        length = len(self.dataloader)
        trained = max(self._iter - self._epoch * length, 0)  # batches of this epoch already trained
        if trained:
            print_log(f'swinctl: resuming inside epoch {self._epoch + 1}: its first {trained} of {length} batches '
                      'are trained; the sampler starts after them', logger='current')
        if trained >= length:  # saved after the epoch's last iteration: nothing is left to load
            restore_pending_rng()
        elif self._batches is None:  # no batch sampler that can start late: load and drop the trained batches
            if not trained:
                restore_pending_rng()
            for idx, data_batch in enumerate(self.dataloader):
                if idx >= trained:
                    self.run_iter(idx, data_batch)
                elif idx == trained - 1:
                    restore_pending_rng()  # the next batch loads with the states it had in the first run
        else:
            self._batches.start_next_pass_at(trained)
            if not trained:  # saved between epochs: this epoch's iterator draws its seed from the saved states
                restore_pending_rng()
            batches = iter(self.dataloader)
            if trained:  # saved inside the epoch, after its iterator was made: the next batch loads as it did
                restore_pending_rng()
            for idx, data_batch in enumerate(batches, start=trained):
                self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


class _FromResumedIteration:
    """Stands in for the iteration loop's data iterator until its first batch is asked for.

    MMEngine's IterBasedTrainLoop.run() calls next() once per trained batch to skip them, then once per batch it
    trains. At the first call (after the before_train hooks), this makes the real iterator, whose sampler starts at
    the resumed position, so those skipping calls load nothing; where the sampler's passes are not known (a sampler
    other than MMEngine's Default/InfiniteSampler) they load and drop the batches, as MMEngine does.
    """

    def __init__(self, loop: IterBasedTrainLoop, made) -> None:
        self.loop = loop
        self.made = made  # the iterator MMEngine's __init__ made
        self.real = None
        self.left = 0
        self.replay = False

    def __iter__(self):
        return self

    def __next__(self):
        loop = self.loop
        if self.real is None:
            self.real, self.replay = loop._start_iterator(self.made)
            self.left, self.made = loop._iter, None  # (an unused iterator's workers end with it)
        if not self.left:
            loop.dataloader_iterator = self.real
            return next(self.real)
        self.left -= 1
        batch = next(self.real) if self.replay else None
        if not self.left:
            if self.replay:
                restore_pending_rng()
            loop.dataloader_iterator = self.real
        return batch


@LOOPS.register_module()
class IterBasedTrainLoop(MMEngineIterLoop):
    """MMEngine's iteration loop, resuming with the sampler started at the resumed batch, and the random states."""

    def __init__(self, runner, dataloader, *args, **kwargs) -> None:
        if isinstance(dataloader, dict):  # built here as BaseLoop does, to wrap its batch sampler before MMEngine's
            # __init__ makes the loop's iterator (with workers, that prefetches batches at once)
            dataloader = runner.build_dataloader(
                dataloader, seed=runner.seed, diff_rank_seed=runner._randomness_cfg.get('diff_rank_seed', False))
        self._batches = _resumable(dataloader)
        if self._batches is not None:  # that first iterator must take no batch: an InfiniteSampler's stream cannot
            self._batches.hold()  # be rewound, and the resumed position is known only once the checkpoint is loaded
        super().__init__(runner, dataloader, *args, **kwargs)

    def _start_iterator(self, made) -> tuple:
        """The data iterator from batch `_iter` of the run on, and whether the trained batches must be loaded."""
        if self._batches is None:  # no batch sampler to start late: the iterator MMEngine made
            return made, True
        sampler = getattr(self._batches, 'sampler', None)
        if isinstance(sampler, InfiniteSampler):  # one stream over all iterations
            passes, start, replay = 0, self._iter, False
        elif isinstance(sampler, DefaultSampler):  # a pass per epoch, `len(dataloader)` batches each
            (passes, start), replay = divmod(self._iter, len(self.dataloader)), False
        else:
            passes, start, replay = 0, 0, self._iter > 0
        if self._iter and not replay:
            where = f'batch {start} of its pass {passes + 1}' if isinstance(sampler, DefaultSampler) else \
                f'batch {start} of its stream'
            print_log(f'swinctl: resuming at iteration {self._iter}: the sampler starts at {where}, after the '
                      'trained ones', logger='current')
        if passes and not start:  # saved at the end of a pass: the next pass's iterator draws from the saved states
            restore_pending_rng()
        _set_sampler_epoch(self.dataloader, passes)
        self._batches.start_next_pass_at(start)
        iterator = _InfiniteDataloaderIterator(self.dataloader)
        iterator._epoch = passes  # (the next pass sets the sampler's epoch from it)
        if not replay:
            restore_pending_rng()  # (a no-op where it was done above, or for a run from its start)
        return iterator, replay

    def run(self):
        self.dataloader_iterator = _FromResumedIteration(self, self.dataloader_iterator)
        return super().run()
