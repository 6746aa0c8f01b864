"""Report layout on literal trees: layer states, collapsed runs, aligned rows (no frameworks)."""

from conftest import literal_tree

from padiff_graph.core.transforms import TensorPair
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.report.layout import (
    Status,
    align,
    collapsible_runs,
    layer_states,
    pair_lines,
    two_trees,
    visible_entries,
)

LIN = [("weight", (8, 8)), ("bias", (8,))]


def stack(count: int, prefix: str = "layers", odd: int | None = None) -> list:
    rows: list = [("", "MyNet"), (prefix, "ModuleList")]
    for index in range(count):
        shape = [("weight", (4, 4))] if index == odd else LIN
        rows += [(f"{prefix}.{index}", "MyBlock"), (f"{prefix}.{index}.fc", "Linear", shape)]
        rows += [(f"{prefix}.{index}.act", "ReLU")]
    return rows


def names(entries) -> list[str]:
    return [entry.name("Net") for entry in entries]


def test_identical_numbered_blocks_collapse_into_one_entry() -> None:
    tree = literal_tree(stack(32))
    entries = visible_entries(tree, collapsible_runs(tree))
    assert names(entries) == ["Net", "layers", "0-31", "fc", "act"]
    block, fc = entries[2], entries[3]
    assert block.count == 32 and block.run[-1] == "layers.31"
    assert len(fc.stands_for) == 32 and fc.stands_for[5] == "layers.5.fc"


def test_a_different_block_splits_the_run_and_a_kept_layer_stays_alone() -> None:
    tree = literal_tree(stack(8, odd=3))
    assert [e.name("Net") for e in visible_entries(tree, collapsible_runs(tree)) if e.depth == 2] == [
        "0-2",
        "3",
        "4-7",
    ]
    kept = visible_entries(tree, collapsible_runs(tree, keep=["layers.5.act"]))
    assert [e.name("Net") for e in kept if e.depth == 2] == ["0-2", "3", "4", "5", "6-7"]


def test_states_say_why_a_layer_has_no_partner() -> None:
    base = literal_tree(
        [("", "MyNet"), ("dec", "MyDec", [("query", (5, 8))]), ("dec.proj", "Linear", LIN), ("aux", "Linear", LIN)]
    )
    raw = literal_tree(
        [
            ("", "MyNet"),
            ("wrap", "MyWrap"),
            ("wrap.dec", "MyDec"),
            ("wrap.dec.proj", "Linear", LIN),
            ("wrap.dec.query", "Embedding", [("weight", (5, 8))]),
            ("extra", "ReLU"),
        ],
        "paddle",
    )
    layer_map = LayerMap(
        [
            LayerPair("", ""),
            LayerPair("dec", "wrap.dec", tensors=(TensorPair("query", "query.weight"),)),
            LayerPair(
                "dec.proj", "wrap.dec.proj", tensors=(TensorPair("weight", "weight"), TensorPair("bias", "bias"))
            ),
        ],
        ignore_base=["aux"],
    )
    base_states = layer_states(base, "base", layer_map)
    raw_states = layer_states(raw, "raw", layer_map)
    assert base_states["dec"].status is Status.MATCHED and base_states["dec"].partner == "wrap.dec"
    assert base_states["aux"].status is Status.IGNORED
    assert raw_states["wrap"].status is Status.WRAPPER
    assert raw_states["wrap.dec.query"].status is Status.ABSORBED and raw_states["wrap.dec.query"].partner == "dec"
    assert raw_states["extra"].status is Status.UNMATCHED and "holds no tensors" in raw_states["extra"].why
    converted = layer_map.with_pairs(
        [
            *layer_map.pairs[:1],
            LayerPair("dec", "wrap.dec", 1.0, (TensorPair("query", "query.weight"),), "my-conversion"),
        ]
    )
    assert layer_states(raw, "raw", converted)["wrap.dec.query"].status is Status.CONVERTED


def test_rows_keep_the_longest_run_of_pairs_in_order() -> None:
    spec = [("", "MyNet"), ("a", "Linear", LIN), ("b", "Linear", LIN), ("c", "Linear", LIN)]
    base = literal_tree(spec)
    raw = literal_tree([("", "MyNet"), ("c", "Linear", LIN), ("a", "Linear", LIN), ("b", "Linear", LIN)])
    rows = align(
        visible_entries(base, collapsible_runs(base)),
        visible_entries(raw, collapsible_runs(raw)),
        {"": "", "a": "a", "b": "b", "c": "c"},
    )
    shown = [(r.base.path if r.base else None, r.raw.path if r.raw else None, r.paired) for r in rows]
    assert shown == [("", "", True), (None, "c", False), ("a", "a", True), ("b", "b", True), ("c", None, False)]


