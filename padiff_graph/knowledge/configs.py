"""Hyperparameters that change numerics, in one spelling for both frameworks.

Adapters export a builtin layer's scalar attributes with leading underscores
dropped (paddle's ``_epsilon`` becomes ``epsilon``) and functions by name
(a transformer layer's ``activation``). Each rule here reads one canonical
setting of a family from either framework's spelling, so a wrong epsilon or
an approximate GELU is found before a single batch runs. Settings a class
fixes without storing them (paddle's ``UpsamplingBilinear2D`` always aligns
corners; its ``MultiHeadAttention`` is always batch-major) are in
:data:`IMPLICIT_CONFIG`.

Layout settings (``batch_first`` against paddle's ``time_major`` and
batch-major attention) are warnings: a model may transpose around the layer,
but the pair's outputs are then laid out differently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from padiff_graph.core.records import Severity
from padiff_graph.knowledge.families import BATCHNORM_FAMILIES

Reader = Callable[[str, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class ConfigRule:
    """One canonical setting: how to read it from a framework's attributes, and how much it matters."""

    setting: str
    read: Reader
    severity: Severity = Severity.ERROR
    advice: str = ""


def _first(*keys: str, default: Any = None) -> Reader:
    def read(framework: str, config: Mapping[str, Any]) -> Any:
        for key in keys:
            if key in config:
                return config[key]
        return default

    return read


def _optional(key: str) -> Reader:
    """A setting whose absence is a value (an ``Embedding`` without ``padding_idx``): ``"none"``."""

    def read(framework: str, config: Mapping[str, Any]) -> Any:
        if key not in config:
            return None
        return "none" if config[key] is None else config[key]

    return read


def _gelu_approximate(framework: str, config: Mapping[str, Any]) -> Any:
    value = config.get("approximate")
    if isinstance(value, bool):
        return "tanh" if value else "none"
    return value


def _batchnorm_momentum(framework: str, config: Mapping[str, Any]) -> Any:
    """torch's momentum weighs the new batch; paddle's weighs the running value."""
    value = config.get("momentum")
    if value is None:
        return None
    return round(1.0 - float(value), 12) if framework == "paddle" else float(value)


def _batch_first(framework: str, config: Mapping[str, Any]) -> Any:
    """torch ``batch_first``; paddle RNNs' ``time_major`` is its negation."""
    if "batch_first" in config:
        return bool(config["batch_first"])
    if "time_major" in config:
        return not config["time_major"]
    return None


def _bidirectional(framework: str, config: Mapping[str, Any]) -> Any:
    if "bidirectional" in config:
        return bool(config["bidirectional"])
    if "num_directions" in config:
        return int(config["num_directions"]) == 2
    return None


def _count_include_pad(framework: str, config: Mapping[str, Any]) -> Any:
    """torch counts padding in the average by default; paddle's ``exclusive`` (default True) does not.

    A pool without padding (nor ``ceil_mode``'s windows past the edge) averages no padding: the setting
    changes nothing there (torchvision's and paddle.vision's DenseNet transitions), so it is not read.
    """
    padding = config.get("padding", 0)
    paddings = padding if isinstance(padding, (list, tuple)) else [padding]
    unpadded = all(p == 0 or (isinstance(p, str) and p.upper() == "VALID") for p in paddings)
    if unpadded and not config.get("ceil_mode"):
        return None
    if "count_include_pad" in config:
        return bool(config["count_include_pad"])
    if "exclusive" in config:
        return not config["exclusive"]
    return None


def _align_corners(framework: str, config: Mapping[str, Any]) -> Any:
    value = config.get("align_corners")
    return bool(value) if "align_corners" in config else None


def _spatial(dims: int, *keys: str, fallback: tuple[str, ...] = ()) -> Reader:
    """A per-dimension setting as a tuple: ``2``, ``[2, 2]`` and paddle's ``[2, 2, 2, 2]`` agree.

    ``fallback`` keys are read when the setting is ``None`` (a pooling
    stride defaults to the kernel size).
    """

    def read(framework: str, config: Mapping[str, Any]) -> Any:
        value = _first(*keys)(framework, config)
        if value is None and fallback:
            value = _first(*fallback)(framework, config)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (value,) * dims
        if isinstance(value, list):
            if len(value) == 2 * dims and value[0::2] == value[1::2]:  # (before, after) per dimension
                return tuple(value[0::2])
            return tuple(value)
        return value

    return read


