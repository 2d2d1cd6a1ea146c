"""How deviations read in the terminal: one marked sentence each, wrapped whole at any width (rich only)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

MARKS = {"warning": ("!", "bold yellow"), "scaled": ("~", "cyan"), "note": ("-", "dim")}


def deviations(found: list[dict], *, title: str = "against the published setting") -> Group:
    """`found` (swinctl.guard.check's dicts) as a heading and one hanging-indented line per item."""
    shown = [d for d in found if d.get("message")]
    real = [d for d in shown if d.get("severity") != "note"]
    head = f"{len(real)} deviation{'s' if len(real) != 1 else ''} {title}" if real else \
        f"no deviations {title}"
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=3, justify="right", no_wrap=True)
    grid.add_column(overflow="fold")
    for d in shown:
        mark, style = MARKS.get(str(d.get("severity")), ("!", "bold yellow"))
        grid.add_row(Text(mark, style=style), Text(str(d["message"]), style="dim" if mark == "-" else ""))
    return Group(Text(head, style="bold yellow" if real else "bold green"), grid)


def render_text(found: list[dict], width: int = 80) -> str:
    """Plain text of :func:`deviations` at `width` columns (for files and tests)."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(deviations(found))
    return buf.getvalue()
