"""Models built without memory: the 7B-shaped LLaMA pair and the mixture-of-experts pair."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "scale"))
import llama
import moe

from padiff_graph import suggest_map


def test_llama_7b_shapes_map_without_memory() -> None:
    layer_map = suggest_map(llama.base(), llama.raw())
    got = {pair.base: pair.raw for pair in layer_map.pairs}
    assert {base: got.get(base) for base in llama.EXPECTED_PAIRS} == llama.EXPECTED_PAIRS
    (head,) = [pair for pair in layer_map.pairs if pair.base == "lm_head"]
    assert [t.describe() for t in head.tensors] == ["weight -> weight: transpose"]


def test_moe_experts_map_and_same_shaped_projections_are_ambiguous_without_a_run() -> None:
    layer_map = suggest_map(moe.base(moe.TINY), moe.raw(moe.TINY))
    got = {pair.base: pair.raw for pair in layer_map.pairs}
    expected = moe.expected_pairs(moe.TINY)
    assert {base: got.get(base) for base in expected} == expected
    ambiguous = {pair.base.rpartition(".")[2] for pair in layer_map.pairs if pair.candidates}
    assert ambiguous == {"w1", "w3"}  # same shape, unrelated names: only call order can tell


def test_moe_call_order_settles_the_projections() -> None:
    tokens = {"tokens": np.array([[1, 2, 3]], dtype=np.int64)}
    layer_map = suggest_map(moe.base(moe.TINY, meta=False), moe.raw(moe.TINY, meta=False), tokens)
    got = {pair.base: pair.raw for pair in layer_map.pairs}
    expected = moe.expected_pairs(moe.TINY)
    assert {base: got.get(base) for base in expected} == expected
    assert not [pair for pair in layer_map.pairs if pair.candidates]


@pytest.mark.parametrize("config", [moe.Config(layers=2, experts=64)], ids=["2x64-experts"])
def test_many_identical_experts_pair_by_name(config) -> None:
    layer_map = suggest_map(moe.base(config), moe.raw(config))
    got = {pair.base: pair.raw for pair in layer_map.pairs}
    expected = moe.expected_pairs(config)
    assert {base: got.get(base) for base in expected} == expected
