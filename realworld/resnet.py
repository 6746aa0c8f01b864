"""ResNet: torchvision's ``resnet18``/``resnet50`` against ``paddle.vision.models.resnet18``/``resnet50``.

torchvision 0.28.0's wheel is built against CUDA torch, and ``import torchvision``
loads its C++ ops, which fail beside the CPU build of torch 2.13.0. The model
definitions are pure Python, so :func:`torchvision_resnet` loads
``torchvision/models/resnet.py`` from the unpacked wheel with the ``torchvision``,
``torchvision.models`` and ``torchvision.transforms`` packages registered as bare
namespaces: their ``__init__`` (and so the C++ ops) never runs, every module
``resnet.py`` imports is torchvision's own file. Both libraries use the same
attribute names (``layer2.0.downsample.1``), so the map is the identity.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import torch

from realworld.common import Bug, Family, alike, layer_at, set_eps, swap_activation

#: the unpacked torchvision wheel (``make realworld`` puts it there)
TORCHVISION = Path(
    os.environ.get("REALWORLD_TORCHVISION", Path(__file__).parent.parent / ".venv-realworld/torchvision")
)
CLASSES, BATCH, SIZE = 10, 2, 64


def torchvision_resnet() -> types.ModuleType:
    """``torchvision.models.resnet``, imported without running torchvision's package ``__init__``."""
    return torchvision_models("resnet")


def torchvision_models(name: str) -> types.ModuleType:
    """``torchvision.models.<name>`` (``"densenet"``...), without running torchvision's package ``__init__``."""
    module = f"torchvision.models.{name}"
    if module in sys.modules:
        return sys.modules[module]
    root = TORCHVISION / "torchvision"
    if not (root / "models" / f"{name}.py").is_file():
        raise FileNotFoundError(f"no unpacked torchvision wheel at {TORCHVISION} (make realworld unpacks it)")
    if "torchvision" not in sys.modules:
        _register_bare_packages(root)
    return importlib.import_module(module)


def _register_bare_packages(root: Path) -> None:
    """Register ``torchvision``, ``torchvision.models`` and ``torchvision.transforms`` as bare namespaces."""
    for package_name, folder in (("torchvision", root), ("torchvision.models", root / "models")):
        package = types.ModuleType(package_name)
        package.__path__ = [str(folder)]
        sys.modules[package_name] = package
    transforms = types.ModuleType("torchvision.transforms")
    transforms.__path__ = [str(root / "transforms")]
    sys.modules["torchvision.transforms"] = transforms
    # transforms/_presets.py does ``from . import functional as F, InterpolationMode``: the one name the
    # package __init__ would have re-exported
    functional = importlib.import_module("torchvision.transforms.functional")
    transforms.InterpolationMode = functional.InterpolationMode  # type: ignore[attr-defined]


def _pairs(blocks: tuple[int, ...], bottleneck: bool) -> dict[str, str]:
    names = ["conv1", "bn1", "conv2", "bn2", "relu"] + (["conv3", "bn3"] if bottleneck else [])
    paths = ["conv1", "bn1", "relu", "maxpool", "avgpool", "fc"]
    for stage, count in enumerate(blocks, start=1):
        paths.append(f"layer{stage}")
        for block in range(count):
            paths += [f"layer{stage}.{block}"] + [f"layer{stage}.{block}.{name}" for name in names]
        # torchvision and paddle.vision both downsample in each stage's first block, except
        # stage 1 of ResNet-18 (stride 1, same width)
        if stage > 1 or bottleneck:
            paths += [f"layer{stage}.0.downsample", *(f"layer{stage}.0.downsample.{i}" for i in range(2))]
    return {path: path for path in paths}


def inputs() -> dict[str, np.ndarray]:
    """A batch of random 64x64 images."""
    return {"x": np.random.default_rng(6).standard_normal((BATCH, 3, SIZE, SIZE), dtype=np.float32)}


def _skipless(block: Any) -> None:
    """The BasicBlock at hand computes relu(bn2(conv2(relu(bn1(conv1(x)))))), without ``+ identity``."""
    block.forward = lambda x: block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))))


def _family(name: str, depth: int, blocks: tuple[int, ...], bugs: tuple[Bug, ...]) -> Family:
    def torch_model() -> torch.nn.Module:
        return getattr(torchvision_resnet(), f"resnet{depth}")(num_classes=CLASSES).eval()

    def paddle_model() -> paddle.nn.Layer:
        model = getattr(paddle.vision.models, f"resnet{depth}")(num_classes=CLASSES)
        model.eval()
        return model

    return Family(name, torch_model, paddle_model, inputs, _pairs(blocks, depth >= 50), bugs)


BUGS_18 = (
    alike(
        "gelu-for-relu", "layer2.0's activation layer is GELU instead of ReLU", "layer2.0.relu", swap_activation("GELU")
    ),
    alike("eps", "layer1.1.bn2 has eps 0.5 instead of 1e-5", "layer1.1.bn2", partial(set_eps, eps=0.5)),
    Bug(
        "missing-residual",
        "block layer3.1 leaves out its identity shortcut",
        lambda m: _skipless(layer_at(m, "layer3.1")),
        lambda m: _skipless(layer_at(m, "layer3.1")),
        "layer3.1",
        "layer3.1",
    ),
)
BUGS_50 = (alike("eps", "layer4.2.bn3 has eps 0.5 instead of 1e-5", "layer4.2.bn3", partial(set_eps, eps=0.5)),)

RESNET18 = _family("resnet18", 18, (2, 2, 2, 2), BUGS_18)
RESNET50 = _family("resnet50", 50, (3, 4, 6, 3), BUGS_50)
