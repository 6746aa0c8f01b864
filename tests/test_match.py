"""The matcher on tiny literal trees: exact mappings, no frameworks involved."""

import pytest
from conftest import literal_tree

from padiff_graph.errors import LayerMapError
from padiff_graph.match import match_trees

LIN = [("weight", (16, 8)), ("bias", (16,))]
LIN_PADDLE = [("weight", (8, 16)), ("bias", (16,))]  # paddle stores Linear weights as [in, out]
SQUARE = [("weight", (8, 8)), ("bias", (8,))]


def pairs(layer_map) -> dict[str, str]:
    return {pair.base: pair.raw for pair in layer_map.pairs}


def test_identical_trees_match_whole() -> None:
    spec = [("", "MyNet"), ("fc", "Linear", LIN), ("act", "ReLU"), ("out", "Linear", SQUARE)]
    paddle_spec = [("", "MyNet"), ("fc", "Linear", LIN_PADDLE), ("act", "ReLU"), ("out", "Linear", SQUARE)]
    layer_map = match_trees(literal_tree(spec), literal_tree(paddle_spec, "paddle"))
    assert pairs(layer_map) == {"": "", "fc": "fc", "act": "act", "out": "out"}
    assert layer_map.unmatched_base == layer_map.unmatched_raw == []
    assert all(not pair.candidates for pair in layer_map.pairs)


def test_reordered_same_name_siblings() -> None:
    base = literal_tree([("", "MyNet"), ("a", "Linear", SQUARE), ("b", "Linear", SQUARE)])
    raw = literal_tree([("", "MyNet"), ("b", "Linear", SQUARE), ("a", "Linear", SQUARE)])
    layer_map = match_trees(base, raw)
    assert pairs(layer_map) == {"": "", "a": "a", "b": "b"}
    assert not any(pair.candidates for pair in layer_map.pairs)


def test_renamed_same_shaped_siblings_are_ambiguous_without_call_order() -> None:
    base = literal_tree([("", "MyNet"), ("proj_a", "Linear", SQUARE), ("proj_b", "Linear", SQUARE)])
    raw = literal_tree([("", "MyNet"), ("second", "Linear", SQUARE), ("first", "Linear", SQUARE)])
    layer_map = match_trees(base, raw)
    ambiguous = {pair.base: pair.candidates for pair in layer_map.pairs if pair.candidates}
    assert set(ambiguous) == {"proj_a", "proj_b"}
    assert ambiguous["proj_a"] in (("first",), ("second",))


def test_call_order_settles_renamed_siblings() -> None:
    base = literal_tree(
        [("", "MyNet"), ("proj_a", "Linear", SQUARE), ("proj_b", "Linear", SQUARE)],
        call_order=["", "proj_a", "proj_b"],
    )
    raw = literal_tree(
        [("", "MyNet"), ("second", "Linear", SQUARE), ("first", "Linear", SQUARE)],
        "paddle",
        call_order=["", "first", "second"],
    )
    layer_map = match_trees(base, raw)
    assert pairs(layer_map) == {"": "", "proj_a": "first", "proj_b": "second"}
    assert not any(pair.candidates for pair in layer_map.pairs)


def test_wrappers_are_contracted_and_reported_unmatched() -> None:
    base = literal_tree(
        [
            ("", "MyNet"),
            ("block", "MyBlock"),
            ("block.fc", "Linear", LIN),
            ("block.ln", "LayerNorm", [("weight", (16,))]),
        ]
    )
    raw = literal_tree(
        [
            ("", "MyNet"),
            ("block", "MyWrapper"),
            ("block.inner", "MyBlock"),
            ("block.inner.fc", "Linear", LIN),
            ("block.inner.ln", "LayerNorm", [("weight", (16,))]),
        ]
    )
    layer_map = match_trees(base, raw)
    assert pairs(layer_map)["block.fc"] == "block.inner.fc"
    assert pairs(layer_map)["block"] == "block.inner"
    assert layer_map.unmatched_raw == ["block"]


def test_extra_layer_is_never_force_matched() -> None:
    base = literal_tree(
        [
            ("", "MyNet"),
            ("enc", "Linear", LIN),
            ("aux", "Linear", [("weight", (4, 16))]),
            ("head", "Linear", [("weight", (3, 16))]),
        ]
    )
    raw = literal_tree([("", "MyNet"), ("enc", "Linear", LIN), ("head", "Linear", [("weight", (3, 16))])])
    layer_map = match_trees(base, raw)
    assert pairs(layer_map) == {"": "", "enc": "enc", "head": "head"}
    assert layer_map.unmatched_base == ["aux"]


def test_parameter_pairs_with_embedding_child() -> None:
    base = literal_tree([("", "MyDecoder", [("query_embed", (10, 4))]), ("proj", "Linear", [("weight", (4, 4))])])
    raw = literal_tree(
        [
            ("", "MyDecoder"),
            ("proj", "Linear", [("weight", (4, 4))]),
            ("query_embed", "Embedding", [("weight", (10, 4))]),
        ],
        "paddle",
    )
    layer_map = match_trees(base, raw)
    assert ("query_embed", "query_embed.weight", "identity") in [
        (t.base, t.raw, t.transform.op) for t in layer_map.pair_for_base("").tensors
    ]
    assert layer_map.unmatched_raw == []


