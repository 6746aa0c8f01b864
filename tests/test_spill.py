"""Base records past the memory budget wait in the spool file, and come back exactly."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import diff
from padiff_graph.run.spill import DEFAULT_BUDGET_MIB, READ_AHEAD, SLOT, SLOTS, Spill


def test_arrays_past_the_budget_go_to_the_spool_file_and_come_back_once() -> None:
    with Spill(budget=100) as spill:
        small = np.arange(10, dtype=np.float32)
        big = np.arange(1000, dtype=np.float64).reshape(10, 100)
        kept, written = spill.hold(small), spill.hold(big)
        assert kept.array is small and written.array is None and written.offset is not None
        again = spill.hold(big)  # the same array under a second key: written once
        assert again is written and written.readers == 2
        first, second = spill.take(written), spill.take(again)
        np.testing.assert_array_equal(first, big)
        assert first is second and written.array is None
        assert spill.take(kept) is small and spill.held == 0


def test_by_default_records_spill_only_past_what_spilling_holds_itself() -> None:
    """A spill holds its write buffers and its read-ahead: records smaller than those stay in memory."""
    assert DEFAULT_BUDGET_MIB * 2**20 >= SLOTS * SLOT + READ_AHEAD
    with Spill(budget=DEFAULT_BUDGET_MIB * 2**20) as spill:
        records = [spill.hold(np.ones(2**20, np.float32) * i) for i in range(30)]  # 120 MiB
        assert all(record.array is not None for record in records)
        assert [float(spill.take(record)[0]) for record in records] == [float(i) for i in range(30)]


def test_the_spool_file_has_no_name_so_nothing_is_left_behind(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    with Spill(budget=0) as spill:
        held = spill.hold(np.ones(100_000))
        assert spill.take(held).sum() == 100_000  # written and read back: the file is open
        assert list(tmp_path.iterdir()) == []  # unlinked the moment it was made; gone with its descriptor


def test_views_are_copied_at_once_so_later_changes_do_not_leak_in() -> None:
    live = np.zeros((64, 64), np.float32)
    with Spill(budget=float("inf")) as in_memory, Spill(budget=0) as on_disk:
        kept_here, kept_there = in_memory.hold(live[:, ::2]), on_disk.hold(live.T)  # strided views
        live += 1  # what an in-place op on the tensor would do
        assert not in_memory.take(kept_here).any() and not on_disk.take(kept_there).any()


def test_many_records_stream_through_bounded_writes_and_read_ahead_in_any_order() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n, dtype=np.float32) for n in (1, 1023, 4096, 100_000, 7, READ_AHEAD // 8)] * 3
    with Spill(budget=0) as spill:
        held = [spill.hold(array.copy()) for array in arrays]
        order = list(range(len(arrays)))
        order[2], order[9] = order[9], order[2]  # the raw model asks a little out of order
        for index in order:
            np.testing.assert_array_equal(spill.take(held[index]), arrays[index])


def test_blocks_that_direct_io_refuses_go_through_the_page_cache(monkeypatch) -> None:
    import errno
    import os

    from padiff_graph.run import spill as spill_module

    monkeypatch.setattr(spill_module, "_set_direct", lambda fd, on: on)  # as if the file were direct
    real_pwrite, refused = os.pwrite, []

    def pwrite(fd, data, offset):
        if not refused:  # the first block is refused, as O_DIRECT does for misaligned I/O
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    array = np.arange(5000, dtype=np.float32)
    with Spill(budget=0) as spill:
        held = spill.hold(array)
        np.testing.assert_array_equal(spill.take(held), array)
        assert refused == [0] and not spill._direct


def test_a_failing_spool_file_is_one_actionable_error(tmp_path, monkeypatch) -> None:
    from padiff_graph.run.spill import SpillError

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "missing"))
    with Spill(budget=0) as spill:
        held = spill.hold(np.ones(4))
        with pytest.raises(SpillError, match=r"cannot spill base records to .*missing.*--memory-budget"):
            spill.take(held)


def test_a_diff_with_everything_spilled_finds_the_same() -> None:
    inputs = [np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32) * 4]
    base = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    raw = paddle.nn.Sequential(paddle.nn.Linear(8, 16), paddle.nn.GELU(approximate=True), paddle.nn.Linear(16, 4))
    in_memory = diff(base, raw, inputs, memory_budget_mib=float("inf"))
    on_disk = diff(base, raw, inputs, memory_budget_mib=0)
    assert tuple(on_disk.first_divergence) == tuple(in_memory.first_divergence) == ("1", "1", "forward")
    assert [(c.base, c.stage, c.verdict) for c in on_disk.comparisons] == [
        (c.base, c.stage, c.verdict) for c in in_memory.comparisons
    ]
