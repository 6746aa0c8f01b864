"""Conv + BatchNorm (torch -> paddle): running statistics are buffers in
torch and non-trainable parameters in paddle, so PaDiff never copies them."""

import numpy as np
import paddle
import torch

EXPECTED_PAIRS = {"conv": "conv", "bn": "bn", "fc": "fc"}
EXPECTED_FINDINGS = {"kind-mismatch"}


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.bn = torch.nn.BatchNorm2d(6)
        self.relu = torch.nn.ReLU()
        self.fc = torch.nn.Linear(6 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.relu(self.bn(self.conv(x))).flatten(1))


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 6, 3)
        self.bn = paddle.nn.BatchNorm2D(6)
        self.relu = paddle.nn.ReLU()
        self.fc = paddle.nn.Linear(6 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.relu(self.bn(self.conv(x))).flatten(1))


def inputs():
    return {"x": np.random.default_rng(7).standard_normal((2, 3, 6, 6), dtype=np.float32)}


def base():
    model = TorchNet()
    with torch.no_grad():  # non-trivial statistics, so a missed copy shows
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    model.eval()
    return model, inputs()


def raw():
    model = PaddleNet()
    model.eval()
    return model, inputs()
