"""User conversions: the decorator, PaDiff's add_special_init, map-file inits, stubs, both directions."""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Iterator

import numpy as np
import paddle
import pytest
import torch
from test_conversions import randomize

from padiff_graph import (
    DEFAULT_REGISTRY,
    AssignError,
    Code,
    LayerMap,
    LayerPair,
    Severity,
    TensorPair,
    add_special_init,
    assign_weights,
    preflight,
    register_conversion,
    suggest_map,
)

DIM = 8


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    """Registrations made by a test are forgotten after it."""
    before = {key for key, _ in DEFAULT_REGISTRY.entries()}
    yield
    for key, _ in DEFAULT_REGISTRY.entries():
        if key not in before:
            DEFAULT_REGISTRY.unregister(*key)


class TorchFusedAttention(torch.nn.Module):
    """q, k and v projections fused into one Linear, as many ports write it."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(DIM, 3 * DIM)
        self.proj = torch.nn.Linear(DIM, DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(DIM), dim=-1)
        return self.proj(weights @ v)


class PaddleSplitAttention(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.q = paddle.nn.Linear(DIM, DIM)
        self.k = paddle.nn.Linear(DIM, DIM)
        self.v = paddle.nn.Linear(DIM, DIM)
        self.proj = paddle.nn.Linear(DIM, DIM)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        q, k, v = self.q(x), self.k(x), self.v(x)
        weights = paddle.nn.functional.softmax(q @ k.transpose([0, 2, 1]) / math.sqrt(DIM), axis=-1)
        return self.proj(weights @ v)


class TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = TorchFusedAttention()
        self.head = torch.nn.Linear(DIM, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.attn(x))


class PaddleNet(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.attn = PaddleSplitAttention()
        self.head = paddle.nn.Linear(DIM, 3)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.attn(x))


X = np.random.default_rng(1).standard_normal((2, 5, DIM)).astype(np.float32)


def outputs_agree(torch_model: torch.nn.Module, paddle_model: paddle.nn.Layer) -> None:
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(paddle_model(paddle.to_tensor(X)).numpy(), expected, rtol=1e-4, atol=1e-5)


def copy_both_ways(torch_model: torch.nn.Module, paddle_model: paddle.nn.Layer, layer_map=None) -> None:
    """torch -> paddle, check; then paddle (new weights) -> torch, check."""
    randomize(torch_model, 1)
    randomize(paddle_model, 2)
    assign_weights(torch_model, paddle_model, layer_map)
    outputs_agree(torch_model, paddle_model)
    randomize(paddle_model, 3)
    randomize(torch_model, 4)
    assign_weights(paddle_model, torch_model)
    outputs_agree(torch_model, paddle_model)


FUSED_QKV = textwrap.dedent(
    '''
    from padiff_graph import TensorPair, register_conversion


    @register_conversion("torch", "TorchFusedAttention", "paddle", "PaddleSplitAttention", covers_subtree=True)
    def fused_qkv(base, raw):
        """qkv rows q | k | v ([out, in], torch) -> three paddle Linears ([in, out])."""
        dim = base.subtree_tensors["proj.weight"].shape[0]
        pairs = []
        for index, name in enumerate("qkv"):
            rows = f"{index * dim}:{(index + 1) * dim}"
            pairs.append(TensorPair.parse(f"qkv.weight[{rows}] -> {name}.weight: transpose"))
            pairs.append(TensorPair.parse(f"qkv.bias[{rows}] -> {name}.bias"))
        pairs.append(TensorPair.parse("proj.weight -> proj.weight: transpose"))
        pairs.append(TensorPair.parse("proj.bias -> proj.bias"))
        return pairs
    '''
)


def test_decorated_conversion_is_used_by_the_matcher_in_both_directions() -> None:
    namespace: dict[str, object] = {}
    exec(FUSED_QKV, namespace)
    torch_model, paddle_model = TorchNet(), PaddleNet()
    layer_map = suggest_map(torch_model, paddle_model)
    assert layer_map.pair_for_base("attn").conversion == "fused_qkv"
    assert layer_map.unmatched_base == layer_map.unmatched_raw == []
    reverse = suggest_map(paddle_model, torch_model)
    assert "q.weight -> qkv.weight[0:8]: transpose" in [t.describe() for t in reverse.pair_for_base("attn").tensors]
    info = [f for f in preflight(torch_model, paddle_model) if f.code is Code.NEEDS_SPECIAL_INIT]
    assert [(f.severity, f.base) for f in info] == [(Severity.INFO, "attn")]
    assert "fused_qkv" in info[0].message
    copy_both_ways(torch_model, paddle_model)


def test_map_file_init_imports_and_uses_a_users_conversion(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_inits.py").write_text(FUSED_QKV)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_inits", raising=False)
    torch_model, paddle_model = TorchNet(), PaddleNet()
    proposed = suggest_map(torch_model, paddle_model)  # nothing registered yet: attn stays unmatched
    assert proposed.pair_for_base("attn") is None
    edited = proposed.with_pairs([*proposed.pairs, LayerPair("attn", "attn", init="my_inits:fused_qkv")])
    edited.save(tmp_path / "map.yaml")
    layer_map = LayerMap.load(tmp_path / "map.yaml")
    assert not [f for f in preflight(torch_model, paddle_model, layer_map) if f.severity is Severity.ERROR]
    randomize(torch_model, 5)
    report = assign_weights(torch_model, paddle_model, layer_map)
    assert report.custom_inits == []  # expanded into tensor pairs, not called as an opaque function
    outputs_agree(torch_model, paddle_model)
    assert "my_inits" in sys.modules


def paddle_style_init(module: torch.nn.Module, layer: paddle.nn.Layer) -> None:
    """A PaDiff special init, written as PaDiff's docs show: torch module in, paddle layer out."""
    weight, bias = module.qkv.weight.detach().numpy(), module.qkv.bias.detach().numpy()
    for index, name in enumerate("qkv"):
        rows = slice(index * DIM, (index + 1) * DIM)
        getattr(layer, name).weight.set_value(weight[rows].T)
        getattr(layer, name).bias.set_value(bias[rows])
    layer.proj.weight.set_value(module.proj.weight.detach().numpy().T)
    layer.proj.bias.set_value(module.proj.bias.detach().numpy())


