"""A DDP wrapper for CPU process groups (see swinctl.job.cpu_dist)."""

from __future__ import annotations

from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm


class CPUDistributedDataParallel(MMDistributedDataParallel):
    """MMEngine's DDP wrapper for a model on CPU.

    MMEngine's runner always passes `device_ids=[LOCAL_RANK]`, which DDP rejects for a CPU module; a CPU module takes
    none. SyncBN has no CPU kernel, so it becomes plain BN (each task normalises its own batch).
    """

    def __init__(self, module, device_ids=None, **kwargs):
        super().__init__(module=revert_sync_batchnorm(module), **kwargs)
