"""A LLaMA-style block: split projections (HF transformers) against fused ones (paddleformers).

torch (base) writes attention with ``q_proj``/``k_proj``/``v_proj`` and the
MLP with ``gate_proj``/``up_proj``, each an ``nn.Linear`` ``[out, in]``; the
paddle port (raw) fuses them as paddleformers does: ``qkv_proj`` ``[d, 3d]``
and ``gate_up_fused_proj`` ``[d, 2f]`` (paddle ``[in, out]``), split in
``forward``. No conversion is registered for these user classes; the tool
cuts each fused tensor into consecutive slices along an axis, with or
without a transpose, and a probe with inputs keeps the cut under which the
raw model computes what the base one does. Without inputs the pair stops at
``needs-special-init`` (the stub guesses the cut), never a silent copy.
"""

import numpy as np
import paddle
import torch

DIM, HIDDEN, LAYERS = 16, 32, 2

EXPECTED_PAIRS = {
    "embed": "embed",
    **{f"layers.{i}.{n}": f"layers.{i}.{n}" for i in range(LAYERS) for n in ("norm1", "norm2", "attn.o_proj")},
    **{f"layers.{i}.mlp.down_proj": f"layers.{i}.mlp.down_proj" for i in range(LAYERS)},
    "head": "head",
}
EXPECTED_FINDINGS = {"wrap-layer"}
EXPECTED_STATIC_REFUSED = True
EXPECTED_TENSOR_LINKS = [
    link
    for i in range(LAYERS)
    for link in (
        *(
            f"layers.{i}.attn.{name}_proj.weight -> layers.{i}.attn.qkv_proj.weight[:, {k * DIM}:{(k + 1) * DIM}]: "
            "transpose"
            for k, name in enumerate("qkv")
        ),
        f"layers.{i}.mlp.gate_proj.weight -> layers.{i}.mlp.gate_up_fused_proj.weight[:, 0:{HIDDEN}]: transpose",
        f"layers.{i}.mlp.up_proj.weight -> layers.{i}.mlp.gate_up_fused_proj.weight[:, {HIDDEN}:{2 * HIDDEN}]: "
        "transpose",
    )
]


class TorchAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = torch.nn.Linear(DIM, DIM)
        self.k_proj = torch.nn.Linear(DIM, DIM)
        self.v_proj = torch.nn.Linear(DIM, DIM)
        self.o_proj = torch.nn.Linear(DIM, DIM, bias=False)

    def forward(self, x):
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        weights = torch.softmax(q @ k.transpose(-1, -2) / DIM**0.5, dim=-1)
        return self.o_proj(weights @ v)


class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj = torch.nn.Linear(DIM, HIDDEN, bias=False)
        self.up_proj = torch.nn.Linear(DIM, HIDDEN, bias=False)
        self.down_proj = torch.nn.Linear(HIDDEN, DIM, bias=False)

    def forward(self, x):
        return self.down_proj(torch.nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(DIM)
        self.attn = TorchAttention()
        self.norm2 = torch.nn.LayerNorm(DIM)
        self.mlp = TorchMLP()

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PaddleAttention(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.qkv_proj = paddle.nn.Linear(DIM, 3 * DIM)
        self.o_proj = paddle.nn.Linear(DIM, DIM, bias_attr=False)

    def forward(self, x):
        q, k, v = paddle.split(self.qkv_proj(x), 3, axis=-1)
        weights = paddle.nn.functional.softmax(q @ k.transpose([0, 2, 1]) / DIM**0.5, axis=-1)
        return self.o_proj(weights @ v)


class PaddleMLP(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.gate_up_fused_proj = paddle.nn.Linear(DIM, 2 * HIDDEN, bias_attr=False)
        self.down_proj = paddle.nn.Linear(HIDDEN, DIM, bias_attr=False)

    def forward(self, x):
        gate, up = paddle.chunk(self.gate_up_fused_proj(x), 2, axis=-1)
        return self.down_proj(paddle.nn.functional.silu(gate) * up)


class PaddleBlock(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.norm1 = paddle.nn.LayerNorm(DIM)
        self.attn = PaddleAttention()
        self.norm2 = paddle.nn.LayerNorm(DIM)
        self.mlp = PaddleMLP()

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Linear(8, DIM)
        self.layers = torch.nn.ModuleList([TorchBlock() for _ in range(LAYERS)])
        self.head = torch.nn.Linear(DIM, 4)

    def forward(self, x):
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.embed = paddle.nn.Linear(8, DIM)
        self.layers = paddle.nn.LayerList([PaddleBlock() for _ in range(LAYERS)])
        self.head = paddle.nn.Linear(DIM, 4)

    def forward(self, x):
        h = self.embed(x)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)


def inputs():
    return {"x": np.random.default_rng(2).standard_normal((2, 5, 8), dtype=np.float32)}


def base():
    return TorchNet(), inputs()


def raw():
    return PaddleNet(), inputs()