def test_add_special_init_keeps_padiffs_signature_and_runs_backwards_by_probing() -> None:
    add_special_init("torch", "TorchFusedAttention", "paddle", "PaddleSplitAttention", paddle_style_init)
    torch_model, paddle_model = TorchNet(), PaddleNet()
    pair = suggest_map(torch_model, paddle_model).pair_for_base("attn")
    assert pair.raw == "attn" and pair.init == f"{__name__}:paddle_style_init" and not pair.tensors
    findings = preflight(paddle_model, torch_model)
    assert not [f for f in findings if f.severity is Severity.ERROR]
    assert any(f.code is Code.NEEDS_SPECIAL_INIT and "paddle_style_init" in f.message for f in findings)
    copy_both_ways(torch_model, paddle_model)


def scaling_init(module: torch.nn.Module, layer: paddle.nn.Layer) -> None:
    paddle_style_init(module, layer)
    layer.proj.bias.set_value(module.proj.bias.detach().numpy() * 2)


def test_a_computing_init_cannot_run_backwards() -> None:
    add_special_init("torch", "TorchFusedAttention", "paddle", "PaddleSplitAttention", scaling_init)
    paddle_model, torch_model = PaddleNet(), TorchNet()
    randomize(paddle_model, 6)
    before = paddle_model.attn.proj.bias.numpy().copy()
    with pytest.raises(AssignError, match="does not only move values"):
        assign_weights(paddle_model, torch_model)
    np.testing.assert_array_equal(paddle_model.attn.proj.bias.numpy(), before)  # the base is left as it was


def partial_init(module: torch.nn.Module, layer: paddle.nn.Layer) -> None:
    layer.proj.weight.set_value(module.proj.weight.detach().numpy().T)


def test_an_init_that_reads_only_part_of_the_layer_cannot_run_backwards() -> None:
    add_special_init("torch", "TorchFusedAttention", "paddle", "PaddleSplitAttention", partial_init)
    with pytest.raises(AssignError, match=r"leaves raw tensors .*qkv.weight.* unset"):
        assign_weights(PaddleNet(), TorchNet())


class TransposedLinear(torch.nn.Module):
    """GPT-2's Conv1D: a Linear that stores its weight as [in, out] (a torch <-> torch layout change)."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(fan_in, fan_out))
        self.bias = torch.nn.Parameter(torch.zeros(fan_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def test_same_framework_layout_change_goes_through_the_registry_both_ways() -> None:
    @register_conversion("torch", "TransposedLinear", "torch", "Linear")
    def transposed_linear(base, raw):
        return [TensorPair.parse("weight -> weight: transpose"), TensorPair.parse("bias -> bias")]

    conv1d, linear = torch.nn.Sequential(TransposedLinear(4, 4)), torch.nn.Sequential(torch.nn.Linear(4, 4))
    x = torch.from_numpy(X[0, :, :4].copy())
    for base, raw in ((conv1d, linear), (linear, conv1d)):
        randomize(base, 7)
        assign_weights(base, raw)
        with torch.no_grad():
            np.testing.assert_allclose(raw(x).numpy(), base(x).numpy(), rtol=1e-5, atol=1e-6)


class TorchOwnFused(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Parameter(torch.randn(3 * DIM, DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(x @ part.T for part in self.qkv.chunk(3))


class PaddleOwnSplit(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.q = self.create_parameter([DIM, DIM])
        self.k = self.create_parameter([DIM, DIM])
        self.v = self.create_parameter([DIM, DIM])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x @ self.q + x @ self.k + x @ self.v


@pytest.mark.parametrize(
    "torch_block, paddle_block",
    [(TorchOwnFused, PaddleOwnSplit), (TorchFusedAttention, PaddleSplitAttention)],
    ids=["own-tensors", "child-linears"],
)
def test_needs_special_init_stub_runs_as_printed(torch_block, paddle_block) -> None:
    torch_model, paddle_model = torch.nn.Sequential(torch_block()), paddle.nn.Sequential(paddle_block())
    layer_map = suggest_map(torch_model, paddle_model)
    if layer_map.pair_for_base("0") is None:  # the blocks share no structure: pair them by hand
        layer_map = layer_map.with_pairs([*layer_map.pairs, LayerPair("0", "0")])
    errors = [f for f in preflight(torch_model, paddle_model, layer_map) if f.severity is Severity.ERROR]
    assert [(f.code, f.base, f.raw) for f in errors] == [(Code.NEEDS_SPECIAL_INIT, "0", "0")]
    stub = errors[0].hint.split("\n", 1)[1]
    exec(stub, {})
    copy_both_ways(torch_model, paddle_model)
