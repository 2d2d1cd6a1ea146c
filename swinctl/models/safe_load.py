"""Checkpoints load as data, never as code: torch's weights-only unpickler plus the few types MMEngine saves.

A `.pth` is a pickle, and a full unpickle runs whatever the file asks for. Every checkpoint swinctl or a job of its
reads (a `--checkpoint` to test, `load_from`, a backbone's pretrained weights, the job's own resume) goes through
torch's weights-only loader: the job sets TORCH_FORCE_WEIGHTS_ONLY_LOAD=1, which also holds for loads that pass
`weights_only=False`, and importing `swinctl.models` (which every swinctl config imports) allows the types below.
They are what MMEngine 0.10 puts in its checkpoints' `meta` (its message hub's HistoryBuffer and the numpy arrays
and scalars inside), each a plain data container; anything else is refused with its name.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable

import torch

# "module:attribute" so a missing optional module (numpy 1 vs 2 paths) is skipped rather than an import error.
_MMENGINE_CHECKPOINT_TYPES = (
    "mmengine.logging.history_buffer:HistoryBuffer",
    "numpy:ndarray",
    "numpy:dtype",
    "numpy.core.multiarray:_reconstruct",
    "numpy.core.multiarray:scalar",
    "numpy._core.multiarray:_reconstruct",
    "numpy._core.multiarray:scalar",
    "numpy.dtypes:Float64DType",
    "numpy.dtypes:Float32DType",
    "numpy.dtypes:Int64DType",
    "numpy.dtypes:Int32DType",
    "numpy.dtypes:BoolDType",
    "numpy.dtypes:UInt8DType",
    "collections:OrderedDict",
    "collections:defaultdict",
    "builtins:set",
    "builtins:frozenset",
    "builtins:slice",
    "builtins:complex",
    "builtins:bytearray",
)


def _resolve(spec: str) -> object | None:
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


# HistoryBuffer keeps its statistics as functions of its class (HistoryBuffer.min, ...), which pickle references
# as getattr(HistoryBuffer, 'min'). getattr itself would reach any method of any allowed object (ndarray.tofile
# writes files), so `builtins.getattr` resolves to this, which answers exactly those four attributes.
_HISTORY_STATISTICS = ("min", "max", "current", "mean")


def _history_buffer_statistic(owner: object, name: str) -> object:
    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is HistoryBuffer and name in _HISTORY_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"refused getattr({getattr(owner, '__name__', type(owner).__name__)}, {name!r}): "
                                 "only HistoryBuffer's statistics are read from a checkpoint")


def safe_types() -> list[object]:
    """The non-tensor types a weights-only load accepts from MMEngine checkpoints."""
    found = (_resolve(spec) for spec in _MMENGINE_CHECKPOINT_TYPES)
    return [obj for obj in found if obj is not None] + [(_history_buffer_statistic, "builtins.getattr")]


_allowed = False


def allow_mmengine_checkpoints() -> None:
    """Let every weights-only load in this process read MMEngine's own checkpoints (idempotent)."""
    global _allowed
    if not _allowed:
        torch.serialization.add_safe_globals(safe_types())
        _allowed = True


def load(path, *, map_location: str | Callable = "cpu", mmap: bool = False):
    """torch.load with weights only and the MMEngine allowlist; raises what torch raises."""
    allow_mmengine_checkpoints()
    return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
