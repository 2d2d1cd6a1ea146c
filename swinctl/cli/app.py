"""What every verb shares: the app, the consoles, one-line errors, Ctrl-C and signal handling, the watch loop,
and the options several verbs take (defined once here, so no verb module imports another).

Only typer, rich and the standard library are imported here.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="swinctl",
    help="Train, sweep and report Swin Transformer detectors (MMDetection) and segmenters (MMSegmentation), "
    "locally or on SLURM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Generated demo datasets (COCO instances + panoptic, ADE20K, Cityscapes formats).",
                      no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    from rich.markup import escape  # the message quotes user input: `[unclosed` is not markup

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


START = "swinctl run maskrcnn-swin-t --smoke --wait"  # the first run to suggest where there is none yet


def no_runs_yet(root: Path) -> str:
    """What `status`, `report` and friends say where there is no run: where they looked and how to start one."""
    try:
        shown = f"./{root.relative_to(Path.cwd())}"
    except ValueError:
        shown = str(root)
    return f"no runs under {shown} yet: start one with `{START}`"


def print_data(text: str, lexer: str) -> None:
    """YAML or a config, whole: never wrapped or cut, piped or not. Highlighted on a terminal, where lines longer
    than it are left for the terminal to fold (copying them gives the line back); plain text anywhere else."""
    if not console.is_terminal:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    from rich.syntax import Syntax

    width = max((len(line) for line in text.splitlines()), default=0)
    console.print(Syntax(text, lexer, theme="ansi_dark", code_width=max(width, 1)), crop=False, soft_wrap=True)


class Guard:
    """Turn the project's own errors into one clear line and a non-zero exit."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit)):
            return False
        from swinctl.errors import UserError

        if isinstance(exc, UserError):
            fail(str(exc))
        if isinstance(exc, KeyError):
            fail(f"not found: {exc.args[0]}")
        return False


class Interrupts:
    """Ctrl-C in `run`, `test` or `sweep`: exit 130 with one line that says what was submitted (nothing, before the
    first submission starts), never a traceback."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if not isinstance(exc, KeyboardInterrupt):
            return False
        progress = sys.modules["swinctl.runs.submission"].progress if "swinctl.runs.submission" in sys.modules else None
        if progress is None:
            message = "interrupted: nothing submitted"
        elif progress == "submitted":
            message = "interrupted: what was submitted goes on; see `swinctl status`"
        else:
            message = "interrupted while submitting: `swinctl status` settles what reached the scheduler"
        err_console.print(f"\n[yellow]{message}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(130)


# Defaults that are not a value (an environment variable, "every run") are given as show_default strings: typer
# prints them as "[default: ...]" itself, where brackets written into the help would be read as rich markup.
RunsRoot = Annotated[Path | None, typer.Option("--runs-root", help="Where runs and the ledger live.",
                                                  show_default="$SWINCTL_RUNS or ./runs")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a recipe field or a config key: "
                                                     "dotted.key=value (YAML value); repeatable.")]
Executor = Annotated[str, typer.Option("--executor", "-e", help="local, slurm, or auto (SLURM when sbatch is found).")]
Wandb = Annotated[str, typer.Option("--wandb", help="W&B mode: auto (online if logged in), online, offline, disabled.")]
NoScaleLr = Annotated[bool, typer.Option("--no-scale-lr", help="Keep the recipe's learning rate when the total batch "
                                         "differs from the published one (default: MMEngine's linear rule).")]


def stopped_watching(what: str, selector: str, cancel: str | None = None) -> None:
    """Ctrl-C while watching: the jobs go on; say so and how to get back to them (`cancel`: what `swinctl cancel`
    takes to stop them, when not `selector`)."""
    watch = " ".join(filter(None, ("swinctl status", selector, "--watch")))
    console.print(f"\n[yellow]stopped watching[/] {what}: it goes on. [dim]{watch} to watch again, swinctl cancel "
                  f"{cancel or selector} to stop it[/]")
    raise typer.Exit(130)


class EndOnSignals:
    """While a live display hides the cursor: SIGTERM and SIGHUP end the process through the display's exit (the
    cursor shown again, the terminal as it was), with the signal's exit status 128+N."""

    SIGNALS = ("SIGTERM", "SIGHUP")

    def __enter__(self):
        import signal

        def end(signum, frame):
            raise SystemExit(128 + signum)

        self._previous = {}
        for name in self.SIGNALS:
            number = getattr(signal, name, None)
            if number is not None:
                self._previous[number] = signal.signal(number, end)
        return self

    def __exit__(self, kind, exc, tb):
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)
        return False


def watch_until_done(snapshot, render, active, *, what: str, selector: str, interval: float = 2.0,
                     cancel: str | None = None) -> None:
    """Redraw `render(snapshot())` every `interval` s until `active(rows)` is false (every `--watch` and `--wait`
    table). Ctrl-C ends the watching only; SIGTERM and SIGHUP end it with the terminal restored."""
    from rich.live import Live

    try:
        rows = snapshot()
        with EndOnSignals(), Live(render(rows), console=console, refresh_per_second=1) as live:
            while active(rows):
                time.sleep(interval)
                rows = snapshot()
                live.update(render(rows))
    except KeyboardInterrupt:
        stopped_watching(what, selector, cancel)




# Options several verbs share (help and spelling written once).
Many = list[str] | None
Smoke = Annotated[bool, typer.Option("--smoke", help="Tiny model and schedule on generated demo data.")]
Wait = Annotated[bool, typer.Option("--wait", "-w", help="Follow progress until the run ends.")]
Wide = Annotated[bool, typer.Option("--wide", help="Full run ids and every column, however wide.")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output (full run ids).")]


def resource_overrides(gpus, gpus_per_node, nodes, partition, time_limit) -> list[str]:
    """--gpus/--gpus-per-node/--nodes/--partition/--time as the recipe overrides they stand for."""
    pairs = [("gpus", gpus), ("gpus_per_node", gpus_per_node), ("nodes", nodes), ("partition", partition),
             ("time_limit", time_limit)]
    out = [f"resources.{k}={v}" for k, v in pairs if v is not None]
    if gpus is not None and gpus_per_node is None:
        out.append(f"resources.gpus_per_node={min(gpus, 8) if nodes is None else -(-gpus // nodes)}")
    return out