def _activation(framework: str, config: Mapping[str, Any]) -> Any:
    value = config.get("activation", config.get("nonlinearity"))
    return value.lstrip("_").lower() if isinstance(value, str) else None


_LAYOUT = "the pair's inputs and outputs are laid out differently; transpose around one of them"
_EPS = ConfigRule("eps", _first("eps", "epsilon"))
_DROPOUT = ConfigRule("dropout", _first("dropout"))
_BATCH_FIRST = ConfigRule("batch_first", _batch_first, Severity.WARNING, _LAYOUT)
#: HF's BERT (padding_idx=0) against paddleformers' (none) is a correct port whose forward passes agree.
_PADDING_IDX = ConfigRule(
    "padding_idx",
    _optional("padding_idx"),
    Severity.WARNING,
    "torch's padding_idx keeps that row's gradient at zero and still returns its values, paddle's also returns "
    "zeros for it: where the inputs hold that id, the row's gradient differs (and the output, where only the "
    "paddle layer has it and the row is not zero)",
)


def _convolution(dims: int) -> tuple[ConfigRule, ...]:
    return (
        ConfigRule("stride", _spatial(dims, "stride")),
        ConfigRule("padding", _spatial(dims, "padding")),
        ConfigRule("dilation", _spatial(dims, "dilation")),
        ConfigRule("groups", _first("groups")),
        ConfigRule("padding_mode", _first("padding_mode")),
    )


def _pooling(dims: int, average: bool) -> tuple[ConfigRule, ...]:
    rules = (
        ConfigRule("kernel_size", _spatial(dims, "kernel_size", "ksize")),
        ConfigRule("stride", _spatial(dims, "stride", fallback=("kernel_size", "ksize"))),
        ConfigRule("padding", _spatial(dims, "padding")),
        ConfigRule("ceil_mode", _first("ceil_mode")),
    )
    if average:
        return (*rules, ConfigRule("count_include_pad", _count_include_pad))
    return rules


_RECURRENT = (
    _BATCH_FIRST,
    ConfigRule("bidirectional", _bidirectional),
    ConfigRule("num_layers", _first("num_layers")),
    ConfigRule("dropout", _first("dropout")),
    ConfigRule("activation", _activation),
)
_TRANSFORMER = (
    ConfigRule("activation", _activation),
    ConfigRule("norm_first", _first("norm_first", "normalize_before")),
)

