"""Every shipped conversion, numerically, in both directions.

Each case builds a torch layer and a paddle layer, fills the base with random
weights (and the raw with other random weights, so a missed copy shows),
copies through ``assign_weights`` and runs both on one input: outputs agree
to fp32 precision. Then the same with paddle as the base. Gate orders,
layouts and names are checked here, not assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import AssignError, assign_weights, diff, preflight, suggest_map
from padiff_graph.frameworks import adapter_for

RNG = np.random.default_rng(0)


def randomize(model: Any, seed: int) -> None:
    """Random values in every floating tensor (variances positive)."""
    adapter = adapter_for(model)
    rng = np.random.default_rng(seed)
    for name, tensor in adapter.named_tensors(model).items():
        if not adapter.dtype_name(tensor).startswith("float"):
            continue
        shape = tuple(adapter.to_numpy(tensor).shape)
        variance = name.endswith(("running_var", "_variance"))
        value = rng.uniform(0.5, 2.0, shape) if variance else rng.standard_normal(shape)
        adapter.write(tensor, value.astype(np.float32))


def array(shape: tuple[int, ...]) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def first(output: Any) -> Any:
    return output[0] if isinstance(output, (tuple, list)) else output


def to_numpy(output: Any) -> np.ndarray:
    value = first(output)
    return value.detach().numpy() if isinstance(value, torch.Tensor) else value.numpy()


@dataclass
class Case:
    name: str
    torch_layer: Callable[[], Any]
    paddle_layer: Callable[[], Any]
    inputs: Callable[[], list[np.ndarray]]
    torch_call: Callable[..., Any] | None = None
    paddle_call: Callable[..., Any] | None = None
    #: torch lacks tensors paddle has (bias=False, affine=False): paddle's must keep their neutral init
    one_sided: bool = False

    def run(self, model: Any, arrays: list[np.ndarray]) -> np.ndarray:
        if isinstance(model, torch.nn.Module):
            tensors = [torch.from_numpy(a) for a in arrays]
            with torch.no_grad():
                return to_numpy(self.torch_call(model, *tensors) if self.torch_call else model(*tensors))
        tensors = [paddle.to_tensor(a) for a in arrays]
        with paddle.no_grad():
            return to_numpy(self.paddle_call(model, *tensors) if self.paddle_call else model(*tensors))


def _attention(model: Any, query: Any, key: Any, value: Any) -> Any:
    return model(query, key, value, need_weights=False)[0]


def _decoder(model: Any, target: Any, memory: Any) -> Any:
    return model(target, memory)


def _rnn_cases() -> list[Case]:
    cases = []
    for torch_class, paddle_class in ((torch.nn.LSTM, paddle.nn.LSTM), (torch.nn.GRU, paddle.nn.GRU)):
        for bidirectional in (False, True):
            cases.append(
                Case(
                    f"{torch_class.__name__}-{'bi' if bidirectional else 'uni'}-2layers",
                    lambda t=torch_class, b=bidirectional: t(3, 4, num_layers=2, batch_first=True, bidirectional=b),
                    lambda p=paddle_class, b=bidirectional: p(
                        3, 4, num_layers=2, direction="bidirect" if b else "forward"
                    ),
                    lambda: [array((2, 5, 3))],
                )
            )
    for bidirectional in (False, True):
        cases.append(
            Case(
                f"RNN-{'bi' if bidirectional else 'uni'}-2layers",
                lambda b=bidirectional: torch.nn.RNN(3, 4, num_layers=2, batch_first=True, bidirectional=b),
                lambda b=bidirectional: paddle.nn.SimpleRNN(
                    3, 4, num_layers=2, direction="bidirect" if b else "forward"
                ),
                lambda: [array((2, 5, 3))],
            )
        )
    return cases


CASES = [
    Case("Linear", lambda: torch.nn.Linear(4, 3), lambda: paddle.nn.Linear(4, 3), lambda: [array((2, 4))]),
    Case(
        "Linear-no-bias-vs-bias",
        lambda: torch.nn.Linear(4, 3, bias=False),
        lambda: paddle.nn.Linear(4, 3),
        lambda: [array((2, 4))],
        one_sided=True,
    ),
    Case(
        "Conv1d",
        lambda: torch.nn.Conv1d(4, 6, 3, groups=2),
        lambda: paddle.nn.Conv1D(4, 6, 3, groups=2),
        lambda: [array((2, 4, 7))],
    ),
    Case(
        "Conv2d",
        lambda: torch.nn.Conv2d(3, 4, 3, stride=2, padding=1),
        lambda: paddle.nn.Conv2D(3, 4, 3, stride=2, padding=1),
        lambda: [array((2, 3, 6, 6))],
    ),
    Case(
        "Conv3d", lambda: torch.nn.Conv3d(2, 3, 2), lambda: paddle.nn.Conv3D(2, 3, 2), lambda: [array((1, 2, 4, 4, 4))]
    ),
    Case(
        "ConvTranspose1d",
        lambda: torch.nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2),
        lambda: paddle.nn.Conv1DTranspose(4, 6, 3, stride=2, groups=2),
        lambda: [array((2, 4, 5))],
    ),
    Case(
        "ConvTranspose2d",
        lambda: torch.nn.ConvTranspose2d(3, 4, 3, stride=2),
        lambda: paddle.nn.Conv2DTranspose(3, 4, 3, stride=2),
        lambda: [array((2, 3, 4, 4))],
    ),
    Case(
        "ConvTranspose3d",
        lambda: torch.nn.ConvTranspose3d(2, 3, 2, stride=2),
        lambda: paddle.nn.Conv3DTranspose(2, 3, 2, stride=2),
        lambda: [array((1, 2, 3, 3, 3))],
    ),
    Case("BatchNorm1d", lambda: torch.nn.BatchNorm1d(3), lambda: paddle.nn.BatchNorm1D(3), lambda: [array((4, 3))]),
    Case(
        "BatchNorm2d", lambda: torch.nn.BatchNorm2d(3), lambda: paddle.nn.BatchNorm2D(3), lambda: [array((2, 3, 4, 4))]
    ),
    Case(
        "BatchNorm3d",
        lambda: torch.nn.BatchNorm3d(3),
        lambda: paddle.nn.BatchNorm3D(3),
        lambda: [array((2, 3, 2, 2, 2))],
    ),
    Case(
        "BatchNorm2d-vs-BatchNorm",
        lambda: torch.nn.BatchNorm2d(3),
        lambda: paddle.nn.BatchNorm(3),
        lambda: [array((2, 3, 4, 4))],
    ),
    Case("LayerNorm", lambda: torch.nn.LayerNorm(5), lambda: paddle.nn.LayerNorm(5), lambda: [array((2, 3, 5))]),
    Case(
        "LayerNorm-no-affine",
        lambda: torch.nn.LayerNorm(5, elementwise_affine=False),
        lambda: paddle.nn.LayerNorm(5),
        lambda: [array((2, 3, 5))],
        one_sided=True,
    ),
    Case(
        "InstanceNorm2d-no-affine",
        lambda: torch.nn.InstanceNorm2d(3),
        lambda: paddle.nn.InstanceNorm2D(3),
        lambda: [array((2, 3, 4, 4))],
        one_sided=True,
    ),
    Case(
        "GroupNorm", lambda: torch.nn.GroupNorm(2, 4), lambda: paddle.nn.GroupNorm(2, 4), lambda: [array((2, 4, 3, 3))]
    ),
    Case(
        "Embedding",
        lambda: torch.nn.Embedding(10, 4),
        lambda: paddle.nn.Embedding(10, 4),
        lambda: [RNG.integers(0, 10, (2, 5)).astype(np.int64)],
    ),
    Case(
        "InstanceNorm1d-affine",
        lambda: torch.nn.InstanceNorm1d(3, affine=True),
        lambda: paddle.nn.InstanceNorm1D(3),
        lambda: [array((2, 3, 6))],
    ),
    Case(
        "InstanceNorm2d-affine",
        lambda: torch.nn.InstanceNorm2d(3, affine=True),
        lambda: paddle.nn.InstanceNorm2D(3),
        lambda: [array((2, 3, 4, 4))],
    ),
    Case(
        "InstanceNorm3d-affine",
        lambda: torch.nn.InstanceNorm3d(3, affine=True),
        lambda: paddle.nn.InstanceNorm3D(3),
        lambda: [array((2, 3, 2, 3, 3))],
    ),
    Case("PReLU", lambda: torch.nn.PReLU(3), lambda: paddle.nn.PReLU(3), lambda: [array((2, 3, 4))]),
    Case("PReLU-shared", lambda: torch.nn.PReLU(), lambda: paddle.nn.PReLU(), lambda: [array((2, 3, 4))]),
    Case(
        "MultiheadAttention",
        lambda: torch.nn.MultiheadAttention(8, 2, batch_first=True),
        lambda: paddle.nn.MultiHeadAttention(8, 2),
        lambda: [array((2, 5, 8))] * 3,
        _attention,
    ),
    Case(
        "MultiheadAttention-kdim-vdim",
        lambda: torch.nn.MultiheadAttention(8, 2, batch_first=True, kdim=6, vdim=4),
        lambda: paddle.nn.MultiHeadAttention(8, 2, kdim=6, vdim=4),
        lambda: [array((2, 5, 8)), array((2, 3, 6)), array((2, 3, 4))],
        _attention,
    ),
    Case(
        "MultiheadAttention-no-bias",
        lambda: torch.nn.MultiheadAttention(8, 2, batch_first=True, bias=False),
        lambda: paddle.nn.MultiHeadAttention(8, 2, bias_attr=False),
        lambda: [array((2, 5, 8))] * 3,
        _attention,
    ),
    Case(
        "TransformerEncoderLayer",
        lambda: torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
        lambda: paddle.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0),
        lambda: [array((2, 5, 8))],
    ),
    Case(
        "TransformerEncoderLayer-gelu-norm-first",
        lambda: torch.nn.TransformerEncoderLayer(8, 2, 16, 0.0, "gelu", batch_first=True, norm_first=True),
        lambda: paddle.nn.TransformerEncoderLayer(8, 2, 16, 0.0, "gelu", normalize_before=True),
        lambda: [array((2, 5, 8))],
    ),
    Case(
        "TransformerDecoderLayer",
        lambda: torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
        lambda: paddle.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0),
        lambda: [array((2, 5, 8)), array((2, 4, 8))],
        _decoder,
        _decoder,
    ),
    *_rnn_cases(),
]


def _copy_and_compare(case: Case, base: Any, raw: Any) -> None:
    if not (case.one_sided and isinstance(base, paddle.nn.Layer)):
        randomize(base, 1)
    randomize(raw, 2)
    base.eval()
    raw.eval()
    arrays = case.inputs()
    assign_weights(base, raw)
    np.testing.assert_allclose(case.run(raw, arrays), case.run(base, arrays), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_torch_to_paddle(case: Case) -> None:
    _copy_and_compare(case, case.torch_layer(), case.paddle_layer())


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_paddle_to_torch(case: Case) -> None:
    _copy_and_compare(case, case.paddle_layer(), case.torch_layer())


@pytest.mark.parametrize(
    "torch_layer, paddle_layer",
    [
        (lambda: torch.nn.InstanceNorm2d(3), lambda: paddle.nn.InstanceNorm2D(3)),
        (lambda: torch.nn.Linear(4, 3, bias=False), lambda: paddle.nn.Linear(4, 3)),
    ],
    ids=["InstanceNorm2d", "Linear"],
)
def test_a_base_tensor_the_raw_layer_lacks_must_hold_its_neutral_value(torch_layer, paddle_layer) -> None:
    base, raw = paddle_layer(), torch_layer()
    randomize(base, 3)
    with pytest.raises(AssignError, match="holds values other than"):
        assign_weights(base, raw)


def test_sync_batchnorm_copies_both_ways() -> None:
    """paddle's SyncBatchNorm has no CPU kernel: its side runs as a BatchNorm2D holding the same state."""
    torch_layer, paddle_layer = torch.nn.SyncBatchNorm(3), paddle.nn.SyncBatchNorm(3)
    x = array((2, 3, 4, 4))
    for base, raw in ((torch_layer, paddle_layer), (paddle_layer, torch_layer)):
        randomize(base, 4)
        randomize(raw, 5)
        assign_weights(base, raw)
        runnable = paddle.nn.BatchNorm2D(3)
        runnable.set_state_dict(paddle_layer.state_dict())
        runnable.eval()
        torch_layer.eval()
        with torch.no_grad():
            expected = torch_layer(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(runnable(paddle.to_tensor(x)).numpy(), expected, rtol=1e-4, atol=1e-5)


class TorchSequenceNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(12, 8)
        self.rnn = torch.nn.GRU(8, 8, num_layers=2, batch_first=True, bidirectional=True)
        self.attn = torch.nn.MultiheadAttention(16, 2, batch_first=True)
        self.encoder = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.act = torch.nn.PReLU()
        self.head = torch.nn.Linear(16, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.rnn(self.embed(tokens))[0]
        hidden = self.attn(hidden, hidden, hidden, need_weights=False)[0]
        return self.head(self.act(self.encoder(hidden)))


class PaddleSequenceNet(paddle.nn.Layer):
    """The same network, its layers defined in another order (PaDiff's copy would zip them wrong)."""

    def __init__(self) -> None:
        super().__init__()
        self.head = paddle.nn.Linear(16, 4)
        self.attn = paddle.nn.MultiHeadAttention(16, 2)
        self.embed = paddle.nn.Embedding(12, 8)
        self.rnn = paddle.nn.GRU(8, 8, num_layers=2, direction="bidirect")
        self.encoder = paddle.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0)
        self.act = paddle.nn.PReLU()

    def forward(self, tokens: paddle.Tensor) -> paddle.Tensor:
        hidden = self.rnn(self.embed(tokens))[0]
        hidden = self.attn(hidden, hidden, hidden)
        return self.head(self.act(self.encoder(hidden)))


SEQUENCE_PAIRS = {
    "": "",
    "embed": "embed",
    "rnn": "rnn",
    "attn": "attn",
    "encoder": "encoder",
    "encoder.self_attn": "encoder.self_attn",
    "encoder.linear1": "encoder.linear1",
    "encoder.linear2": "encoder.linear2",
    "encoder.norm1": "encoder.norm1",
    "encoder.norm2": "encoder.norm2",
    "act": "act",
    "head": "head",
}


@pytest.mark.parametrize("torch_is_base", [True, False], ids=["torch-base", "paddle-base"])
def test_matcher_pairs_attention_and_recurrent_layers_and_diff_is_aligned(torch_is_base: bool) -> None:
    # training mode (every dropout is 0): paddle's RNN backward fails in eval mode (no reserve space kept)
    torch_model, paddle_model = TorchSequenceNet(), PaddleSequenceNet()
    base, raw = (torch_model, paddle_model) if torch_is_base else (paddle_model, torch_model)
    randomize(base, 6)
    inputs = {"tokens": RNG.integers(0, 12, (2, 5)).astype(np.int64)}
    layer_map = suggest_map(base, raw, inputs)
    pairs = {pair.base: pair.raw for pair in layer_map.pairs if pair.base in SEQUENCE_PAIRS}
    assert pairs == SEQUENCE_PAIRS
    assert layer_map.unmatched_base == layer_map.unmatched_raw == []
    assert not [f for f in preflight(base, raw, layer_map) if f.severity.value == "error"]
    report = diff(base, raw, inputs, layer_map)
    assert report.ok, report.first_divergence


def test_decoder_cross_attention_pairs_by_call_order() -> None:
    base = torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
    raw = paddle.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0)
    raw.eval()
    inputs = [array((2, 5, 8)), array((2, 4, 8))]
    layer_map = suggest_map(base, raw, inputs)
    assert layer_map.raw_of("multihead_attn") == "cross_attn"
    assert layer_map.raw_of("self_attn") == "self_attn"
    assert not any(pair.candidates for pair in layer_map.pairs)
    assert diff(base, raw, inputs, layer_map).ok


