"""Renamed attributes and another nesting: flat ``features`` vs ``stem``/``stage1`` (paddle -> torch)."""

import numpy as np
import paddle
import torch

EXPECTED_PAIRS = {
    "features.0": "stem.conv",
    "features.1": "stem.bn",
    "features.3": "stage1.conv",
    "features.4": "stage1.bn",
    "classifier": "head.fc",
}
EXPECTED_FINDINGS = {"kind-mismatch", "wrap-layer"}


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.features = paddle.nn.Sequential(
            paddle.nn.Conv2D(3, 8, 3, padding=1),
            paddle.nn.BatchNorm2D(8),
            paddle.nn.ReLU(),
            paddle.nn.Conv2D(8, 16, 3, stride=2, padding=1),
            paddle.nn.BatchNorm2D(16),
            paddle.nn.ReLU(),
        )
        self.pool = paddle.nn.AdaptiveAvgPool2D(1)
        self.classifier = paddle.nn.Linear(16, 5)

    def forward(self, image):
        return self.classifier(self.pool(self.features(image)).flatten(1))


class ConvBn(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.bn = torch.nn.BatchNorm2d(cout)
        self.act = torch.nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ConvBn(3, 8, 1)
        self.stage1 = ConvBn(8, 16, 2)
        self.head = Head()

    def forward(self, image):
        return self.head(self.stage1(self.stem(image)))


def inputs():
    return {"image": np.random.default_rng(5).standard_normal((2, 3, 8, 8), dtype=np.float32)}


def base():
    model = PaddleNet()
    model.eval()
    return model, inputs()


def raw():
    model = TorchNet()
    model.eval()
    return model, inputs()
