"""A PaDiff user's alignment script, switched to padiff_graph by changing one import.

Everything below the import is written against PaDiff's documented API
(``auto_diff``, ``assign_weight``, ``create_model``, ``try_dump``,
``check_report``...); ``tests/test_compat.py`` runs it as it is.

Run: ``python examples/padiff_script.py``
"""

# ruff: noqa: F403, F405  (the star import is the point: the rest is PaDiff code)
import tempfile

import numpy as np
import paddle
import torch

from padiff_graph.compat import *  # was: from padiff import *


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(16)
        self.up = torch.nn.Linear(16, 32)
        self.act = torch.nn.GELU()
        self.down = torch.nn.Linear(32, 16)

    def forward(self, x):
        return x + self.down(self.act(self.up(self.norm(x))))


class PaddleBlock(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        # defined in another order than the torch block: PaDiff would copy up <-> norm and fail
        self.down = paddle.nn.Linear(32, 16)
        self.up = paddle.nn.Linear(16, 32)
        self.norm = paddle.nn.LayerNorm(16)
        self.act = paddle.nn.GELU()

    def forward(self, x):
        return x + self.down(self.act(self.up(self.norm(x))))


data = np.random.default_rng(0).standard_normal((8, 16)).astype("float32")
inputs = ({"x": torch.as_tensor(data)}, {"x": paddle.to_tensor(data)})

# 1. one forward and backward, weights copied from the torch block
module, layer = TorchBlock(), PaddleBlock()
assert auto_diff(module, layer, inputs, atol=1e-4, rtol=1e-3, compare_mode="strict", single_step=False)

# 2. three training steps with a loss and optimizers
target = np.random.default_rng(1).standard_normal((8, 16)).astype("float32")
torch_loss = lambda out: torch.nn.functional.mse_loss(out, torch.as_tensor(target))  # noqa: E731
paddle_loss = lambda out: paddle.nn.functional.mse_loss(out, paddle.to_tensor(target))  # noqa: E731
optimizers = [
    torch.optim.SGD(module.parameters(), lr=0.05),
    paddle.optimizer.SGD(learning_rate=0.05, parameters=layer.parameters()),
]
assert auto_diff(
    module, layer, inputs, loss_fns=[torch_loss, paddle_loss], optimizers=optimizers, atol=1e-4, rtol=1e-3, steps=3
)

# 3. the weights the other way round, paddle as the base
assert assign_weight(layer, module)

# 4. offline: run each model on its own, dump every second step, check the dumps
with tempfile.TemporaryDirectory(prefix="padiff_dump_") as dump_root:
    set_dump_root_path(dump_root)
    module, layer = create_model(TorchBlock(), dump_freq=2), create_model(PaddleBlock(), dump_freq=2)
    assert assign_weight(module, layer)
    for _ in range(4):
        loss = module(torch.as_tensor(data)).mean()
        module.backward(loss)
        module.try_dump()
        loss = layer(paddle.to_tensor(data)).mean()
        layer.backward(loss)
        layer.try_dump()
    cfg = {"atol": 1e-4, "rtol": 1e-3, "compare_mode": "strict"}
    for step in (0, 2):
        assert check_report(f"{module.dump_path}/step_{step}", f"{layer.dump_path}/step_{step}", cfg)
        assert check_params(f"{module.dump_path}/step_{step}", f"{layer.dump_path}/step_{step}", cfg)
print("all checks passed")
