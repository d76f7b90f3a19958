"""Command help as the terminal shows it: docstrings reflowed into paragraphs, option names
whole, flags marked as flags.

Typer's rich help keeps every line break of a docstring and then wraps the lines again at
the terminal's width, so a sentence broken at column 92 in the source shows as one long
and one short line. The commands' docstrings stay readable in the source; here each plain
paragraph is joined into one line before Typer wraps it. Indented lines (examples) and
list items keep their own lines.

:func:`install_help_layout` changes two things of Typer's rich help (typer is pinned below
1.0 in pyproject.toml; ``tests/test_cli_help.py`` pins the result at 80 columns):

- the options table shrank every column alike on a narrow terminal, so at 80 columns
  ``--presynaptic-channel`` showed as ``--presynaptic-chann…``: only the help column
  wraps now (click's ``max_content_width`` does not reach rich's tables);
- a flag's type column said ``<bool>``, which reads as "takes true/false", but
  ``--keep-server true`` is an error: it says ``flag`` (the names column shows the
  ``--no-...`` form where there is one).
"""

from __future__ import annotations

import inspect
from typing import Any

import typer
import typer.core
import typer.rich_utils
from rich.table import Table

__all__ = ["FLAG_METAVAR", "install_help_layout", "reflow", "reflow_commands"]

#: What the help's type column shows for an option that takes no value.
FLAG_METAVAR = "flag"

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


class _WholeNamesTable(Table):
    """A table whose columns, when its first row creates them, do not wrap, except the last
    two (the type, e.g. ``<int range> [0<=x<=8]``, and the help text): option names are
    never cut with an ellipsis."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        if not self.columns:
            for index in range(len(renderables)):
                self.add_column(no_wrap=index < len(renderables) - 2)
        super().add_row(*renderables, **kwargs)


_display_type_rich = typer.core.TyperOption.display_type_rich


def _flag_display_type(self: typer.core.TyperOption, ctx: Any) -> str | None:
    if self.is_flag and self.metavar is None and not self.count:
        return FLAG_METAVAR
    return _display_type_rich(self, ctx)


def install_help_layout() -> None:
    """Whole option names and ``flag`` for flags in every command's help (idempotent)."""
    typer.rich_utils.Table = _WholeNamesTable  # type: ignore[attr-defined,misc]
    typer.core.TyperOption.display_type_rich = _flag_display_type  # type: ignore[method-assign]
