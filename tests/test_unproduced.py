"""Gradients a framework leaves ``None`` (a routing path, an expert no token reaches) are not produced."""

import numpy as np
import paddle
import pytest
import torch

from padiff_graph import diff

X = [np.random.default_rng(0).standard_normal((6, 8), dtype=np.float32)]


class RouterTorch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = torch.nn.Linear(8, 2)

    def forward(self, x):
        return torch.topk(torch.softmax(self.gate(x), -1), 1)  # (weights, expert ids)


class RouterPaddle(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.gate = paddle.nn.Linear(8, 2)

    def forward(self, x):
        return paddle.topk(paddle.nn.functional.softmax(self.gate(x), -1), 1)


class MoETorch(torch.nn.Module):
    """Two experts; expert 1 is called only if a token is routed to it."""

    def __init__(self):
        super().__init__()
        self.router = RouterTorch()
        self.experts = torch.nn.ModuleList([torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)])

    def forward(self, x):
        weights, ids = self.router(x)
        out = torch.zeros_like(x)
        for index, expert in enumerate(self.experts):
            chosen = (ids == index).to(x.dtype) * weights
            if bool(chosen.any()):
                out = out + chosen * expert(x)
        return out


class MoEPaddle(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.router = RouterPaddle()
        self.experts = paddle.nn.LayerList([paddle.nn.Linear(8, 8), paddle.nn.Linear(8, 8)])

    def forward(self, x):
        weights, ids = self.router(x)
        out = paddle.zeros_like(x)
        for index, expert in enumerate(self.experts):
            chosen = (ids == index).astype(x.dtype) * weights
            if bool(chosen.any()):
                out = out + chosen * expert(x)
        return out


def routed_to_expert_0_only(model):
    """Every token goes to expert 0 (the copy carries the router's bias to the other side)."""
    bias = model.router.gate.bias
    if isinstance(model, torch.nn.Module):
        with torch.no_grad():
            bias.copy_(torch.tensor([50.0, -50.0]))
    else:
        bias.set_value(paddle.to_tensor([50.0, -50.0]))
    return model


@pytest.mark.parametrize("base_framework", ["paddle", "torch"])
def test_gradients_left_none_are_not_produced_and_no_crash(base_framework) -> None:
    paddle_model, torch_model = MoEPaddle(), MoETorch()
    if base_framework == "paddle":
        base, raw = routed_to_expert_0_only(paddle_model), torch_model
    else:
        base, raw = routed_to_expert_0_only(torch_model), paddle_model
    report = diff(base, raw, X)
    assert report.ok, report.first_divergence
    compared = {(item.base, item.stage) for item in report.comparisons}
    # the unused expert ran on neither side: no output, no gradient on either side, nothing compared
    assert not any(path.startswith("experts.1") for path, _ in compared)
    assert ("experts.0", "grad:weight") in compared
    # the expert ids (output 1 of the router) carry no gradient: only the weights' gradient is compared
    router_gradients = [item for item in report.comparisons if item.base == "router" and item.stage == "backward"]
    assert [item.index for item in router_gradients] == [0]
    assert not report.unproduced
