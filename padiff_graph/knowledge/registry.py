"""The registry the pipeline uses by default, and the decorators users register conversions with.

:data:`DEFAULT_REGISTRY` starts with the shipped conversions
(:mod:`padiff_graph.knowledge.shipped`); :func:`register_conversion` and
PaDiff's :func:`add_special_init` add to it.
"""

from __future__ import annotations

from collections.abc import Callable

from padiff_graph.knowledge.conversions import Conversion, ConversionRegistry, InitFunction, PairTensors
from padiff_graph.knowledge.shipped import register_shipped

#: The registry the pipeline uses unless a caller passes its own: the shipped conversions, and the user's.
DEFAULT_REGISTRY = ConversionRegistry()
register_shipped(DEFAULT_REGISTRY)


def register_conversion(
    base_framework: str,
    base_class: str,
    raw_framework: str,
    raw_class: str,
    *,
    name: str | None = None,
    covers_subtree: bool = False,
    registry: ConversionRegistry = DEFAULT_REGISTRY,
) -> Callable[[PairTensors], PairTensors]:
    """Decorator: register a tensor-pairing function as a conversion.

    The function receives the two layers as :class:`LayerSide` records and
    returns tensor pairs, names relative to each layer; it serves both
    directions. A map file can name it (``init: my_package.inits:fused_qkv``).

    Example::

        @register_conversion("torch", "FusedQKV", "paddle", "SplitQKV", covers_subtree=True)
        def fused_qkv(base, raw):
            return [TensorPair.parse("qkv[0:64] -> q.weight: transpose"), ...]
    """

    def decorate(function: PairTensors) -> PairTensors:
        conversion = Conversion(name or function.__name__, function, covers_subtree)
        registry.register(base_framework, base_class, raw_framework, raw_class, conversion, function)
        return function

    return decorate


def add_special_init(
    base_framework: str,
    base_model_name: str,
    raw_framework: str,
    raw_model_name: str,
    func: InitFunction,
    *,
    registry: ConversionRegistry = DEFAULT_REGISTRY,
) -> None:
    """Register a PaDiff special init: ``func(base_layer, raw_layer)`` copies the weights itself.

    PaDiff's signature, unchanged. The function handles the whole sublayer
    (its descendants too). It is called as registered; for models passed in
    the other order, the copy runs it backwards by probing (which works for
    functions that only move values: copies, transposes, splits, concatenations).

    Example::

        add_special_init("torch", "BatchNorm2d", "paddle", "BatchNorm2D", init_batchnorm)
    """
    conversion = Conversion(getattr(func, "__name__", "special-init"), init=func, covers_subtree=True)
    registry.register(base_framework, base_model_name, raw_framework, raw_model_name, conversion)