def test_diff_handles_tensors_one_side_lacks() -> None:
    base = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.LayerNorm(3, elementwise_affine=False))
    raw = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.LayerNorm(3))
    report = diff(base, raw, {"input": array((2, 4))})
    assert report.ok, report.first_divergence


class TorchStyleNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, bias=False)
        self.norm = torch.nn.InstanceNorm2d(4)  # torch's default: no affine tensors
        self.act = torch.nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class PaddleStyleNet(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3)  # paddle's default: a bias
        self.norm = paddle.nn.InstanceNorm2D(4)  # paddle's default: scale and bias
        self.act = paddle.nn.PReLU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.act(self.norm(self.conv(x)))


def test_layers_holding_tensors_on_one_side_only_are_matched_and_filled() -> None:
    base, raw = TorchStyleNet(), PaddleStyleNet()
    randomize(raw, 9)  # a missed fill of scale (1), bias (0) or conv bias (0) shows
    inputs = {"x": array((2, 3, 6, 6))}
    layer_map = suggest_map(base, raw, inputs)
    assert {pair.base: pair.raw for pair in layer_map.pairs} == {"": "", "conv": "conv", "norm": "norm", "act": "act"}
    assert "const(1) -> scale" in [t.describe() for t in layer_map.pair_for_base("norm").tensors]
    assert diff(base, raw, inputs, layer_map).ok
