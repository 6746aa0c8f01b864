"""paddle's legacy ``BatchNorm`` (one class for every dimension) in a container against torch's ``BatchNorm2d``."""

import numpy as np
import paddle
import torch

from padiff_graph import assign_weights, suggest_map

X = {"x": np.random.default_rng(5).standard_normal((2, 8, 5, 5)).astype(np.float32)}


class TorchLayer(torch.nn.Module):
    """torchvision's DenseNet layer: norms and convs side by side."""

    def __init__(self):
        super().__init__()
        self.norm1, self.conv1 = torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 8, 1)
        self.norm2, self.conv2 = torch.nn.BatchNorm2d(8), torch.nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.conv2(self.norm2(self.conv1(self.norm1(x))))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(TorchLayer(), TorchLayer())

    def forward(self, x):
        return self.layers(x)


class PaddleNormConv(paddle.nn.Layer):
    def __init__(self, kernel):
        super().__init__()
        self.norm, self.conv = paddle.nn.BatchNorm(8), paddle.nn.Conv2D(8, 8, kernel, padding=kernel // 2)

    def forward(self, x):
        return self.conv(self.norm(x))


class PaddleLayer(paddle.nn.Layer):
    """paddle.vision's DenseNet layer: the same, grouped in pairs, with the legacy ``BatchNorm``."""

    def __init__(self):
        super().__init__()
        self.first, self.second = PaddleNormConv(1), PaddleNormConv(3)

    def forward(self, x):
        return self.second(self.first(x))


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.blocks = paddle.nn.LayerList([PaddleLayer(), PaddleLayer()])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_layers_holding_a_legacy_batchnorm_pair_with_their_batchnorm2d_counterparts_and_copy() -> None:
    torch_model, paddle_model = TorchNet().eval(), PaddleNet()
    paddle_model.eval()
    layer_map = suggest_map(torch_model, paddle_model, X)
    assert layer_map.raw_of("layers.1") == "blocks.1"
    assert layer_map.raw_of("layers.1.norm2") == "blocks.1.second.norm"
    assign_weights(torch_model, paddle_model, layer_map)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(X["x"])).numpy()
    np.testing.assert_allclose(paddle_model(paddle.to_tensor(X["x"])).numpy(), expected, rtol=1e-5, atol=1e-5)
