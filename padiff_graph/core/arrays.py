"""Copying and comparing host arrays of any strides at close to memory speed.

A weight copy writes transposed views (a Linear weight between torch and
paddle) into a tensor's own memory and reads it back to verify. numpy walks
a transposed array element by element across rows, one cache miss each
(0.1-0.2 GB/s here); moving it in small tiles, each of whose rows spans
whole cache lines on both sides, is 3-4x faster and needs no temporary the
size of the array.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import numpy as np

#: Tile of the last two axes (rows, columns): 256 x 64 float32 is 64 KiB, two fit in L2. Smaller
#: tiles (128 x 32, in L1) copy about as fast (within 6%), and the comparison, bound by numpy's
#: cost per call, runs 1.1-1.6x slower with them (transposes of 768 x 768 to 4096 x 4096).
TILE = (256, 64)

#: Elements compared at a time when both arrays are laid out alike (bounds the boolean temporary).
CHUNK = 1 << 20

#: Elements from which a tiled copy is shared with a helper thread, half the rows each (numpy lets go of
#: the GIL in its loops): 1.8x faster on two cores for BERT's weights, where one thread leaves memory idle.
SHARED_COPY = 1 << 20


def _strided(*arrays: np.ndarray) -> bool:
    """Whether a whole-array pass would walk one of ``arrays`` against its memory order."""
    return arrays[0].ndim >= 2 and not all(a.flags.c_contiguous for a in arrays)


def _tiles(shape: tuple[int, ...]) -> Iterator[tuple[Any, ...]]:
    """Tiles a band of rows at a time: the output of a copy is written in its memory order, page after page."""
    rows, columns = shape[-2:]
    for row in range(0, rows, TILE[0]):
        for column in range(0, columns, TILE[1]):
            yield (..., slice(row, row + TILE[0]), slice(column, column + TILE[1]))


def copy_into(out: np.ndarray, value: np.ndarray) -> None:
    """``out[...] = value`` (same shape; numpy's casting), tile by tile when either is strided."""
    if np.may_share_memory(out, value):
        value = value.copy()
    if not _strided(out, value):
        np.copyto(out, value, casting="unsafe")
        return
    rows = out.shape[-2]
    if out.size < SHARED_COPY or rows < 2 * TILE[0]:
        _copy_tiles(out, value)
        return
    half = rows // 2 // TILE[0] * TILE[0]
    upper, lower = (..., slice(0, half), slice(None)), (..., slice(half, None), slice(None))
    elsewhere = _helper().submit(_copy_tiles, out[upper], value[upper])
    try:
        _copy_tiles(out[lower], value[lower])
    finally:
        elsewhere.result()


def _copy_tiles(out: np.ndarray, value: np.ndarray) -> None:
    for index in _tiles(out.shape):
        np.copyto(out[index], value[index], casting="unsafe")


@cache
def _helper() -> ThreadPoolExecutor:
    """The thread that copies half of a large array beside this one (:func:`copy_into`)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="padiff_graph_copy")


def equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` hold the same bits (one dtype), or else equal values (NaN equals NaN).

    No temporary the size of the arrays is made: strided pairs are compared
    tile by tile, others in chunks.
    """
    if a.shape != b.shape:
        return False
    if a.dtype == b.dtype and a.dtype.itemsize in (1, 2, 4, 8):
        bits = np.dtype(f"u{a.dtype.itemsize}")
        a, b = a.view(bits), b.view(bits)  # exact, and skips the NaN bookkeeping of float comparisons
    same_nan = a.dtype.kind in "fc"
    if _strided(a, b):
        return all(np.array_equal(a[index], b[index], equal_nan=same_nan) for index in _tiles(a.shape))
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    return all(
        np.array_equal(flat_a[start : start + CHUNK], flat_b[start : start + CHUNK], equal_nan=same_nan)
        for start in range(0, flat_a.size, CHUNK)
    )
