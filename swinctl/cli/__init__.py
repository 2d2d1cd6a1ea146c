"""swinctl's command line: parses arguments, calls the modules that do the work, prints.

Nothing here imports torch or an OpenMMLab package at start: each verb imports what it needs when it runs, so
`swinctl --help` and `swinctl status` answer at once. `app` holds what every verb shares; each verb module
registers its commands on it and imports no other verb's module.
"""

from swinctl.cli import info, report, run, status, sweep  # noqa: F401  (each registers its verbs on `app`)
from swinctl.cli.app import app, console

__all__ = ["app", "console", "main"]

# `swinctl --help` lists the verbs in the order a user meets them, not the order their modules were imported.
_ORDER = ("run", "test", "sweep", "status", "logs", "cancel", "report", "recipes", "show", "doctor",
          "convert-checkpoint")
app.registered_commands.sort(key=lambda c: _ORDER.index(c.name or c.callback.__name__))


def main() -> None:  # pragma: no cover - console script entry point
    app()
