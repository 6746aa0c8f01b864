"""``core.arrays``: strided copies and exact comparisons without array-sized temporaries; the weight copy uses them."""

from functools import partial

import numpy as np
import paddle
import pytest
import torch

import padiff_graph as pg
from padiff_graph.core import arrays
from padiff_graph.run import numerics
from padiff_graph.run.numerics import Mode, Tolerance

COPIES = [arrays.copy_into, arrays.copy_checked]


# the last two are large enough to be shared with the helper thread, half the rows each (odd sizes, a batch axis)
@pytest.mark.parametrize("copy", COPIES)
@pytest.mark.parametrize("shape", [(300, 70), (5, 130, 33), (7,), (1537, 1029), (3, 777, 600)])
def test_copy_into_a_transposed_view_gives_numpys_result(shape, copy) -> None:
    value = np.random.default_rng(0).standard_normal(shape[::-1]).T  # float64, strided
    out = np.zeros(shape, np.float32)
    assert copy(out, value) is not False  # copy_checked: each piece holds value as float32 holds it
    assert np.array_equal(out, value.astype(np.float32))
    assert arrays.equal(out, np.ascontiguousarray(value, dtype=np.float32))


@pytest.mark.parametrize("copy", COPIES)
@pytest.mark.parametrize("shape", [(300, 70), (1537, 1029)])
def test_copy_into_a_transposed_out_and_a_contiguous_copy_give_numpys_result(shape, copy) -> None:
    value = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    out = np.zeros(shape[::-1], np.float32).T  # written across its memory order: tiles the other way round
    assert copy(out, value) is not False
    assert np.array_equal(out, value)
    copied = arrays.contiguous(value.T)
    assert copied.flags.c_contiguous and np.array_equal(copied, value.T)
    assert arrays.contiguous(value) is value


@pytest.mark.parametrize("mode", [Mode.STRICT, Mode.MEAN])
def test_a_transposed_gradient_is_judged_as_its_contiguous_copy(mode: Mode, monkeypatch: pytest.MonkeyPatch) -> None:
    """Strict mode takes a transposed gradient piece by piece, each gathered in tiles, with no copy of it whole
    (``arrays.pieces``); mean mode, whose means sum in memory order, on a contiguous copy made in tiles (numpy
    walks a transposed array element by element across its rows: mean mode took 15 ms for BERT's 3072 x 768
    gradients, against 2). Either way the verdict is the contiguous copy's, to the last digit: the pieces are
    its chunks, which set the floor of the relative differences (zeros in the base), and they cross rows."""
    monkeypatch.setattr(numerics, "CHUNK", 1000)
    monkeypatch.setattr(arrays, "GATHERED", 3000)
    rng = np.random.default_rng(1)
    base = rng.standard_normal((768, 3072), dtype=np.float32)
    base[::7, ::5] = 0.0
    raw = base.T + rng.standard_normal((3072, 768), dtype=np.float32) * 1e-6
    raw[2000, 700] += 1e-2
    copied: list[tuple[int, ...]] = []  # whole contiguous copies of a strided array
    monkeypatch.setattr(numerics, "contiguous", partial(_recording_copies, arrays.contiguous, copied))
    tolerance = Tolerance.chosen(None, None, mode, ["float32"])
    strided = tolerance.verdict(base.T, raw, "float32", "float32")
    assert copied == ([] if mode is Mode.STRICT else [(3072, 768)])
    assert strided == tolerance.verdict(np.ascontiguousarray(base.T), raw, "float32", "float32")
    assert strided.max_abs == pytest.approx(1e-2, rel=1e-3)
    assert mode is Mode.MEAN or not strided.ok


def _recording_copies(original, copied: list[tuple[int, ...]], array: np.ndarray) -> np.ndarray:
    if not array.flags.c_contiguous:
        copied.append(array.shape)
    return original(array)


@pytest.mark.parametrize(
    ("shape", "transposed", "size"),
    [((40, 7), True, 9), ((40, 7), True, 70), ((3, 50), True, 4), ((40, 7), False, 9), ((4, 5, 6), True, 7)],
)
def test_pieces_are_the_contiguous_copys_chunks(shape, transposed: bool, size: int, monkeypatch) -> None:
    """Pieces that cross rows, rows longer than a piece, a contiguous array (views), rows of rows (copied whole).
    A transposed matrix is gathered into one buffer of at most ``GATHERED`` elements, reused piece after piece."""
    monkeypatch.setattr(arrays, "GATHERED", 30)
    array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape[::-1] if transposed else shape)
    array = array.T if transposed else array
    flat = np.ascontiguousarray(array).reshape(-1)
    pieces = list(arrays.pieces(array, size))  # each holds until the next is asked for: compared below, as taken
    taken = [piece.copy() for piece in arrays.pieces(array, size)]
    assert [list(piece) for piece in taken] == [list(flat[at : at + size]) for at in range(0, flat.size, size)]
    buffers = {id(piece.base) for piece in pieces}
    if transposed and len(shape) == 2:
        assert len(buffers) == 1 and all(piece.base.size <= max(30 // size, 1) * size for piece in pieces)
    if not transposed:
        assert all(np.shares_memory(piece, array) for piece in pieces)


def test_equal_is_bit_for_bit_within_a_dtype() -> None:
    a = np.arange(40_000, dtype=np.float32).reshape(200, 200)
    b = a.T.copy().T  # same values, other layout
    assert arrays.equal(a, b)
    b[199, 3] = np.nextafter(b[199, 3], np.float32(np.inf))
    assert not arrays.equal(a, b)
    assert not arrays.equal(np.zeros(3), np.zeros(4))
    assert not arrays.equal(np.array([0.0]), np.array([-0.0]))  # the bits differ
    assert arrays.equal(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))
    assert arrays.equal(np.array([1.0, np.nan]), np.array([1.0, np.nan], np.float32))  # values across dtypes


@pytest.mark.parametrize("shape", [(3, 5), (3, arrays.CHUNK + 7)])  # one piece, and pieces
def test_copy_checked_reads_back_what_it_wrote(shape) -> None:
    value = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    value[0, 1] = np.nan
    out = np.empty(shape, np.float32)
    assert arrays.copy_checked(out, value) and arrays.equal(out, value)
    memory = np.zeros(shape[1], np.float32)  # every row of this out is the same memory: row 0 does not hold
    aliased = np.lib.stride_tricks.as_strided(memory, shape=shape, strides=(0, 4), writeable=True)
    assert not arrays.copy_checked(aliased, value)
    assert np.array_equal(memory, value[-1], equal_nan=True)  # every piece was still written


def test_copy_into_overlapping_memory_reads_the_source_first() -> None:
    a = np.arange(16.0).reshape(4, 4)
    arrays.copy_into(a, a.T)
    assert np.array_equal(a, np.arange(16.0).reshape(4, 4).T)


def test_weights_land_in_the_raw_tensors_own_memory() -> None:
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(300, 200), torch.nn.Linear(200, 10))
    raw = paddle.nn.Sequential(paddle.nn.Linear(300, 200), paddle.nn.Linear(200, 10))
    before = {name: np.from_dlpack(p.detach()).ctypes.data for name, p in raw.named_parameters()}
    pg.assign_weights(base, raw)
    after = {name: np.from_dlpack(p.detach()).ctypes.data for name, p in raw.named_parameters()}
    assert after == before  # written in place: no new tensor, no intermediate copy
    assert np.array_equal(raw[0].weight.numpy(), base[0].weight.detach().numpy().T)
