"""More torchvision families against ``paddle.vision.models``: MobileNetV2, MobileNetV3-small, VGG-11 (BN),
DenseNet-121 and ShuffleNetV2 x0.5.

torchvision's own model files are imported as :mod:`realworld.resnet` does. Each
expected map is written from the two libraries' attribute names: identical for
MobileNetV2 and VGG; renamed and regrouped for the others (paddle's MobileNetV3
names a block's convolutions ``expand_conv``/``bottleneck_conv``/``linear_conv``
where torchvision numbers them; paddle's DenseNet and ShuffleNetV2 name every
layer differently and group ShuffleNet's flat branch ``Sequential`` into
conv-norm-activation triples). Layers with no counterpart on the other side
(torchvision's per-block ``Sequential`` containers, an activation folded into
paddle's legacy ``BatchNorm(act=...)``) are left out of the map.

SqueezeNet 1.1, AlexNet and GoogLeNet are not here: the two libraries build
different networks under those names (FINDINGS.md, "Vision families left out").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import paddle
import torch

from realworld.common import Bug, Family, layer_at, replace, set_eps, transpose_linear
from realworld.resnet import torchvision_models

CLASSES, BATCH = 10, 2


def _images(size: int) -> Callable[[], dict[str, np.ndarray]]:
    def inputs() -> dict[str, np.ndarray]:
        return {"x": np.random.default_rng(6).standard_normal((BATCH, 3, size, size), dtype=np.float32)}

    return inputs


def _family(
    model: str,
    torch_model: Callable[[], torch.nn.Module],
    paddle_model: Callable[[], paddle.nn.Layer],
    size: int,
    paddle_input: str = "x",
) -> Callable[[dict[str, str], tuple[Bug, ...]], Family]:
    def build_torch() -> torch.nn.Module:
        return torch_model().eval()

    def build_paddle() -> paddle.nn.Layer:
        layer = paddle_model()
        layer.eval()
        return layer

    renamed = {"x": paddle_input} if paddle_input != "x" else {}
    return lambda pairs, bugs: Family(model, build_torch, build_paddle, _images(size), pairs, bugs, renamed, True)


def _same(paths: list[str]) -> dict[str, str]:
    return {path: path for path in paths}


def _conv_norm_act(prefix: str, activation: bool = True) -> list[str]:
    """A conv-norm(-activation) ``Sequential`` at ``prefix`` and its numbered children."""
    return [prefix, f"{prefix}.0", f"{prefix}.1"] + ([f"{prefix}.2"] if activation else [])


# --- MobileNetV2: the same attribute names on both sides -------------------------------------------------

#: (expansion t, blocks n) per stage of both libraries' default ``inverted_residual_setting``
_MOBILENET_V2_STAGES = ((1, 1), (6, 2), (6, 3), (6, 4), (6, 3), (6, 3), (6, 1))


def _mobilenet_v2_pairs() -> dict[str, str]:
    paths = ["features", *_conv_norm_act("features.0"), "classifier", "classifier.0", "classifier.1"]
    index = 1
    for expansion, blocks in _MOBILENET_V2_STAGES:
        for _ in range(blocks):
            block = f"features.{index}"
            convs = [f"{block}.conv.0"] if expansion == 1 else [f"{block}.conv.0", f"{block}.conv.1"]
            paths += [block, f"{block}.conv", *(p for conv in convs for p in _conv_norm_act(conv))]
            last = len(convs)
            paths += [f"{block}.conv.{last}", f"{block}.conv.{last + 1}"]
            index += 1
    return _same([*paths, *_conv_norm_act(f"features.{index}")])


def _skipless_inverted_residual(block: Any) -> None:
    """The inverted residual block at hand returns ``conv(x)`` without ``x +``."""
    block.forward = lambda x: block.conv(x)


MOBILENET_V2 = _family(
    "mobilenet_v2",
    lambda: torchvision_models("mobilenetv2").mobilenet_v2(num_classes=CLASSES),
    lambda: paddle.vision.models.mobilenet_v2(num_classes=CLASSES),
    64,
)(
    _mobilenet_v2_pairs(),
    (
        Bug(
            "missing-residual",
            "block features.3 (24 -> 24 channels, stride 1) leaves out its identity shortcut",
            lambda m: _skipless_inverted_residual(layer_at(m, "features.3")),
            lambda m: _skipless_inverted_residual(layer_at(m, "features.3")),
            "features.3",
            "features.3",
        ),
    ),
)

# --- MobileNetV3-small: torchvision numbers a block's layers, paddle names them ---------------------------

#: per block of both libraries' small configuration: (has an expansion conv, has a squeeze-excitation)
_MOBILENET_V3_SMALL_BLOCKS = (
    (False, True),
    (True, False),
    (True, False),
    *((True, True),) * 8,
)
_SE_CHILDREN = ("avgpool", "fc1", "fc2", "activation", "scale_activation")


def _mobilenet_v3_small_pairs() -> dict[str, str]:
    pairs = dict(zip(_conv_norm_act("features.0"), _conv_norm_act("conv"), strict=True))
    for index, (expand, excite) in enumerate(_MOBILENET_V3_SMALL_BLOCKS):
        torch_block, paddle_block = f"features.{index + 1}", f"blocks.{index}"
        pairs[torch_block] = paddle_block
        parts = (["expand_conv"] if expand else []) + ["bottleneck_conv"] + (["mid_se"] if excite else [])
        parts.append("linear_conv")
        for position, part in enumerate(parts):
            torch_path, paddle_path = f"{torch_block}.block.{position}", f"{paddle_block}.{part}"
            if part == "mid_se":
                pairs[torch_path] = paddle_path
                pairs.update({f"{torch_path}.{c}": f"{paddle_path}.{c}" for c in _SE_CHILDREN})
            else:
                activation = part != "linear_conv"
                torch_paths, paddle_paths = (
                    _conv_norm_act(torch_path, activation),
                    _conv_norm_act(paddle_path, activation),
                )
                pairs.update(zip(torch_paths, paddle_paths, strict=True))
    last = f"features.{len(_MOBILENET_V3_SMALL_BLOCKS) + 1}"
    pairs.update(zip(_conv_norm_act(last), _conv_norm_act("lastconv"), strict=True))
    pairs.update(_same(["avgpool", "classifier", *(f"classifier.{i}" for i in range(4))]))
    return pairs


MOBILENET_V3_SMALL = _family(
    "mobilenet_v3_small",
    lambda: torchvision_models("mobilenetv3").mobilenet_v3_small(num_classes=CLASSES),
    lambda: paddle.vision.models.mobilenet_v3_small(num_classes=CLASSES),
    64,
)(
    _mobilenet_v3_small_pairs(),
    (
        Bug(
            "relu-for-hardswish",
            "block features.6's expansion activation is ReLU instead of Hardswish",
            lambda m: replace(m, "features.6.block.0.2", torch.nn.ReLU()),
            lambda m: replace(m, "blocks.5.expand_conv.2", paddle.nn.ReLU()),
            "features.6.block.0.2",
            "blocks.5.expand_conv.2",
        ),
    ),
)

# --- VGG-11 with BatchNorm: the same attribute names on both sides ---------------------------------------

_VGG_11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _vgg_pairs() -> dict[str, str]:
    paths = ["features", "avgpool", "classifier", *(f"classifier.{i}" for i in range(7))]
    index = 0
    for entry in _VGG_11:
        width = 1 if entry == "M" else 3  # a max pool, or conv + batch norm + relu
        paths += [f"features.{i}" for i in range(index, index + width)]
        index += width
    return _same(paths)


VGG11_BN = _family(
    "vgg11_bn",
    lambda: torchvision_models("vgg").vgg11_bn(num_classes=CLASSES),
    lambda: paddle.vision.models.vgg11(batch_norm=True, num_classes=CLASSES),
    32,
)(
    _vgg_pairs(),
    (
        Bug(
            "transposed-weight",
            "classifier.3 (4096 x 4096) multiplies by its weight transposed",
            lambda m: transpose_linear(m, "classifier.3"),
            lambda m: transpose_linear(m, "classifier.3"),
            "classifier.3",
            "classifier.3",
        ),
    ),
)

# --- DenseNet-121: every name differs; paddle folds the ReLU into its BatchNorm(act="relu") ---------------

_DENSENET_121_BLOCKS = (6, 12, 24, 16)


def _densenet_pairs() -> dict[str, str]:
    pairs = {
        "features.conv0": "conv1_func._conv",
        "features.norm0": "conv1_func._batch_norm",
        "features.pool0": "pool2d_max",
        "features.norm5": "batch_norm",
        "classifier": "out",
    }
    for block, layers in enumerate(_DENSENET_121_BLOCKS, start=1):
        torch_block, paddle_block = f"features.denseblock{block}", f"db_conv_{block + 1}"
        pairs[torch_block] = paddle_block
        for layer in range(1, layers + 1):
            torch_layer, paddle_layer = f"{torch_block}.denselayer{layer}", f"{paddle_block}.conv{block + 1}_{layer}"
            pairs[torch_layer] = paddle_layer
            for half in (1, 2):
                pairs[f"{torch_layer}.norm{half}"] = f"{paddle_layer}.bn_ac_func{half}._batch_norm"
                pairs[f"{torch_layer}.conv{half}"] = f"{paddle_layer}.bn_ac_func{half}._conv"
        if block < len(_DENSENET_121_BLOCKS):
            torch_transition, paddle_transition = f"features.transition{block}", f"tr_conv{block + 1}_blk"
            pairs[torch_transition] = paddle_transition
            pairs[f"{torch_transition}.norm"] = f"{paddle_transition}.conv_ac_func._batch_norm"
            pairs[f"{torch_transition}.conv"] = f"{paddle_transition}.conv_ac_func._conv"
            pairs[f"{torch_transition}.pool"] = f"{paddle_transition}.pool2d_avg"
    return pairs


DENSENET_121 = _family(
    "densenet121",
    lambda: torchvision_models("densenet").densenet121(num_classes=CLASSES),
    lambda: paddle.vision.models.densenet121(num_classes=CLASSES),
    64,
    paddle_input="input",
)(
    _densenet_pairs(),
    (
        Bug(
            "eps",
            "transition2's batch norm has eps 0.5 instead of 1e-5",
            lambda m: set_eps(m, "features.transition2.norm", 0.5),
            lambda m: set_eps(m, "tr_conv3_blk.conv_ac_func._batch_norm", 0.5),
            "features.transition2.norm",
            "tr_conv3_blk.conv_ac_func._batch_norm",
        ),
    ),
)

# --- ShuffleNetV2 x0.5: paddle groups torchvision's flat branches into conv-norm(-activation) triples ------

_SHUFFLENET_REPEATS = (4, 8, 4)
#: paddle's group for each layer of torchvision's flat branches (by index), in a stage's first (downsampling) block
_DOWNSAMPLING = {
    "branch1": ("_conv_dw_1", "_conv_dw_1", "_conv_linear_1", "_conv_linear_1", "_conv_linear_1"),
    "branch2": ("_conv_pw_2",) * 3 + ("_conv_dw_2",) * 2 + ("_conv_linear_2",) * 3,
}
#: the same in every other block, which leaves its input's first half alone (no ``branch1``)
_BASIC = {"branch2": ("_conv_pw",) * 3 + ("_conv_dw",) * 2 + ("_conv_linear",) * 3}


def _shufflenet_pairs() -> dict[str, str]:
    pairs = dict(zip(_conv_norm_act("conv1"), _conv_norm_act("_conv1"), strict=True))
    pairs.update({"maxpool": "_max_pool", "fc": "_fc"})
    pairs.update(zip(_conv_norm_act("conv5"), _conv_norm_act("_last_conv"), strict=True))
    for stage, repeats in enumerate(_SHUFFLENET_REPEATS, start=2):
        for block in range(repeats):
            torch_block, paddle_block = f"stage{stage}.{block}", f"{stage}_{block + 1}"
            pairs[torch_block] = paddle_block
            for branch, groups in (_DOWNSAMPLING if block == 0 else _BASIC).items():
                for index, group in enumerate(groups):
                    within = index - groups.index(group)
                    pairs[f"{torch_block}.{branch}.{index}"] = f"{paddle_block}.{group}.{within}"
    return pairs


SHUFFLENET_V2 = _family(
    "shufflenet_v2_x0_5",
    lambda: torchvision_models("shufflenetv2").shufflenet_v2_x0_5(num_classes=CLASSES),
    lambda: paddle.vision.models.shufflenet_v2_x0_5(num_classes=CLASSES),
    64,
    paddle_input="inputs",
)(
    _shufflenet_pairs(),
    (
        Bug(
            "gelu-for-relu",
            "stage3.0's second branch uses GELU instead of ReLU after its first pointwise conv",
            lambda m: replace(m, "stage3.0.branch2.2", torch.nn.GELU()),
            lambda m: replace(m, "3_1._conv_pw_2.2", paddle.nn.GELU()),
            "stage3.0.branch2.2",
            "3_1._conv_pw_2.2",
        ),
    ),
)

FAMILIES = (MOBILENET_V2, MOBILENET_V3_SMALL, VGG11_BN, DENSENET_121, SHUFFLENET_V2)
