"""The bundled example pair: a small vision transformer, torch (base) and a paddle port (raw).

The port is faithful but written differently, the way real ports are: the
class token is an ``Embedding`` instead of a raw parameter, the blocks sit
in an extra ``LayerList`` wrapper, attention projections are defined in
another order, and BatchNorm keeps its statistics as parameters. PaDiff's
order-based copy breaks on each of these. ``raw(faulty=True)`` also plants
the classic porting bug: GELU with the tanh approximation.

Framework imports happen inside the factories, so importing this module
costs nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DIM, HEADS, PATCH, CLASSES = 32, 4, 4, 10


def inputs() -> dict[str, np.ndarray]:
    return {"images": np.random.default_rng(0).standard_normal((2, 3, 16, 16), dtype=np.float32)}


def base() -> tuple[Any, dict[str, np.ndarray]]:
    """The torch reference model."""
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query = nn.Linear(DIM, DIM)
            self.key = nn.Linear(DIM, DIM)
            self.value = nn.Linear(DIM, DIM)
            self.out = nn.Linear(DIM, DIM)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            batch, tokens, _ = x.shape

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.reshape(batch, tokens, HEADS, DIM // HEADS).transpose(1, 2)

            q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
            weights = torch.softmax(q @ k.transpose(-1, -2) / (DIM // HEADS) ** 0.5, dim=-1)
            return self.out((weights @ v).transpose(1, 2).reshape(batch, tokens, DIM))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(DIM)
            self.attn = Attention()
            self.norm2 = nn.LayerNorm(DIM)
            self.fc1 = nn.Linear(DIM, 2 * DIM)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(2 * DIM, DIM)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.norm1(x))
            return x + self.fc2(self.act(self.fc1(self.norm2(x))))

    class TinyViT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(3, DIM, PATCH, PATCH)
            self.patch_norm = nn.BatchNorm2d(DIM)
            self.cls_token = nn.Parameter(torch.randn(1, DIM) * 0.02)
            self.blocks = nn.ModuleList([Block() for _ in range(2)])
            self.norm = nn.LayerNorm(DIM)
            self.head = nn.Linear(DIM, CLASSES)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = self.patch_norm(self.patch(images)).flatten(2).transpose(1, 2)
            cls = self.cls_token.expand(x.shape[0], 1, DIM)
            x = torch.cat([cls, x], dim=1)
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x[:, 0]))

    torch.manual_seed(0)
    model = TinyViT()
    with torch.no_grad():
        model.patch_norm.running_mean.uniform_(-0.1, 0.1)  # type: ignore[union-attr]
        model.patch_norm.running_var.uniform_(0.8, 1.2)  # type: ignore[union-attr]
    model.eval()
    return model, inputs()


def raw(faulty: bool = False) -> tuple[Any, dict[str, np.ndarray]]:
    """The paddle port; ``faulty`` plants an approximate GELU."""
    import paddle
    from paddle import nn

    class Attention(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.out = nn.Linear(DIM, DIM)
            self.value = nn.Linear(DIM, DIM)
            self.key = nn.Linear(DIM, DIM)
            self.query = nn.Linear(DIM, DIM)

        def forward(self, x: paddle.Tensor) -> paddle.Tensor:
            batch, tokens = x.shape[0], x.shape[1]

            def heads(t: paddle.Tensor) -> paddle.Tensor:
                return t.reshape([batch, tokens, HEADS, DIM // HEADS]).transpose([0, 2, 1, 3])

            q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
            weights = nn.functional.softmax(q @ k.transpose([0, 1, 3, 2]) / (DIM // HEADS) ** 0.5, axis=-1)
            return self.out((weights @ v).transpose([0, 2, 1, 3]).reshape([batch, tokens, DIM]))

    class Mlp(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(DIM, 2 * DIM)
            self.act = nn.GELU(approximate=faulty)
            self.fc2 = nn.Linear(2 * DIM, DIM)

        def forward(self, x: paddle.Tensor) -> paddle.Tensor:
            return self.fc2(self.act(self.fc1(x)))

    class Block(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(DIM)
            self.attn = Attention()
            self.norm2 = nn.LayerNorm(DIM)
            self.mlp = Mlp()

        def forward(self, x: paddle.Tensor) -> paddle.Tensor:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class Encoder(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.LayerList([Block() for _ in range(2)])

        def forward(self, x: paddle.Tensor) -> paddle.Tensor:
            for layer in self.layers:
                x = layer(x)
            return x

    class TinyViT(nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2D(3, DIM, PATCH, PATCH)
            self.patch_norm = nn.BatchNorm2D(DIM)
            self.cls_token = nn.Embedding(1, DIM)
            self.encoder = Encoder()
            self.norm = nn.LayerNorm(DIM)
            self.head = nn.Linear(DIM, CLASSES)

        def forward(self, images: paddle.Tensor) -> paddle.Tensor:
            x = self.patch_norm(self.patch(images)).flatten(2).transpose([0, 2, 1])
            cls = self.cls_token.weight.expand([x.shape[0], 1, DIM])
            x = self.encoder(paddle.concat([cls, x], axis=1))
            return self.head(self.norm(x[:, 0]))

    model = TinyViT()
    model.eval()
    return model, inputs()


def raw_faulty() -> tuple[Any, dict[str, np.ndarray]]:
    return raw(faulty=True)
