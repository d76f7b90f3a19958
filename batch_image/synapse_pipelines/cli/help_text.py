"""Command help as the terminal shows it: docstrings reflowed into paragraphs.

Typer's rich help keeps every line break of a docstring and then wraps the lines again at
the terminal's width, so a sentence broken at column 92 in the source shows as one long
and one short line. The commands' docstrings stay readable in the source; here each plain
paragraph is joined into one line before Typer wraps it. Indented lines (examples) and
list items keep their own lines.
"""

from __future__ import annotations

import inspect

import typer

__all__ = ["reflow", "reflow_commands"]

_ITEM_STARTS = ("- ", "* ")


def _is_item(line: str) -> bool:
    head = line.split(" ", 1)[0]
    return line.startswith(_ITEM_STARTS) or (head.endswith(".") and head[:-1].isdigit())


def reflow(text: str | None) -> str | None:
    """``text`` with the line breaks inside each plain paragraph replaced by spaces; an
    indented line after a list item continues it, any other indented line (an example
    command) and every list item keep their own line."""
    if not text:
        return text
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        item = False  # the last line belongs to a list item
        for line in paragraph.split("\n"):
            indented = line.startswith((" ", "\t"))
            if not lines or _is_item(line) or (indented and not item):
                lines.append(line.rstrip())
                item = _is_item(line)
            elif lines[-1].startswith((" ", "\t")) and not item:
                lines.append(line.rstrip())  # plain text after an example
            else:
                lines[-1] = f"{lines[-1]} {line.strip()}"
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def reflow_commands(app: typer.Typer) -> None:
    """Reflow the help and epilog of every command of ``app`` and of its sub-apps."""
    for info in app.registered_commands:
        info.help = reflow(info.help or inspect.getdoc(info.callback))
        info.epilog = reflow(info.epilog)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            reflow_commands(group.typer_instance)
