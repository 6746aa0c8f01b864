"""Weight copy through the map: conversions, verification, clear errors."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import AssignError, LayerMap, LayerPair, TensorPair, assign_weights, suggest_map


def test_square_linear_is_transposed_torch_to_paddle() -> None:
    base, raw = torch.nn.Linear(4, 4), paddle.nn.Linear(4, 4)
    assign_weights(base, raw)
    np.testing.assert_array_equal(raw.weight.numpy(), base.weight.detach().numpy().T)


def test_batchnorm_statistics_are_copied_paddle_to_torch() -> None:
    base, raw = paddle.nn.BatchNorm2D(3), torch.nn.BatchNorm2d(3)
    base._mean.set_value(paddle.to_tensor([1.0, 2.0, 3.0]))
    base._variance.set_value(paddle.to_tensor([4.0, 5.0, 6.0]))
    report = assign_weights(base, raw)
    np.testing.assert_array_equal(raw.running_mean.numpy(), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(raw.running_var.numpy(), [4.0, 5.0, 6.0])
    assert report.untouched_raw == ["num_batches_tracked"]


def test_dtype_is_kept_on_the_raw_side() -> None:
    base, raw = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2).to(torch.bfloat16)
    assign_weights(base, raw)
    assert raw.weight.dtype == torch.bfloat16
    np.testing.assert_allclose(raw.weight.float().detach().numpy(), base.weight.detach().numpy(), rtol=1e-2)


class Fused(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Parameter(torch.randn(12, 4))


class Split(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.q = self.create_parameter([4, 4])
        self.k = self.create_parameter([4, 4])
        self.v = self.create_parameter([4, 4])


def test_unconvertible_pair_names_both_layers_and_the_missing_conversion() -> None:
    base, raw = torch.nn.Sequential(Fused()), paddle.nn.Sequential(Split())
    with pytest.raises(AssignError) as error:
        assign_weights(base, raw)
    message = str(error.value)
    assert "'0'" in message and "Fused" in message and "Split" in message
    assert "register a conversion" in message
    assert message.endswith("`padiff-graph check BASE RAW` prints a stub to start from")  # not a dangling "stub:"


def test_hand_written_split_map_copies_regions() -> None:
    base, raw = Fused(), Split()
    tensors = tuple(TensorPair.parse(f"qkv[{i * 4}:{i * 4 + 4}] -> {name}: transpose") for i, name in enumerate("qkv"))
    assign_weights(base, raw, LayerMap([LayerPair("", "", 1.0, tensors)]))
    np.testing.assert_array_equal(raw.k.numpy(), base.qkv.detach().numpy()[4:8].T)


def test_meta_model_cannot_be_copied_from() -> None:
    with torch.device("meta"):
        base = torch.nn.Linear(2, 2)
    with pytest.raises(AssignError, match="meta device"):
        assign_weights(base, torch.nn.Linear(2, 2))


def test_map_with_unknown_path_is_a_layer_map_error() -> None:
    from padiff_graph import LayerMapError

    base, raw = torch.nn.Linear(2, 2), paddle.nn.Linear(2, 2)
    layer_map = suggest_map(base, raw).with_pairs([LayerPair("", "missing")])
    with pytest.raises(LayerMapError, match="'missing'"):
        assign_weights(base, raw, layer_map)


def test_ignored_subtrees_are_neither_copied_nor_compared() -> None:
    from padiff_graph import diff

    base = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sequential(torch.nn.Linear(4, 2)))
    raw = paddle.nn.Sequential(paddle.nn.Linear(4, 4), paddle.nn.Sequential(paddle.nn.Linear(4, 2)))
    untouched = raw[1][0].weight.numpy().copy()
    layer_map = suggest_map(base, raw)
    layer_map.ignore_base.append("1")  # the whole head, on the base side
    report = assign_weights(base, raw, layer_map)
    np.testing.assert_array_equal(raw[1][0].weight.numpy(), untouched)
    assert report.layer_pairs == len(layer_map.active_pairs())
    result = diff(base, raw, [np.ones((2, 4), np.float32)], layer_map, assign=False)
    assert not any(c.base.startswith("1") for c in result.comparisons)
    assert any(c.base == "0" for c in result.comparisons)


class TorchRotary(torch.nn.Module):
    """A rotary table whose frequencies are a non-persistent buffer (kept out of the state dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, 8, 2) / 8), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.cat([self.inv_freq, self.inv_freq])


class PaddleRotary(paddle.nn.Layer):
    """The same table with its frequencies a frozen parameter (in the state dict)."""

    def __init__(self) -> None:
        super().__init__()
        frequencies = 1.0 / 10000 ** (paddle.arange(0, 8, 2, dtype="float32") / 8)
        self.inv_freq = self.create_parameter([4], default_initializer=paddle.nn.initializer.Assign(frequencies))
        self.inv_freq.stop_gradient = True

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * paddle.concat([self.inv_freq, self.inv_freq])


class TorchWithRotary(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)
        self.rotary = TorchRotary()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rotary(self.proj(x))


class PaddleWithRotary(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.proj = paddle.nn.Linear(8, 8)
        self.rotary = PaddleRotary()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.rotary(self.proj(x))


@pytest.mark.parametrize("forward", [True, False])
def test_derived_table_as_buffer_on_one_side_and_frozen_parameter_on_the_other_pairs(forward: bool) -> None:
    torch_model, paddle_model = TorchWithRotary(), PaddleWithRotary()
    base, raw = (torch_model, paddle_model) if forward else (paddle_model, torch_model)
    layer_map = suggest_map(base, raw)
    assert {pair.base: pair.raw for pair in layer_map.pairs}["rotary"] == "rotary"
    assign_weights(base, raw, layer_map)
    np.testing.assert_allclose(paddle_model.rotary.inv_freq.numpy(), torch_model.rotary.inv_freq.numpy(), rtol=1e-6)


def test_two_raw_parameters_over_one_storage_must_each_keep_what_was_copied_into_them() -> None:
    """Each tile is read back as it is written; a later write into the same bytes would go unseen, so raw
    tensors sharing memory are read back again once the copy is done: different values stop the copy, the
    same values (a tie on both sides) pass."""
    paddle.seed(0)
    base = paddle.nn.Sequential(paddle.nn.Linear(4, 4), paddle.nn.Linear(4, 4))
    raw = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    raw[1].weight = torch.nn.Parameter(raw[0].weight.data)  # another parameter, the same storage
    with pytest.raises(AssignError, match=r"raw tensor '0.weight' does not hold the copied values"):
        assign_weights(base, raw)
    base[1].weight.set_value(base[0].weight)
    assign_weights(base, raw)
    assert np.array_equal(raw[1].weight.detach().numpy(), base[0].weight.numpy().T)
