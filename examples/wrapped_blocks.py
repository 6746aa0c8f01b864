"""Blocks wrapped in parameter-less containers on one side: torch (base) against paddle (raw).

The paddle port wraps the whole network in a ``Model`` shell (``net``), keeps
its blocks in a ``LayerDict`` and wraps every block in two levels of
one-child containers (``net.blocks.block0.inner.body``). Old PaDiff
dropped such layers, newer versions keep them (``PADIFF_SIKP_WRAP_LAYER``
was the workaround); either way the two trees no longer line up.

The variant's wrappers are not pure: each block sits in a
``Sequential(Identity, block)`` (a wrapper with two children, one of them a
parameter-less layer), and the ``LayerDict`` is filled last block first, so
its definition order is the reverse of its call order.
"""

import numpy as np
import paddle
import torch

DIM, HIDDEN, BLOCKS, CLASSES = 16, 32, 4, 4

_BLOCK_LAYERS = ("fc1", "norm", "fc2")


def _expected_pairs(variant: bool) -> dict[str, str]:
    pairs = {"stem": "net.stem", "head": "net.head"}
    for block in range(BLOCKS):
        wrapped = f"net.blocks.block{block}.{'1' if variant else 'inner.body'}"
        pairs |= {f"blocks.{block}.{layer}": f"{wrapped}.{layer}" for layer in _BLOCK_LAYERS}
    return pairs


EXPECTED_PAIRS = _expected_pairs(variant=False)
EXPECTED_FINDINGS = {"wrap-layer"}
EXPECTED_VARIANT_PAIRS = _expected_pairs(variant=True)
EXPECTED_VARIANT_FINDINGS = {"order-mismatch", "wrap-layer"}


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(DIM, HIDDEN)
        self.norm = torch.nn.LayerNorm(HIDDEN)
        self.fc2 = torch.nn.Linear(HIDDEN, DIM)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.norm(self.fc1(x))))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Linear(8, DIM)
        self.blocks = torch.nn.ModuleList(TorchBlock() for _ in range(BLOCKS))
        self.head = torch.nn.Linear(DIM, CLASSES)

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class PaddleBlock(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc1 = paddle.nn.Linear(DIM, HIDDEN)
        self.norm = paddle.nn.LayerNorm(HIDDEN)
        self.fc2 = paddle.nn.Linear(HIDDEN, DIM)

    def forward(self, x):
        return x + self.fc2(paddle.nn.functional.relu(self.norm(self.fc1(x))))


class Body(paddle.nn.Layer):
    """Adds nothing but a level of nesting."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x)


class Inner(paddle.nn.Layer):
    def __init__(self, body):
        super().__init__()
        self.inner = body

    def forward(self, x):
        return self.inner(x)


class PaddleNet(paddle.nn.Layer):
    def __init__(self, impure=False):
        super().__init__()
        self.stem = paddle.nn.Linear(8, DIM)
        self.blocks = paddle.nn.LayerDict()
        for block in reversed(range(BLOCKS)) if impure else range(BLOCKS):
            wrapped = (
                paddle.nn.Sequential(paddle.nn.Identity(), PaddleBlock()) if impure else Inner(Body(PaddleBlock()))
            )
            self.blocks[f"block{block}"] = wrapped
        self.head = paddle.nn.Linear(DIM, CLASSES)

    def forward(self, x):
        x = self.stem(x)
        for block in range(BLOCKS):
            x = self.blocks[f"block{block}"](x)
        return self.head(x)


class Model(paddle.nn.Layer):
    """A top-level shell around the network, as training frameworks add."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x)


def inputs():
    return {"x": np.random.default_rng(70).standard_normal((3, 8), dtype=np.float32)}


def base():
    torch.manual_seed(70)
    return TorchNet(), inputs()


def raw():
    paddle.seed(70)
    return Model(PaddleNet()), inputs()


def variant():
    paddle.seed(71)
    return Model(PaddleNet(impure=True)), inputs()
