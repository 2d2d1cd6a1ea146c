"""swinctl's models, registered in the ``swinctl`` scope under MMEngine's root MODELS registry.

MMDet and MMSeg each register their own ``SwinTransformer``; a config selects ours with the scoped name
``type='swinctl.SwinTransformer'`` after ``custom_imports=dict(imports=['swinctl.models'])``. Their MODELS registries
are children of MMEngine's root, which resolves the ``swinctl.`` prefix to this child registry. Importing this package
needs torch, mmengine and timm, not mmdet/mmseg/mmcv.
"""

from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

from .atomic_save import install_atomic_saves
from .preemption import (
                          HOOKS,
                          LOOPS,
                          EpochBasedTrainLoop,
                          IterBasedTrainLoop,
                          SignalCheckpointHook,
                          install_signal_handlers,
)
from .safe_load import allow_mmengine_checkpoints
from .swin import SwinTransformer
from .wrappers import CPUDistributedDataParallel

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='swinctl', locations=['swinctl.models'])
MODELS.register_module(module=SwinTransformer)
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope='swinctl',
                          locations=['swinctl.models'])
MODEL_WRAPPERS.register_module(module=CPUDistributedDataParallel)
# Every swinctl config imports this package, so jobs read MMEngine's checkpoints weights-only (safe_load).
allow_mmengine_checkpoints()
# Every checkpoint a job writes, and last_checkpoint, goes to a temporary name and is renamed (atomic_save).
install_atomic_saves()
# In a job, USR2/SIGTERM then ask for a checkpoint at the end of the iteration (preemption.SignalCheckpointHook).
install_signal_handlers()

__all__ = ['MODELS', 'MODEL_WRAPPERS', 'HOOKS', 'LOOPS', 'SwinTransformer', 'CPUDistributedDataParallel',
           'SignalCheckpointHook', 'EpochBasedTrainLoop', 'IterBasedTrainLoop']
