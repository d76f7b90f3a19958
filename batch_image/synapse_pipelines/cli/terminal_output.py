"""Terminal output shared by the local science commands: consoles, progress, summaries.

Progress and notes go to stderr, so stdout carries a command's summary (or JSON) alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table


def err_console() -> Console:
    # created per command, not at import, so the terminal width is read when it is used
    return Console(stderr=True)


def out_console() -> Console:
    return Console()


def progress_display() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        transient=False,
    )


class TimedSteps:
    """Times named steps and shows each one on a rich progress display."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, description: str, total: int = 1) -> Iterator[Callable[..., Any]]:
        task = self.progress.add_task(description, total=total)
        start = time.perf_counter()

        def advance(*_: Any) -> None:
            self.progress.advance(task)

        yield advance
        self.timings[name] = time.perf_counter() - start
        self.progress.update(task, completed=total)


def summary_table(title: str, rows: Sequence[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # paths and URLs in full, never cut with an ellipsis
    for k, v in rows:
        table.add_row(k, v)
    return table