def block_pairs(order: list[int]) -> LayerMap:
    """Base ``layers.i`` paired with raw ``blocks.order[i]``."""
    pairs = [LayerPair("", ""), LayerPair("layers", "blocks")]
    for i, j in enumerate(order):
        pairs += [LayerPair(f"layers.{i}", f"blocks.{j}"), LayerPair(f"layers.{i}.fc", f"blocks.{j}.fc")]
        pairs += [LayerPair(f"layers.{i}.act", f"blocks.{j}.act")]
    return LayerMap(pairs)


def test_runs_collapse_on_both_sides_only_when_they_mirror_each_other() -> None:
    base, raw = literal_tree(stack(6)), literal_tree(stack(6, "blocks"), "paddle")
    layout = two_trees(base, raw, block_pairs([0, 1, 2, 3, 4, 5]))
    paired_blocks = [(r.base.name("N"), r.raw.name("N")) for r in layout.rows if r.paired and r.base.depth == 2]
    assert paired_blocks == [("0-5", "0-5")]
    # raw blocks 0 and 1 swapped: a collapsed row would hide it, so every block is shown
    layout = two_trees(base, raw, block_pairs([1, 0, 2, 3, 4, 5]))
    assert [e.name("N") for e in layout.base_entries if e.depth == 2] == ["0", "1", "2", "3", "4", "5"]
    assert [e.name("N") for e in layout.raw_entries if e.depth == 2] == ["0", "1", "2", "3", "4", "5"]


def test_a_wrapped_run_collapses_against_the_bare_run() -> None:
    base = literal_tree(stack(4))
    wrapped = [("", "MyNet"), ("layers", "ModuleList")]
    for i in range(4):
        wrapped += [(f"layers.{i}", "MyWrap"), (f"layers.{i}.body", "MyBlock")]
        wrapped += [(f"layers.{i}.body.fc", "Linear", LIN), (f"layers.{i}.body.act", "ReLU")]
    raw = literal_tree(wrapped, "paddle")
    pairs = [LayerPair("", ""), LayerPair("layers", "layers")]
    for i in range(4):
        pairs += [LayerPair(f"layers.{i}", f"layers.{i}.body"), LayerPair(f"layers.{i}.fc", f"layers.{i}.body.fc")]
        pairs += [LayerPair(f"layers.{i}.act", f"layers.{i}.body.act")]
    layout = two_trees(base, raw, LayerMap(pairs))
    shown = [(r.base.name("N") if r.base else None, r.raw.name("N") if r.raw else None) for r in layout.rows]
    assert shown == [("N", "N"), ("layers", "layers"), (None, "0-3"), ("0-3", "body"), ("fc", "fc"), ("act", "act")]


def test_a_pair_inside_an_ignored_subtree_is_drawn_ignored_on_both_sides() -> None:
    """The report shows what the copy and the diff do: ``ignore`` covers the pairs below it."""
    rows = [("", "MyNet"), ("head", "MyHead"), ("head.fc", "Linear", LIN), ("body", "Linear", LIN)]
    base, raw = literal_tree(rows), literal_tree(rows)
    pairs = [
        LayerPair(path, path, tensors=(TensorPair("weight", "weight"),)) for path in ("", "head", "head.fc", "body")
    ]
    layer_map = LayerMap(pairs, ignore_base=["head"])
    base_states, raw_states = layer_states(base, "base", layer_map), layer_states(raw, "raw", layer_map)
    for states in (base_states, raw_states):
        assert states["head.fc"].status is Status.IGNORED and states["head"].status is Status.IGNORED
        assert states["body"].status is Status.MATCHED


def test_pair_lines_follow_the_base_order_with_raw_only_layers_under_their_paired_ancestor() -> None:
    base = literal_tree([("", "MyNet"), ("enc", "MyEnc"), ("enc.a", "Linear", LIN), ("enc.b", "Linear", LIN)])
    raw = literal_tree(
        [
            ("", "MyNet"),
            ("extra", "Linear", [("weight", (2, 2))]),
            ("enc", "MyEnc"),
            ("enc.wrap", "MyWrap"),
            ("enc.wrap.b", "Linear", LIN),
            ("enc.a", "Linear", LIN),
        ],
        "paddle",
    )
    pairs = [LayerPair("", ""), LayerPair("enc", "enc"), LayerPair("enc.a", "enc.a"), LayerPair("enc.b", "enc.wrap.b")]
    lines = pair_lines(two_trees(base, raw, LayerMap(pairs)))
    shown = [(line.base.path if line.base else None, line.raw.path if line.raw else None, line.depth) for line in lines]
    assert shown == [
        ("", "", 0),
        ("enc", "enc", 1),
        ("enc.a", "enc.a", 2),
        ("enc.b", "enc.wrap.b", 2),
        (None, "enc.wrap", 2),  # under 'enc', after its subtree
        (None, "extra", 1),  # under the root, after everything
    ]
