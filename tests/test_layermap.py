"""Layer-map files: round trip, line-numbered errors, and fuzzing."""

import contextlib
import textwrap

import pytest
import yaml
from conftest import literal_tree
from hypothesis import given, settings
from hypothesis import strategies as st

from padiff_graph import LayerMap, LayerMapError
from padiff_graph.checks import preflight_trees
from padiff_graph.layermap.validation import check_map_paths
from padiff_graph.match import match_trees

VALID = textwrap.dedent(
    """\
    version: 1
    base: {framework: torch, model: Net}
    raw: {framework: paddle, model: Net}
    pairs:
      - base: fc
        raw: head.fc
        score: 0.9
        tensors: ["weight -> weight: transpose", "bias -> bias"]
      - base: attn
        raw: attn
        tensors: ["in_proj_weight[0:8] -> q_proj.weight: transpose"]
        init: my_package.inits:fused_qkv
    unmatched: {base: [aux], raw: []}
    ignore: {base: [aux]}
    """
)


def test_round_trip(tmp_path) -> None:
    layer_map = LayerMap.loads(VALID)
    path = tmp_path / "map.yaml"
    layer_map.save(path)
    again = LayerMap.load(path)
    assert again.as_dict() == layer_map.as_dict()
    assert again.raw_of("fc") == "head.fc"
    assert again.pairs[1].init == "my_package.inits:fused_qkv"
    assert next(t.describe() for t in again.tensor_pairs()) == "fc.weight -> head.fc.weight: transpose"
    assert again.ignore_base == ["aux"]


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("version: 2\npairs: []\n", 1, "unsupported version"),
        ("pairs: []\n", 1, "missing 'version'"),
        ("version: 1\npairs:\n  - base: fc\n", 3, "no 'raw' path"),
        ("version: 1\npairs:\n  - {base: fc, raw: fc, scroe: 1}\n", 3, "unknown key 'scroe'"),
        ("version: 1\npairs:\n  - {base: fc, raw: fc, score: high}\n", 3, "not a number"),
        ("version: 1\npairs:\n  - {base: fc, raw: fc, tensors: ['weight => weight']}\n", 3, "is not of the form"),
        ("version: 1\npairs:\n  - {base: a, raw: x}\n  - {base: b, raw: x}\n", 4, "paired twice"),
        ("version: 1\npairs:\n  - {base: 'a b', raw: x}\n", 3, "not a dotted layer path"),
        ("version: 1\npairs: [\n", 3, "invalid YAML"),
        ("version: 1\npairs:\n  - {base: a, raw: b, init: 'import os'}\n", 3, "package.module:function"),
        ("version: 1\nunknown: 3\n", 2, "unknown key 'unknown'"),
        ("version: 1\npairs:\n  - {base: fc, raw: conv, tensors: ['weight -> weight: reshape']}\n", 3, "needs a shape"),
        ("version: 1\npairs:\n  - {base: a, raw: b, guessed_layouts: [[w]]}\n", 3, "tensor name"),
    ],
)
def test_errors_name_the_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(LayerMapError) as error:
        LayerMap.loads(text, source="map.yaml")
    assert str(error.value).startswith(f"map.yaml:{line}:")
    assert problem in str(error.value)


def test_loading_never_constructs_python_objects() -> None:
    with pytest.raises(LayerMapError):
        LayerMap.loads("version: 1\npairs: !!python/object/apply:os.system ['echo hacked']\n")


def test_empty_and_missing_files(tmp_path) -> None:
    with pytest.raises(LayerMapError, match="empty"):
        LayerMap.loads("")
    with pytest.raises(LayerMapError, match="cannot read"):
        LayerMap.load(tmp_path / "nope.yaml")


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(yaml_values)
def test_fuzzed_documents_load_or_raise_the_documented_error(value) -> None:
    with contextlib.suppress(LayerMapError):
        LayerMap.loads(yaml.safe_dump(value))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(VALID) - 1), st.text(min_size=1, max_size=3))
def test_mutated_valid_files_load_or_raise_the_documented_error(position, insert) -> None:
    with contextlib.suppress(LayerMapError):
        LayerMap.loads(VALID[:position] + insert + VALID[position + 1 :])


