"""What every verb shares: the app, the consoles, one-line errors, Ctrl-C and signal handling, the watch loop,
and the options several verbs take (defined once here, so no verb module imports another).

Only typer, rich and the standard library are imported here.
"""

from __future__ import annotations

import sys
import time
import typing
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# ---------------------------------------------------------------------------------------------- how --help reads
# typer's help writes a type after every parameter: `<bool>` after a flag (read as `--smoke true`), `<list[str]>`,
# `<int range>`, and `<str>` where the values are a fixed set. Here a flag is just its name, a value is a word (TEXT,
# INTEGER, PATH; a repeatable option's help says so), a fixed set is listed ([auto|local|slurm]), and positionals
# are upper-case words written alike in the usage line and the table (RECIPE, [RUN|SWEEP|RECIPE]...).

_WORDS = {str: "TEXT", int: "INTEGER", float: "FLOAT"}


def _choices(param) -> list[str] | None:
    choices = param.type_descriptor.choices
    return None if choices is None else [str(getattr(c, "value", c)) for c in choices]


def _value_word(param) -> str:
    desc = param.type_descriptor
    annotation = desc.annotation
    if desc.is_list:
        (annotation,) = typing.get_args(annotation)
    if desc.is_path or annotation is Path:
        return "PATH"
    return _WORDS.get(annotation, "VALUE")


def _check_choice(param, ctx, value):
    """A value outside a fixed set: one line that names the option, the value and the choices (typer's own
    message is a pydantic-style 'Value error, ...')."""
    choices = _choices(param)
    for one in value if isinstance(value, (list, tuple)) else [value]:
        if choices is not None and one is not None and str(getattr(one, "value", one)) not in choices:
            from typer._click.exceptions import UsageError  # (typer vendors click)

            raise UsageError(f"{param.human_name} {one}: choose one of {', '.join(choices)}", ctx=ctx)


class _Option(TyperOption):
    @property
    def human_name(self) -> str:
        return max(self.opts, key=len)

    def display_type_rich(self, ctx) -> str | None:
        if self.is_flag:
            return None
        if self.metavar is not None:
            return self.metavar
        choices = _choices(self)
        return f"[{' | '.join(choices)}]" if choices else _value_word(self)

    def process_value(self, ctx, value):
        _check_choice(self, ctx, value)
        return super().process_value(ctx, value)


class _Argument(TyperArgument):
    @property
    def human_name(self) -> str:
        return self.display_name_raw

    @property
    def display_name_raw(self) -> str:  # the usage line, the table and "Missing argument 'RECIPE'"
        return self._word

    def display_type_rich(self, ctx) -> str | None:
        choices = _choices(self)
        return f"[{' | '.join(choices)}]" if choices else None  # the name says what it is

    def _usage_display_name(self) -> str:
        name = self._word if self.required else f"[{self._word}]"
        return name + ("..." if self.nargs != 1 else "")

    def process_value(self, ctx, value):
        _check_choice(self, ctx, value)
        return super().process_value(ctx, value)


def _restyle(params: list) -> list:
    """Give each parameter the help display above (the classes add behaviour only, no state but the word)."""
    for param in params:
        if type(param) is TyperOption:
            param.__class__ = _Option
        elif type(param) is TyperArgument:
            # its word once: the metavar given, else the name (`run_ids` -> RUN_IDS); the table adds "..." itself
            param._word = param.metavar or param.name.strip("_").upper()
            param.metavar = None
            param.__class__ = _Argument
    return params


def _one_line(exc) -> None:
    """A usage error (an unknown option, a missing argument, a value outside its choices) as the project's other
    errors read: one `error:` line, exit 2, not typer's boxed panel."""
    message = exc.format_message().strip().rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f"; see `{ctx.command_path} --help`"
    err_console.print("[bold red]error:[/] ", end="", highlight=False)
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


class _UsageErrors:
    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from typer._click.exceptions import ClickException, NoArgsIsHelpError

        if isinstance(exc, ClickException) and not isinstance(exc, NoArgsIsHelpError):  # (that one is the help)
            _one_line(exc)
        return False


class Command(TyperCommand):
    def get_params(self, ctx):
        return _restyle(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx):
        return _restyle(super().get_params(ctx))

    def make_context(self, *args, **kwargs):
        with _UsageErrors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _UsageErrors():  # (the command's own arguments are parsed in here)
            return super().invoke(ctx)


class Typer(typer.Typer):
    """Every command of swinctl with the help display and the one-line usage errors above."""

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or Command, **kwargs)


app = Typer(
    cls=Group,
    name="swinctl",
    help="Train, sweep and report Swin Transformer detectors (MMDetection) and segmenters (MMSegmentation), "
    "locally or on SLURM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = Typer(cls=Group, help="Generated demo datasets (COCO instances + panoptic, ADE20K, Cityscapes formats).",
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
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a recipe field "
                                                     "or a config key (dotted.key=value, a YAML value); repeatable.")]
# Fixed sets of values are Literals, so that --help lists them and a value outside one is a usage error; each
# equals the list its library module checks against (tests/test_cli.py holds them equal), which is not imported
# here to keep the start light.
Executor = Annotated[Literal["auto", "local", "slurm"], typer.Option(
    "--executor", "-e", help="Where the job runs: auto is SLURM when sbatch is found, else local.")]
Wandb = Annotated[Literal["auto", "online", "offline", "disabled"], typer.Option(
    "--wandb", help="W&B mode: auto is online if logged in, else offline.")]
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
