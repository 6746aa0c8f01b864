"""A small progress hook for long runs: export of large models, diffs, multi-step runs, dumps.

Library code announces work with :func:`task` and advances it; nothing is
shown unless a reporter is installed with :func:`reporting` (the CLI installs
a rich progress bar on stderr, but not under ``--quiet`` or ``--json``). The
reporter sits in a context variable, so threads and nested runs do not mix.

Example::

    with task("comparing layers", total=len(pairs)) as advance:
        for pair in pairs:
            ...
            advance()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class Reporter(Protocol):
    """Receives the tasks of a run (see :class:`padiff_graph.cli.progress_bar.RichReporter`)."""

    def start(self, description: str, total: int | None) -> object:
        """Begin a task (``total`` None: unknown length); returns a handle for the calls below."""

    def advance(self, handle: object, steps: int) -> None: ...

    def finish(self, handle: object) -> None: ...


Advance = Callable[..., None]
_reporter: ContextVar[Reporter | None] = ContextVar("padiff_graph_progress", default=None)


@contextmanager
def reporting(reporter: Reporter | None) -> Iterator[None]:
    """Send the tasks started inside the block to ``reporter`` (None: show nothing)."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)


@contextmanager
def task(description: str, total: int | None = None) -> Iterator[Advance]:
    """A unit of work; the block gets ``advance(steps=1)`` to call as it goes."""
    reporter = _reporter.get()
    if reporter is None:
        yield _nothing
        return
    handle = reporter.start(description, total)

    def advance(steps: int = 1) -> None:
        reporter.advance(handle, steps)

    try:
        yield advance
    finally:
        reporter.finish(handle)


def _nothing(steps: int = 1) -> None:
    """Advance when no reporter listens."""
