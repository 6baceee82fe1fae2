"""Rich progress bars that stay quiet when output is not a terminal-like stream."""

from __future__ import annotations

import os

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def progress_bar(transient: bool = False) -> Progress:
    """A progress bar on stderr; MTEDGE_NO_PROGRESS=1 hides it (tests, logs)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=console, transient=transient,
                    disable=os.environ.get("MTEDGE_NO_PROGRESS") == "1")
