"""Hyperparameters that change numerics, in one spelling for both frameworks.

Adapters export a builtin layer's scalar attributes with leading underscores
dropped (paddle's ``_epsilon`` becomes ``epsilon``). Each rule here reads one
canonical setting of a family from either framework's spelling, so a wrong
epsilon or an approximate GELU is found before a single batch runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Reader = Callable[[str, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class ConfigRule:
    """One canonical setting: how to read it from a framework's attributes."""

    setting: str
    read: Reader


def _first(*keys: str) -> Reader:
    def read(framework: str, config: Mapping[str, Any]) -> Any:
        for key in keys:
            if key in config:
                return config[key]
        return None

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


_EPS = ConfigRule("eps", _first("eps", "epsilon"))
_NORMS = ("layernorm", "groupnorm", "instancenorm1d", "instancenorm2d", "instancenorm3d")
_BATCHNORMS = ("batchnorm", "batchnorm1d", "batchnorm2d", "batchnorm3d", "syncbatchnorm")

#: family -> rules compared on every matched pair of that family
CONFIG_RULES: dict[str, tuple[ConfigRule, ...]] = {
    "gelu": (ConfigRule("approximate", _gelu_approximate),),
    "leakyrelu": (ConfigRule("negative_slope", _first("negative_slope")),),
    "elu": (ConfigRule("alpha", _first("alpha")),),
    "softmax": (ConfigRule("dim", _first("dim", "axis")),),
    "dropout": (ConfigRule("p", _first("p")),),
    **{family: (_EPS,) for family in _NORMS},
    **{family: (_EPS, ConfigRule("momentum", _batchnorm_momentum)) for family in _BATCHNORMS},
}


def read_settings(family: str, framework: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical settings of one layer (missing ones omitted)."""
    settings = {}
    for rule in CONFIG_RULES.get(family, ()):
        value = rule.read(framework, config)
        if value is not None:
            settings[rule.setting] = value
    return settings


def same_setting(left: Any, right: Any) -> bool:
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return abs(float(left) - float(right)) <= 1e-9 * max(1.0, abs(float(left)), abs(float(right)))
    return bool(left == right)
