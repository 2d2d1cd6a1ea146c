"""Where jobs run: one `Backend` interface (submit, state, cancel, preview, adopt) and its implementations.

The rest of swinctl never branches on the executor's name: it asks `get(name)` for the backend a run records and
calls the interface. A new scheduler is a new module with a class registered under its name.
"""

from __future__ import annotations

from swinctl.backends.base import BACKENDS, Backend, Observed, Submitted, get, register, resolve

# The implementations register themselves on import; they import submitit only when they submit or look.
from swinctl.backends import local, slurm  # noqa: E402,F401  isort: skip

__all__ = ["BACKENDS", "Backend", "Observed", "Submitted", "get", "register", "resolve"]
