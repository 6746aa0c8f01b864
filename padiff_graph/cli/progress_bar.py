"""The progress bar the CLI shows on stderr for long runs (rich.progress, cleared when done)."""

from __future__ import annotations

from threading import Lock

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class RichReporter:
    """A :class:`padiff_graph.core.progress.Reporter` drawing one line per running task."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._running = 0
        self._lock = Lock()  # the two models' steps may start and finish their tasks on two threads at once

    def start(self, description: str, total: int | None) -> object:
        with self._lock:
            if self._running == 0:
                self._progress.start()
            self._running += 1
            return self._progress.add_task(description, total=total)

    def advance(self, handle: object, steps: int) -> None:
        self._progress.advance(handle, steps)  # type: ignore[arg-type]

    def finish(self, handle: object) -> None:
        with self._lock:
            self._progress.remove_task(handle)  # type: ignore[arg-type]
            self._running -= 1
            if self._running == 0:
                self._progress.stop()
