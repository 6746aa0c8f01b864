"""One layer creates its two parameters in the other order (paddle -> paddle).

A custom affine norm holds ``gamma`` and ``beta`` of the same shape; the raw
port creates ``beta`` first. PaDiff walks parameters in creation order and
silently swaps them.
"""

import numpy as np
import paddle

EXPECTED_PAIRS = {"fc": "fc", "norm": "norm"}
EXPECTED_FINDINGS = {"order-mismatch"}


class AffineNorm(paddle.nn.Layer):
    def __init__(self, size, beta_first=False):
        super().__init__()
        if beta_first:
            self.beta = self.create_parameter([size], default_initializer=paddle.nn.initializer.Constant(0.0))
            self.gamma = self.create_parameter([size], default_initializer=paddle.nn.initializer.Constant(1.0))
        else:
            self.gamma = self.create_parameter([size], default_initializer=paddle.nn.initializer.Constant(1.0))
            self.beta = self.create_parameter([size], default_initializer=paddle.nn.initializer.Constant(0.0))

    def forward(self, x):
        x = (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-5)
        return x * self.gamma + self.beta


class Net(paddle.nn.Layer):
    def __init__(self, beta_first=False):
        super().__init__()
        self.fc = paddle.nn.Linear(8, 8)
        self.norm = AffineNorm(8, beta_first)

    def forward(self, x):
        return self.norm(self.fc(x))


def inputs():
    return {"x": np.random.default_rng(2).standard_normal((3, 8), dtype=np.float32)}


def base():
    model = Net()
    with paddle.no_grad():
        model.norm.gamma.set_value(paddle.linspace(0.5, 1.5, 8))
        model.norm.beta.set_value(paddle.linspace(-1.0, 1.0, 8))
    return model, inputs()


def raw():
    return Net(beta_first=True), inputs()
