"""paddle.vision's resnet18 (base) against a torch ResNet-18 with torchvision's names (raw)."""

import sys
from pathlib import Path

import numpy as np
import paddle

sys.path.insert(0, str(Path(__file__).parent))
from torch_resnet import resnet18

_BLOCKS = [f"layer{stage}.{block}" for stage in range(1, 5) for block in range(2)]
_DOWNSAMPLED = [f"layer{stage}.0.downsample.{i}" for stage in range(2, 5) for i in range(2)]
_LAYERS = ["conv1", "bn1", "fc"] + [f"{b}.{p}" for b in _BLOCKS for p in ("conv1", "bn1", "conv2", "bn2")]
EXPECTED_PAIRS = {path: path for path in _LAYERS + _DOWNSAMPLED}
EXPECTED_FINDINGS = {"kind-mismatch"}


def inputs():
    return {"x": np.random.default_rng(8).standard_normal((1, 3, 64, 64), dtype=np.float32)}


def base():
    model = paddle.vision.models.resnet18(num_classes=10)
    model.eval()
    return model, inputs()


def raw():
    model = resnet18(num_classes=10)
    model.eval()
    return model, inputs()