# The loader path that checks a map against real trees: parse, then preflight (which validates paths first).
FUZZ_BASE = literal_tree(
    [
        ("", "MyNet"),
        ("embed", "Embedding", [("weight", (10, 8))]),
        ("blocks", "ModuleList"),
        ("blocks.0", "MyBlock"),
        ("blocks.0.fc", "Linear", [("weight", (16, 8)), ("bias", (16,))]),
        ("blocks.0.norm", "LayerNorm", [("weight", (16,)), ("bias", (16,))]),
        ("head", "Linear", [("weight", (4, 16)), ("bias", (4,))]),
    ]
)
FUZZ_RAW = literal_tree(
    [
        ("", "MyNet"),
        ("embed", "Embedding", [("weight", (10, 8))]),
        ("layers", "LayerList"),
        ("layers.0", "MyBlock"),
        ("layers.0.fc", "Linear", [("weight", (8, 16)), ("bias", (16,))]),
        ("layers.0.norm", "LayerNorm", [("weight", (16,)), ("bias", (16,))]),
        ("head", "Linear", [("weight", (16, 4)), ("bias", (4,))]),
        ("aux", "Linear", [("weight", (16, 4))]),
    ],
    "paddle",
)
FUZZ_MAP = match_trees(FUZZ_BASE, FUZZ_RAW).dumps()
base_paths = st.sampled_from([*FUZZ_BASE.nodes, "nope", "a..b"])
raw_paths = st.sampled_from([*FUZZ_RAW.nodes, "nope"])
TENSOR_ENTRIES = [
    "weight -> weight",
    "weight -> weight: transpose",
    "bias -> bias",
    "weight[0:4] -> weight[:, 0:4]: transpose",
    "weight[0:1, 0:1, 0:1] -> weight",
    "weight -> weight: permute(2,0,1)",
    "weight -> weight: blocks(0,1,2)",
    "fc.weight -> weight",
    "weight -> nothing",
]
tensor_lists = st.lists(st.sampled_from(TENSOR_ENTRIES), max_size=3) | st.lists(st.text(max_size=20), max_size=1)
pairs = st.lists(
    st.fixed_dictionaries(
        {"base": base_paths, "raw": raw_paths},
        optional={
            "tensors": tensor_lists,
            "score": st.floats(0, 1) | st.just(1.5),
            "conversion": st.text(max_size=5),
        },
    ),
    max_size=5,
    unique_by=(lambda pair: pair["base"], lambda pair: pair["raw"]),  # pairing a layer twice is tested above
)
maps = st.fixed_dictionaries(
    {"version": st.sampled_from([1] * 8 + [2, "1"]), "pairs": pairs},
    optional={
        "ignore": st.fixed_dictionaries(
            {}, optional={"base": st.lists(base_paths, max_size=2), "raw": st.lists(raw_paths, max_size=2)}
        )
    },
)


def load_against_trees(text: str) -> None:
    """What ``check --map`` does with a file: it loads a valid map or raises LayerMapError, nothing else."""
    try:
        layer_map = LayerMap.loads(text)
        check_map_paths(FUZZ_BASE, FUZZ_RAW, layer_map)
        preflight_trees(FUZZ_BASE, FUZZ_RAW, layer_map)
    except LayerMapError:
        return


def test_the_fuzz_trees_map_cleanly() -> None:
    """The fuzzing starts from a sound map: it round-trips, and only the one-sided ``aux`` is an error."""
    layer_map = LayerMap.loads(FUZZ_MAP)
    assert LayerMap.loads(layer_map.dumps()).as_dict() == layer_map.as_dict()
    assert {pair.base: pair.raw for pair in layer_map.pairs}["blocks.0.fc"] == "layers.0.fc"
    errors = [
        (f.code.value, f.base, f.raw)
        for f in preflight_trees(FUZZ_BASE, FUZZ_RAW, layer_map)
        if f.severity.value == "error"
    ]
    assert errors == [("unmatched", None, "aux")]


@settings(max_examples=300, deadline=None)
@given(maps)
def test_fuzzed_maps_against_real_trees_load_or_raise_the_documented_error(value) -> None:
    load_against_trees(yaml.safe_dump(value))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_suggested_maps_against_real_trees_load_or_raise_the_documented_error(data) -> None:
    text = FUZZ_MAP
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(text) - 1))
        replacement = data.draw(st.sampled_from(["", " ", "-", ":", "[", "]", "{", "'", "\n", "  ", "x", "0", "."]))
        text = text[:position] + replacement + text[position + data.draw(st.integers(0, 3)) :]
    load_against_trees(text)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_files_of_random_bytes_load_or_raise_the_documented_error(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("bytes") / "map.yaml"
    path.write_bytes(data)
    with contextlib.suppress(LayerMapError):
        LayerMap.load(path)
