"""A LoRA-wrapped linear (HF peft) against one adapter-holding layer (paddleformers).

torch (base), as ``peft`` wraps a LLaMA-family projection: ``q_proj`` becomes
a ``LoraLinear`` holding ``base_layer`` (the original ``nn.Linear``,
``[out, in]``) and ``lora_A.default`` / ``lora_B.default``. paddle (raw), as
paddleformers does: one ``LoRALinear`` (a ``paddle.nn.Linear`` subclass)
holding ``weight`` ``[in, out]``, ``bias``, ``lora_A`` ``[in, r]`` and
``lora_B`` ``[r, out]``. Every adapter tensor pairs by shape; the square base
weight fits as it is and transposed, and no conversion knows ``LoRALinear``.
PaDiff-style copies take it as it is (logits off by ~1); without inputs
padiff_graph reports ``ambiguous-transform`` and copies nothing, with inputs
a probe finds the transpose.
"""

import numpy as np
import paddle
import torch

DIM, RANK, ALPHA = 16, 4, 8

#: the wrapper and the adapter-holding layer hold their tensors at different depths, so their
#: tensors pair under the root (each layer pair is reported as a wrapper): ``EXPECTED_TENSOR_LINKS``
EXPECTED_PAIRS = {"o_proj": "o_proj"}
EXPECTED_FINDINGS = {"wrap-layer"}
EXPECTED_STATIC_REFUSED = True
EXPECTED_TENSOR_LINKS = [
    link
    for name in ("q_proj", "v_proj")
    for link in (
        f"{name}.base_layer.weight -> {name}.weight: transpose",
        f"{name}.base_layer.bias -> {name}.bias",
        f"{name}.lora_A.default.weight -> {name}.lora_A: transpose",
        f"{name}.lora_B.default.weight -> {name}.lora_B: transpose",
    )
]


class LoraLinear(torch.nn.Module):
    """``peft.tuners.lora.Linear``: the wrapped layer plus a low-rank update, named per adapter."""

    def __init__(self, base_layer, rank, alpha):
        super().__init__()
        self.base_layer = base_layer
        self.lora_A = torch.nn.ModuleDict({"default": torch.nn.Linear(base_layer.in_features, rank, bias=False)})
        self.lora_B = torch.nn.ModuleDict({"default": torch.nn.Linear(rank, base_layer.out_features, bias=False)})
        torch.nn.init.normal_(self.lora_B["default"].weight, std=0.2)  # a trained adapter: not peft's zeros
        self.scaling = alpha / rank

    def forward(self, x):
        return self.base_layer(x) + self.lora_B["default"](self.lora_A["default"](x)) * self.scaling


class LoRALinear(paddle.nn.Linear):
    """paddleformers' ``LoRALinear``: the base weight ``[in, out]`` and the adapters in one layer."""

    def __init__(self, cin, cout, rank, alpha):
        super().__init__(cin, cout)
        self.lora_A = self.create_parameter([cin, rank])
        self.lora_B = self.create_parameter([rank, cout])
        self.scaling = alpha / rank

    def forward(self, x):
        return super().forward(x) + (x @ self.lora_A @ self.lora_B) * self.scaling


class TorchAttentionOut(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = LoraLinear(torch.nn.Linear(DIM, DIM), RANK, ALPHA)
        self.v_proj = LoraLinear(torch.nn.Linear(DIM, DIM), RANK, ALPHA)
        self.o_proj = torch.nn.Linear(DIM, DIM)

    def forward(self, x):
        return self.o_proj(torch.tanh(self.q_proj(x)) * self.v_proj(x))


class PaddleAttentionOut(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.q_proj = LoRALinear(DIM, DIM, RANK, ALPHA)
        self.v_proj = LoRALinear(DIM, DIM, RANK, ALPHA)
        self.o_proj = paddle.nn.Linear(DIM, DIM)

    def forward(self, x):
        return self.o_proj(paddle.tanh(self.q_proj(x)) * self.v_proj(x))


def inputs():
    return {"x": np.random.default_rng(4).standard_normal((3, DIM), dtype=np.float32)}


def base():
    return TorchAttentionOut(), inputs()


def raw():
    return PaddleAttentionOut(), inputs()
