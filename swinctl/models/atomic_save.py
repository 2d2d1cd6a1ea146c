"""Every checkpoint a job writes goes to a temporary name, is flushed and renamed (swinctl.job.checkpoints).

MMEngine saves every checkpoint -- CheckpointHook's periodic and best ones, SignalCheckpointHook's, a published
one -- through ``get_file_backend(path).put(bytes, path)``, and for a local path that is the backend registered as
'local'. Registering a LocalBackend whose `put` writes atomically covers them all, in every job, with no change to
the config. CheckpointHook then writes `last_checkpoint` with a bare ``open(path, 'w')`` (its module's only
`open`); an `open` defined in that module's namespace sends that one write through the same atomic writer.
"""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

from mmengine.fileio import io as mmengine_io
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.hooks import checkpoint_hook

from swinctl.job.checkpoints import LAST, write_atomic


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend, whose `put` never leaves a partial file under the name it writes."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(filepath)), exist_ok=True)
        write_atomic(filepath, obj)


class _AtomicText(io.StringIO):
    """A text file opened for writing that appears, whole, under its name when it is closed without an error."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def __exit__(self, kind, exc, tb):
        if kind is None:
            write_atomic(self.path, self.getvalue().encode())
        return super().__exit__(kind, exc, tb)


def _open(file, mode="r", *args, **kwargs):
    if mode == "w" and os.path.basename(str(file)) == LAST:
        return _AtomicText(file)
    return builtins.open(file, mode, *args, **kwargs)


def install_atomic_saves() -> None:
    """In this process, MMEngine's local writes and CheckpointHook's `last_checkpoint` become atomic (idempotent)."""
    register_backend("local", AtomicLocalBackend, force=True, prefixes="")
    for key, backend in list(mmengine_io.backend_instances.items()):  # made before this ran: make them again
        if type(backend) is LocalBackend:
            del mmengine_io.backend_instances[key]
    checkpoint_hook.open = _open
