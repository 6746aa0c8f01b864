"""Base records past the memory budget wait in files, and come back exactly."""

import numpy as np
import paddle
import torch

from padiff_graph import diff
from padiff_graph.spill import OnDisk, Spill


def test_arrays_past_the_budget_go_to_files_and_come_back_once() -> None:
    spill = Spill(budget=100)
    small, big = np.arange(10, dtype=np.float32), np.arange(1000, dtype=np.float64).reshape(10, 100)
    kept, written = spill.hold(small), spill.hold(big)
    assert kept is small and isinstance(written, OnDisk) and written.path.exists()
    again = spill.hold(big)  # the same array under a second key: written once
    assert again is written and written.readers == 2
    first, second = spill.take(written), spill.take(again)
    np.testing.assert_array_equal(first, big)
    assert first is second and not written.path.exists()
    assert spill.take(kept) is small and spill.held == 0
    spill.close()


def test_close_removes_what_nobody_read() -> None:
    spill = Spill(budget=0)
    written = spill.hold(np.ones(4))
    assert isinstance(written, OnDisk)
    folder = written.path.parent
    spill.close()
    assert not folder.exists()


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
