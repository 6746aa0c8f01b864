"""Single-step mode feeds each raw layer input the base input that corresponds to it, not the one at its position."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import diff

X = [np.random.default_rng(0).standard_normal((2, 5, 8), dtype=np.float32)]


class RotaryTorch(torch.nn.Module):
    """HF's order: ``(x, mask, cos, sin)``, the mask as ``[batch, tokens]`` ids of kept tokens."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x, mask, cos, sin):
        h = self.proj(x)
        return (h * cos + h.flip(-1) * sin) * mask[..., None].to(h.dtype)


class RotaryPaddle(paddle.nn.Layer):
    """Another port's order: ``(x, sin, cos, mask)``, the mask as a float ``[batch, 1, tokens, 1]``
    (and the model builds the rotary tables for every batch row, not once)."""

    def __init__(self, sign=1.0):
        super().__init__()
        self.proj = paddle.nn.Linear(8, 8)
        self.sign = sign  # -1: a planted bug inside this layer

    def forward(self, x, sin, cos, mask):
        h = self.proj(x)
        return (h * cos + self.sign * h.flip(-1) * sin) * mask[:, 0]


def tables(tokens):
    angle = np.arange(tokens, dtype=np.float32)[None, :, None] / 3
    return np.cos(angle), np.sin(angle)


class ModelTorch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.rotary, self.head = RotaryTorch(), torch.nn.Linear(8, 4)

    def forward(self, x):
        cos, sin = (torch.from_numpy(t) for t in tables(x.shape[1]))
        mask = (torch.arange(x.shape[1]) < 4).long().expand(x.shape[0], -1)
        return self.head(self.rotary(x, mask, cos, sin))


class ModelPaddle(paddle.nn.Layer):
    def __init__(self, sign=1.0):
        super().__init__()
        self.rotary, self.head = RotaryPaddle(sign), paddle.nn.Linear(8, 4)

    def forward(self, x):
        cos, sin = (paddle.to_tensor(t).expand([x.shape[0], -1, -1]) for t in tables(x.shape[1]))  # per batch row
        mask = (paddle.arange(x.shape[1]) < 4).astype("float32").reshape([1, 1, -1, 1]).expand([x.shape[0], 1, -1, 1])
        return self.head(self.rotary(x, sin, cos, mask))


@pytest.mark.parametrize("torch_is_base", [True, False])
def test_inputs_in_another_order_and_form_are_fed_by_correspondence(torch_is_base) -> None:
    base, raw = (ModelTorch(), ModelPaddle()) if torch_is_base else (ModelPaddle(), ModelTorch())
    report = diff(base, raw, X, single_step=True)
    assert report.ok, report.first_divergence
    mask = 3 if torch_is_base else 1  # the raw mask's position; x, cos and sin are matched by value
    fed = {c.index for c in report.comparisons if c.base == "rotary" and c.stage == "input"}
    assert fed == {0, 1, 2, 3} - {mask}
    [entry] = report.not_fed
    assert entry.startswith(f"rotary (call 0): input {mask} ") and "was not fed" in entry


def test_a_fault_inside_the_layer_is_still_named_there() -> None:
    report = diff(ModelTorch(), ModelPaddle(sign=-1.0), X, single_step=True)
    assert tuple(report.first_divergence) == ("rotary", "rotary", "forward")
    assert [d.base for d in report.divergences if d.stage == "forward"] == ["rotary"]
