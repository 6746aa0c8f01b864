import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from padiff_graph.core.transforms import TensorPair, Transform, parse_index


@pytest.mark.parametrize(
    "text",
    [
        "weight -> weight",
        "weight -> weight: transpose",
        "in_proj_weight[0:16] -> q_proj.weight: transpose",
        "qkv[:, 4:8] -> k.weight[0:2, 0:4]: permute(1,0)",
        "weight_ih -> weight_ih: blocks(0,1,3,2)",
        "fc.weight -> conv.weight: transpose, reshape(8,4,1,1)",
        "gate_up.weight[:, 16:32] -> up_proj.weight: transpose",
    ],
)
def test_describe_round_trips(text: str) -> None:
    assert TensorPair.parse(text).describe() == text


def test_slices_select_and_place() -> None:
    fused = np.arange(12.0).reshape(6, 2)
    transform = Transform.parse("transpose", base_index="2:4")
    np.testing.assert_array_equal(transform.apply(fused), fused[2:4].T)
    assert transform.output_shape((6, 2)) == (2, 2)
    assert transform.inverse().raw_index == (slice(2, 4),)


def test_blocks_inverse_restores_order() -> None:
    value = np.arange(8.0).reshape(4, 2)
    forward = Transform.parse("blocks(1,2,3,0)")
    np.testing.assert_array_equal(forward.inverse().apply(forward.apply(value)), value)


def test_permute_inverse() -> None:
    value = np.random.default_rng(0).standard_normal((2, 3, 4))
    forward = Transform.parse("permute(2,0,1)")
    np.testing.assert_array_equal(forward.inverse().apply(forward.apply(value)), value)


def test_reshape_chains_apply_and_invert_through_the_base_shape() -> None:
    """paddle Linear ``[in, out]`` into a torch 1x1 Conv2d ``[out, in, 1, 1]``, and back."""
    weight = np.arange(12.0).reshape(3, 4)
    forward = Transform.parse("transpose, reshape(4,3,1,1)")
    np.testing.assert_array_equal(forward.apply(weight), weight.T.reshape(4, 3, 1, 1))
    assert forward.output_shape((3, 4)) == (4, 3, 1, 1)
    backward = forward.inverse((3, 4))
    assert backward.op_text == "reshape(4,3), transpose"
    np.testing.assert_array_equal(backward.apply(forward.apply(weight)), weight)
    with pytest.raises(ValueError, match="shape"):
        forward.inverse()
    with pytest.raises(ValueError, match="another number of elements"):
        Transform.parse("reshape(5,5)").output_shape((3, 4))


@pytest.mark.parametrize(
    "bad",
    [
        "weight",
        "weight -> ",
        "a -> b: explode",
        "a[x:y] -> b",
        "a -> b: blocks()",
        "a -> b: transpose(1)",
        "a -> b: reshape",
        "a -> b: transpose,, reshape(4)",
    ],
)
def test_bad_spellings_raise_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        TensorPair.parse(bad)


def test_parse_index() -> None:
    assert parse_index(":, 0:16") == (slice(None), slice(0, 16))


def test_shapes_need_no_memory() -> None:
    # a terabyte-sized tensor: allocating it (the old way) would fail outright
    huge = (1_000_000, 1_000_000)
    assert Transform.parse("transpose").output_shape(huge) == huge[::-1]
    assert Transform.parse("transpose", base_index="0:10").output_shape(huge) == (1_000_000, 10)
    assert Transform.parse("identity", raw_index=":, 5:7").region_shape(huge) == (1_000_000, 2)


@st.composite
def transforms(draw: st.DrawFn) -> tuple[tuple[int, ...], Transform]:
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=1, max_size=3)))
    op = draw(st.sampled_from(["identity", "transpose", "permute", "blocks"]))
    args = tuple(draw(st.lists(st.integers(0, 4), min_size=1, max_size=4))) if op in ("permute", "blocks") else ()
    index = None
    if draw(st.booleans()):
        parts = draw(st.lists(st.tuples(st.integers(-3, 7) | st.none(), st.integers(-3, 7) | st.none()), max_size=4))
        index = ", ".join(f"{'' if a is None else a}:{'' if b is None else b}" for a, b in parts) or None
    return shape, Transform.parse(f"{op}({','.join(map(str, args))})" if args else op, base_index=index)


@settings(max_examples=300, deadline=None)
@given(transforms())
def test_output_shape_agrees_with_apply(case: tuple[tuple[int, ...], Transform]) -> None:
    shape, transform = case
    try:
        expected = transform.apply(np.zeros(shape)).shape
    except (ValueError, IndexError):
        with pytest.raises(ValueError):
            transform.output_shape(shape)
        return
    assert transform.output_shape(shape) == expected


@pytest.mark.parametrize("text", ["const(1) -> scale", "bias -> const(0)", "in_proj_bias[0:8] -> const(0)"])
def test_constant_sides_round_trip_and_invert(text: str) -> None:
    pair = TensorPair.parse(text)
    assert pair.describe() == text
    assert pair.inverse().inverse() == pair
    assert pair.has_constant and pair.prefixed("a", "b").describe().count("const(") == 1


@pytest.mark.parametrize("bad", ["const(1) -> const(0)", "const(1) -> scale: transpose", "const(1)[0:2] -> scale"])
def test_constant_sides_take_no_transform_or_index(bad: str) -> None:
    with pytest.raises(ValueError):
        TensorPair.parse(bad)