#: family -> rules compared on every matched pair of that family
CONFIG_RULES: dict[str, tuple[ConfigRule, ...]] = {
    "gelu": (ConfigRule("approximate", _gelu_approximate),),
    "leakyrelu": (ConfigRule("negative_slope", _first("negative_slope")),),
    "elu": (ConfigRule("alpha", _first("alpha")),),
    "softmax": (ConfigRule("dim", _first("dim", "axis")),),
    "logsoftmax": (ConfigRule("dim", _first("dim", "axis")),),
    "dropout": (ConfigRule("p", _first("p")), ConfigRule("mode", _first("mode"))),
    **{f"dropout{n}d": (ConfigRule("p", _first("p")),) for n in (1, 2, 3)},
    "upsample": (
        ConfigRule("mode", _first("mode")),
        ConfigRule("align_corners", _align_corners),
        ConfigRule("scale_factor", _first("scale_factor")),
        ConfigRule("size", _first("size")),
    ),
    "embedding": (_PADDING_IDX, ConfigRule("max_norm", _optional("max_norm"))),
    "multiheadattention": (
        ConfigRule("num_heads", _first("num_heads")),
        _DROPOUT,
        ConfigRule("add_zero_attn", _first("add_zero_attn")),
        _BATCH_FIRST,
    ),
    "transformerencoderlayer": _TRANSFORMER,
    "transformerdecoderlayer": _TRANSFORMER,
    "lstm": _RECURRENT,
    "gru": _RECURRENT,
    "rnn": _RECURRENT,
    "prelu": (ConfigRule("num_parameters", _first("num_parameters")),),
    "layernorm": (_EPS,),
    "groupnorm": (_EPS, ConfigRule("num_groups", _first("num_groups"))),
    **{
        f"instancenorm{n}d": (_EPS, ConfigRule("track_running_stats", _first("track_running_stats"))) for n in (1, 2, 3)
    },
    **{family: (_EPS, ConfigRule("momentum", _batchnorm_momentum)) for family in BATCHNORM_FAMILIES},
    **{f"conv{n}d": _convolution(n) for n in (1, 2, 3)},
    **{f"convtranspose{n}d": _convolution(n) for n in (1, 2, 3)},
    **{f"avgpool{n}d": _pooling(n, average=True) for n in (1, 2, 3)},
    **{f"maxpool{n}d": _pooling(n, average=False) for n in (1, 2, 3)},
    **{
        f"pad{n}d": (
            ConfigRule("mode", _first("mode")),
            ConfigRule("padding", _spatial(2 * n, "padding")),
            ConfigRule("value", _first("value")),
        )
        for n in (1, 2, 3)
    },
}

#: (framework, class) -> settings the class fixes without storing them
IMPLICIT_CONFIG: dict[tuple[str, str], dict[str, Any]] = {
    ("paddle", "UpsamplingBilinear2D"): {"mode": "bilinear", "align_corners": True},
    ("paddle", "UpsamplingNearest2D"): {"mode": "nearest", "align_corners": False},
    ("paddle", "MultiHeadAttention"): {"batch_first": True, "add_zero_attn": False},
    ("paddle", "ZeroPad2D"): {"mode": "constant", "value": 0.0},
    ("torch", "Dropout"): {"mode": "upscale_in_train"},
    ("torch", "Upsample"): {"align_corners": False},  # None means False for the modes that read it
    **{("paddle", f"InstanceNorm{n}D"): {"track_running_stats": False} for n in (1, 2, 3)},
    **{("torch", f"ReflectionPad{n}d"): {"mode": "reflect", "value": 0.0} for n in (1, 2, 3)},
    **{("torch", f"ReplicationPad{n}d"): {"mode": "replicate", "value": 0.0} for n in (1, 2, 3)},
    **{("torch", f"CircularPad{n}d"): {"mode": "circular", "value": 0.0} for n in (1, 2, 3)},
    **{("torch", f"ConstantPad{n}d"): {"mode": "constant"} for n in (1, 2, 3)},
    **{("torch", f"ZeroPad{n}d"): {"mode": "constant"} for n in (1, 2, 3)},
}


def read_settings(family: str, framework: str, class_name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical settings of one layer (missing ones omitted)."""
    implicit = IMPLICIT_CONFIG.get((framework, class_name), {})
    merged = {**implicit, **{k: v for k, v in config.items() if v is not None or k not in implicit}}
    settings = {}
    for rule in CONFIG_RULES.get(family, ()):
        value = rule.read(framework, merged)
        if value is not None:
            settings[rule.setting] = value
    return settings


def rule_for(family: str, setting: str) -> ConfigRule | None:
    return next((rule for rule in CONFIG_RULES.get(family, ()) if rule.setting == setting), None)


def same_setting(left: Any, right: Any) -> bool:
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return abs(float(left) - float(right)) <= 1e-9 * max(1.0, abs(float(left)), abs(float(right)))
    if isinstance(left, tuple) and isinstance(right, tuple):
        return len(left) == len(right) and all(same_setting(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


def builtin_activation(config: Mapping[str, Any]) -> str | None:
    """The activation a layer applies to its own output, by name: paddle's legacy ``BatchNorm(act="relu")``
    keeps it as ``_act`` (exported as ``act``); ``None`` for a layer without one."""
    value = config.get("act")
    return value.lower() if isinstance(value, str) and value else None
