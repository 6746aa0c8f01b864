"""The raw port wraps each block in extra parameter-less containers (torch -> torch).

Old PaDiff dropped such layers, newer versions keep them, so the structures
no longer line up (``PADIFF_SIKP_WRAP_LAYER`` was the workaround).
"""

import numpy as np
import torch

EXPECTED_PAIRS = {
    "blocks.0.fc": "blocks.0.inner.body.fc",
    "blocks.0.norm": "blocks.0.inner.body.norm",
    "blocks.1.fc": "blocks.1.inner.body.fc",
    "blocks.1.norm": "blocks.1.inner.body.norm",
    "out": "out",
}
EXPECTED_FINDINGS = {"wrap-layer"}


class Block(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc = torch.nn.Linear(dim, dim)
        self.norm = torch.nn.LayerNorm(dim)

    def forward(self, x):
        return x + self.norm(torch.relu(self.fc(x)))


class Wrapper(torch.nn.Module):
    """Adds nothing but a level of nesting."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body(x)


class Net(torch.nn.Module):
    def __init__(self, wrapped=False):
        super().__init__()
        blocks = [Block(8) for _ in range(2)]
        if wrapped:
            blocks = [torch.nn.ModuleDict({"inner": Wrapper(block)}) for block in blocks]
        self.blocks = torch.nn.ModuleList(blocks)
        self.out = torch.nn.Linear(8, 2)
        self.wrapped = wrapped

    def forward(self, x):
        for block in self.blocks:
            x = block["inner"](x) if self.wrapped else block(x)
        return self.out(x)


def inputs():
    return {"x": np.random.default_rng(4).standard_normal((3, 8), dtype=np.float32)}


def base():
    torch.manual_seed(0)
    return Net(), inputs()


def raw():
    torch.manual_seed(1)
    return Net(wrapped=True), inputs()
