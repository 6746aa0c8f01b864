"""Process-level helpers: the garbage collector paused for large models, two models' work run at once, the
tool's helper threads behind the model on the main thread."""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import copy_context
from functools import cache
from typing import TypeVar

T = TypeVar("T")


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


def run_sides(run_base: Callable[[], T], run_raw: Callable[[], T], beside: str | None) -> tuple[T, T]:
    """``run_base()`` then ``run_raw()``; with ``beside`` (``"base"`` or ``"raw"``), that one on a worker thread
    while the other runs here (:func:`padiff_graph.frameworks.worker_side` says which).

    Either way the base side's error is the one raised when both fail, as if they ran one after the other;
    neither is left running when this returns. Called on the worker thread itself, it runs one after the other.
    """
    if beside is None or threading.current_thread().name.startswith(_WORKER):
        return run_base(), run_raw()
    worker, here = (run_base, run_raw) if beside == "base" else (run_raw, run_base)
    elsewhere = _side_runner().submit(copy_context().run, worker)  # the progress reporter goes along
    here_side = "raw" if beside == "base" else "base"
    errors: dict[str, BaseException] = {}
    results: dict[str, T] = {}
    try:
        results[here_side] = here()
    except BaseException as error:  # re-raised below, once the worker is done too
        errors[here_side] = error
    try:
        results[beside] = elsewhere.result()
    except BaseException as error:
        errors[beside] = error
    for side in ("base", "raw"):
        if side in errors:
            raise errors[side]
    return results["base"], results["raw"]


_WORKER = "padiff_graph_side"


@cache
def _side_runner() -> ThreadPoolExecutor:
    """The worker thread one model's work runs on beside the other's (:func:`run_sides`)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=_WORKER, initializer=in_background)


#: How many nice levels below the calling thread the tool's helper threads run. Where the cores are short
#: (two here: the paddle step on the main thread, the torch step beside it, the comparisons), the scheduler
#: then keeps the main thread's model on its core, and the helpers take what it leaves idle: the 2-layer BERT's
#: diff 200 -> 189 ms (median of 12 runs each); with cores to spare nothing changes.
BACKGROUND_NICENESS = 10


def in_background() -> None:
    """Lower the calling thread's scheduling priority by :data:`BACKGROUND_NICENESS` (Linux, where each thread
    has its own nice level; threads it starts inherit it); elsewhere, or where not allowed, nothing."""
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness + BACKGROUND_NICENESS))
    except OSError:
        pass  # the threads keep the process's priority
