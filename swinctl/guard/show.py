"""How deviations read in the terminal: one marked sentence each, wrapped whole at any width (rich only)."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

MARKS = {"warning": ("!", "bold yellow"), "scaled": ("~", "cyan"), "note": ("-", "dim")}
# what each mark means, in the legend line under the heading (only the marks shown)
LEGEND = {"!": "may change the result", "~": "changed, compensated", "-": "a note, not a change"}


def heading(found: list[dict], title: str = "against the published setting") -> str:
    """'2 deviations and 1 note against ...': every item shown is counted (a note is not a deviation)."""
    shown = [d for d in found if d.get("message")]
    notes = sum(1 for d in shown if d.get("severity") == "note")
    real = len(shown) - notes
    parts = [f"{real or 'no'} deviation{'s' if real != 1 else ''}"]
    if notes:
        parts.append(f"{notes} note{'s' if notes != 1 else ''}")
    return f"{' and '.join(parts)} {title}"


def deviations(found: list[dict], *, title: str = "against the published setting") -> Group:
    """`found` (swinctl.guard.check's dicts) as a heading, a one-line legend of the marks used and one
    hanging-indented line per item."""
    shown = [d for d in found if d.get("message")]
    real = [d for d in shown if d.get("severity") != "note"]
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=3, justify="right", no_wrap=True)
    grid.add_column(overflow="fold")
    used: list[str] = []
    for d in shown:
        mark, style = MARKS.get(str(d.get("severity")), ("!", "bold yellow"))
        used += [mark] if mark not in used else []
        grid.add_row(Text(mark, style=style), Text(str(d["message"]), style="dim" if mark == "-" else ""))
    parts: list = [Text(heading(found, title), style="bold yellow" if real else "bold green")]
    if used:  # one line at 80 columns with all three marks; "marks:" so that it does not read as one more item
        parts.append(Text("  marks: " + "  ".join(f"{m} {LEGEND[m]}" for m in "!~-" if m in used), style="dim"))
    return Group(*parts, grid)


def render_text(found: list[dict], width: int = 80) -> str:
    """Plain text of :func:`deviations` at `width` columns (for files and tests)."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(deviations(found))
    return buf.getvalue()
