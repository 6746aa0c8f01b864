"""A pair whose layers return one quantity in other forms (shapes, complex against real values): not a
divergence when everything else agrees; complex records compared in both parts.

HuggingFace's DeepseekV2 and Llama4 rotary layers return complex rotation
factors; their paddle ports return cos and sin tables. Found by running the
diff on HF's ``DeepseekV2Model`` against paddleformers': the rotary pair was
named the first divergence on shapes alone.
"""

import numpy as np
import paddle
import torch

import padiff_graph as pg

HIDDEN, HEADS, SEQUENCE = 16, 2, 6
HEAD = HIDDEN // HEADS
X = np.random.default_rng(0).standard_normal((2, SEQUENCE, HIDDEN), dtype=np.float32)


class TorchRotary(torch.nn.Module):
    """Complex rotation factors [1, sequence, head / 2]."""

    def forward(self, x):
        inverse = 1.0 / (10000 ** (torch.arange(0, HEAD, 2, dtype=torch.float32) / HEAD))
        angles = torch.outer(torch.arange(x.shape[1], dtype=torch.float32), inverse)
        return torch.polar(torch.ones_like(angles), angles)[None]


class TorchAttention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (torch.nn.Linear(HIDDEN, HIDDEN) for _ in range(4))

    def forward(self, x, factors):
        batch, length, _ = x.shape

        def heads(t):
            return t.reshape(batch, length, HEADS, HEAD).transpose(1, 2)

        def rotate(t):  # (first half, second half) as one complex number each
            turned = torch.complex(t[..., : HEAD // 2], t[..., HEAD // 2 :]) * factors[:, None]
            return torch.cat([turned.real, turned.imag], -1)

        q, k, v = rotate(heads(self.q(x))), rotate(heads(self.k(x))), heads(self.v(x))
        weights = torch.softmax(q @ k.transpose(-1, -2) / HEAD**0.5, -1)
        return self.o((weights @ v).transpose(1, 2).reshape(batch, length, HIDDEN))


class TorchModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Linear(HIDDEN, HIDDEN)
        self.rotary = TorchRotary()
        self.attn = TorchAttention()
        self.head = torch.nn.Linear(HIDDEN, 4)

    def forward(self, x):
        hidden = self.embed(x)
        return self.head(self.attn(hidden, self.rotary(hidden)))


class PaddleRotary(paddle.nn.Layer):
    """cos and sin tables [1, sequence, head]."""

    def forward(self, x):
        inverse = 1.0 / (10000 ** (paddle.arange(0, HEAD, 2, dtype="float32") / HEAD))
        angles = paddle.outer(paddle.arange(x.shape[1], dtype="float32"), inverse)
        table = paddle.concat([angles, angles], -1)
        return table.cos()[None], table.sin()[None]


class PaddleAttention(paddle.nn.Layer):
    def __init__(self, scale: float) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (paddle.nn.Linear(HIDDEN, HIDDEN) for _ in range(4))
        self.scale = scale

    def forward(self, x, cos, sin):
        batch, length, _ = x.shape

        def heads(t):
            return t.reshape([batch, length, HEADS, HEAD]).transpose([0, 2, 1, 3])

        def rotate(t):
            half = paddle.concat([-t[..., HEAD // 2 :], t[..., : HEAD // 2]], -1)
            return t * cos[:, None] + half * sin[:, None]

        q, k, v = rotate(heads(self.q(x))), rotate(heads(self.k(x))), heads(self.v(x))
        weights = paddle.nn.functional.softmax(q @ k.transpose([0, 1, 3, 2]) * self.scale, -1)
        return self.o((weights @ v).transpose([0, 2, 1, 3]).reshape([batch, length, HIDDEN]))


class PaddleModel(paddle.nn.Layer):
    def __init__(self, scale: float = HEAD**-0.5) -> None:
        super().__init__()
        self.embed = paddle.nn.Linear(HIDDEN, HIDDEN)
        self.rotary = PaddleRotary()
        self.attn = PaddleAttention(scale)
        self.head = paddle.nn.Linear(HIDDEN, 4)

    def forward(self, x):
        hidden = self.embed(x)
        cos, sin = self.rotary(hidden)
        return self.head(self.attn(hidden, cos, sin))


class TorchPadded(torch.nn.Module):
    def __init__(self, padding: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=padding)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


class PaddlePadded(paddle.nn.Layer):
    def __init__(self, padding: int) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3, padding=padding)
        self.pool = paddle.nn.AdaptiveAvgPool2D(1)
        self.fc = paddle.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


def test_rotary_tables_in_other_forms_are_not_a_divergence_in_either_direction() -> None:
    for base, raw in ((TorchModel(), PaddleModel()), (PaddleModel(), TorchModel())):
        report = pg.diff(base, raw, {"x": X})
        assert report.ok, report.first_divergence
        left_out = {pair.base: pair.why for pair in report.not_compared}
        assert "rotary" in left_out and "other forms" in left_out["rotary"]
        assert not any(c.base == "rotary" for c in report.comparisons if c.kind == "forward")
        assert any(c.base == "attn" and c.ok for c in report.comparisons if c.kind == "forward")


def test_a_shape_difference_stays_the_divergence_when_anything_else_differs() -> None:
    report = pg.diff(TorchModel(), PaddleModel(scale=1.0), {"x": X})  # attention scores left unscaled
    first = report.first_divergence
    assert first is not None and (first.base, first.stage) == ("rotary", "forward")
    assert "the first record whose values differ is at base 'attn.o'" in first.message
    assert not any(pair.base == "rotary" for pair in report.not_compared)


def test_a_convolution_padded_otherwise_is_named_even_though_the_pooling_after_it_restores_the_shape() -> None:
    images = np.random.default_rng(1).standard_normal((2, 3, 8, 8), dtype=np.float32)
    report = pg.diff(TorchPadded(1), PaddlePadded(0), {"x": images})
    assert report.first_divergence is not None and report.first_divergence.base == "conv"
    assert pg.diff(TorchPadded(1), PaddlePadded(1), {"x": images}).ok


class TorchTurn(torch.nn.Module):
    """Complex rotation factors; ``conjugate``: the port's bug, turning the other way (real parts unchanged)."""

    def __init__(self, conjugate: bool = False) -> None:
        super().__init__()
        self.conjugate = conjugate

    def forward(self, x):
        factors = torch.polar(torch.ones(x.shape[-1] // 2), torch.linspace(0.1, 0.9, x.shape[-1] // 2))
        return factors.conj() if self.conjugate else factors


class TorchTurned(torch.nn.Module):
    def __init__(self, conjugate: bool = False) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.turn = TorchTurn(conjugate)
        self.out = torch.nn.Linear(4, 2)

    def forward(self, x):
        hidden = self.fc(x)
        turned = torch.complex(hidden[..., :2], hidden[..., 2:]) * self.turn(hidden)
        return self.out(torch.cat([turned.real, turned.imag], -1))


def test_complex_records_compare_their_imaginary_parts_too() -> None:
    """A conjugated rotation agrees in its real parts: it was passed, and the bug blamed on the root."""
    rows = np.random.default_rng(2).standard_normal((3, 4), dtype=np.float32)
    for mode in ("strict", "mean"):
        torch.manual_seed(0)
        base, raw = TorchTurned(), TorchTurned(conjugate=True)
        report = pg.diff(base, raw, {"x": rows}, mode=mode)
        first = report.first_divergence
        assert first is not None and first.base == "turn", (mode, first)
        if mode == "mean":  # the replay's evidence is the raw layer's own error, not a zero
            assert "the raw layer alone differs by 0.0e+00" not in first.message
        torch.manual_seed(0)
        assert pg.diff(TorchTurned(), TorchTurned(), {"x": rows}, mode=mode).ok


def test_complex_against_real_values_is_another_form_not_a_value_difference() -> None:
    from padiff_graph.run.numerics import Mode, compare_arrays, compare_summary, summarize

    factors = np.exp(1j * np.linspace(0.1, 0.9, 8)).astype(np.complex64)
    verdict = compare_arrays(factors, factors.real.copy(), 1e-6, 1e-6, Mode.STRICT)
    assert not verdict.ok and verdict.other_form and "complex vs real" in verdict.note
    assert compare_arrays(factors, factors.copy(), 1e-6, 1e-6, Mode.STRICT).ok
    assert not compare_arrays(factors, factors.conj(), 1e-6, 1e-6, Mode.STRICT).ok
    assert compare_summary(summarize(factors), factors.real.copy(), 1e-6, 1e-6).other_form