def test_flat_against_nested_blocks() -> None:
    conv = lambda cin, cout: [("weight", (cout, cin, 3, 3))]  # noqa: E731
    bn = lambda c: [("weight", (c,)), ("bias", (c,))]  # noqa: E731
    base = literal_tree(
        [
            ("", "MyNet"),
            ("features", "Sequential"),
            ("features.0", "Conv2d", conv(3, 8)),
            ("features.1", "BatchNorm2d", bn(8)),
            ("features.2", "ReLU"),
            ("features.3", "Conv2d", conv(8, 16)),
            ("features.4", "BatchNorm2d", bn(16)),
            ("features.5", "ReLU"),
        ]
    )
    raw = literal_tree(
        [
            ("", "MyNet"),
            ("stem", "MyConvBn"),
            ("stem.conv", "Conv2d", conv(3, 8)),
            ("stem.bn", "BatchNorm2d", bn(8)),
            ("stem.act", "ReLU"),
            ("stage1", "MyConvBn"),
            ("stage1.conv", "Conv2d", conv(8, 16)),
            ("stage1.bn", "BatchNorm2d", bn(16)),
            ("stage1.act", "ReLU"),
        ]
    )
    layer_map = match_trees(base, raw)
    assert {k: v for k, v in pairs(layer_map).items() if k} == {
        "features.0": "stem.conv",
        "features.1": "stem.bn",
        "features.2": "stem.act",
        "features.3": "stage1.conv",
        "features.4": "stage1.bn",
        "features.5": "stage1.act",
    }
    assert layer_map.unmatched_base == ["features"]
    assert sorted(layer_map.unmatched_raw) == ["stage1", "stem"]


def test_linear_layout_tells_up_from_down_projection() -> None:
    """torch Linear(8, 16) is [16, 8]; paddle's Linear(16, 8) is also [16, 8] but the other layer."""
    base = literal_tree(
        [("", "MyNet"), ("up", "Linear", [("weight", (16, 8))]), ("down", "Linear", [("weight", (8, 16))])]
    )
    raw = literal_tree(
        [("", "MyNet"), ("a", "Linear", [("weight", (16, 8))]), ("b", "Linear", [("weight", (8, 16))])], "paddle"
    )
    assert pairs(match_trees(base, raw)) == {"": "", "up": "b", "down": "a"}


def test_torch_paddle_linear_is_transposed_even_when_square() -> None:
    base = literal_tree([("", "MyNet"), ("fc", "Linear", SQUARE)])
    raw = literal_tree([("", "MyNet"), ("fc", "Linear", SQUARE)], "paddle")
    (pair,) = [p for p in match_trees(base, raw).pairs if p.base == "fc"]
    assert [t.describe() for t in pair.tensors] == ["weight -> weight: transpose", "bias -> bias"]
    assert pair.conversion == "linear-transpose"


def test_pinned_pairs_win_and_the_layers_inside_meet() -> None:
    block = [("fc", "Linear", SQUARE), ("act", "ReLU")]
    spec = [("", "MyNet"), ("enc", "MyBlock"), *[(f"enc.{p}", *rest) for p, *rest in block]]
    spec += [("dec", "MyBlock"), *[(f"dec.{p}", *rest) for p, *rest in block]]
    layer_map = match_trees(literal_tree(spec), literal_tree(spec), pinned=[("enc", "dec"), ("dec", "enc")])
    assert pairs(layer_map) == {
        "": "",
        "enc": "dec",
        "enc.fc": "dec.fc",
        "enc.act": "dec.act",
        "dec": "enc",
        "dec.fc": "enc.fc",
        "dec.act": "enc.act",
    }
    assert [pair.base for pair in layer_map.pairs] == ["", "enc", "enc.fc", "enc.act", "dec", "dec.fc", "dec.act"]
    assert {pair.base: pair.stage for pair in layer_map.pairs}["enc"] == "user"
    assert layer_map.pair_for_base("enc.fc").tensors  # the tensors inside a pinned pair still pair up


def test_a_pin_frees_the_layers_its_replaced_proposals_held() -> None:
    base = literal_tree([("", "MyNet"), ("a", "Linear", SQUARE), ("b", "Linear", SQUARE)])
    raw = literal_tree([("", "MyNet"), ("a", "Linear", SQUARE), ("b", "Linear", SQUARE)])
    layer_map = match_trees(base, raw, pinned=[("a", "b")])
    assert pairs(layer_map) == {"": "", "a": "b"}
    assert layer_map.unmatched_base == ["b"] and layer_map.unmatched_raw == ["a"]


def test_pinned_paths_are_checked() -> None:
    tree = literal_tree([("", "MyNet"), ("a", "Linear", SQUARE), ("b", "Linear", SQUARE)])
    with pytest.raises(LayerMapError, match="pinned raw layer 'c' is not in the raw model"):
        match_trees(tree, tree, pinned=[("a", "c")])
    with pytest.raises(LayerMapError, match="base layer 'a' is pinned twice"):
        match_trees(tree, tree, pinned=[("a", "a"), ("a", "b")])
