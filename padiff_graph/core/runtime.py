"""Process-level helpers for large models."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Suspend Python's cyclic garbage collector, then restore its previous state.

    Exporting and matching a 20,000-layer tree allocates millions of small
    objects; each automatic collection rescans the whole heap, which made the
    work grow quadratically. Nothing allocated there forms cycles that must be
    reclaimed before it ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
