"""The conversion registry: how two layer classes' tensors correspond.

A conversion is keyed by (framework, class or family) on each side and
returns :class:`~padiff_graph.transforms.TensorPair` records, so it is pure
data about layouts: the weight copy, its verification and the inverse
direction all follow from it. Registering torch -> paddle also serves
paddle -> torch: :meth:`ConversionRegistry.find` inverts the pairs.

Users add their own with :func:`register_conversion` (a decorator) or
:meth:`ConversionRegistry.register`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from padiff_graph.knowledge.families import family_of
from padiff_graph.records import TensorInfo
from padiff_graph.transforms import IDENTITY, TRANSPOSE, TensorPair, Transform


@dataclass(frozen=True)
class LayerSide:
    """What a conversion sees of one layer.

    ``tensors`` are the layer's own, by local name; ``subtree_tensors`` add its
    descendants' by relative dotted name (``q_proj.weight``), collected on
    first use since only conversions that cover a subtree need them.
    """

    framework: str
    class_name: str
    builtin: bool
    tensors: Mapping[str, TensorInfo]
    collect_subtree: Callable[[], Mapping[str, TensorInfo]] = field(repr=False, compare=False)
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return family_of(self.class_name, self.builtin)

    @cached_property
    def subtree_tensors(self) -> Mapping[str, TensorInfo]:
        return self.collect_subtree()


PairTensors = Callable[[LayerSide, LayerSide], Sequence[TensorPair]]


@dataclass(frozen=True)
class Conversion:
    """A named way to pair two layers' tensors.

    ``covers_subtree`` conversions map their descendants' tensors too (a
    fused attention block owns what the other side keeps in child Linears),
    so the matcher does not pair those descendants separately.
    """

    name: str
    pair_tensors: PairTensors
    covers_subtree: bool = False

    def fits(self, base: LayerSide, raw: LayerSide) -> bool:
        """Whether this conversion pairs at least one tensor and every pair's shapes agree."""
        base_tensors = base.subtree_tensors if self.covers_subtree else base.tensors
        raw_tensors = raw.subtree_tensors if self.covers_subtree else raw.tensors
        pairs = self.pair_tensors(base, raw)
        for pair in pairs:
            if pair.base not in base_tensors or pair.raw not in raw_tensors:
                return False
            produced = pair.transform.output_shape(base_tensors[pair.base].shape)
            if produced != pair.transform.region_shape(raw_tensors[pair.raw].shape):
                return False
        return bool(pairs)

    def inverted(self) -> Conversion:
        """The same conversion read in the other direction."""
        forward = self.pair_tensors

        def pair_tensors(base: LayerSide, raw: LayerSide) -> list[TensorPair]:
            return [pair.inverse() for pair in forward(raw, base)]

        return replace(self, pair_tensors=pair_tensors)


Key = tuple[str, str, str, str]


class ConversionRegistry:
    """Conversions by (base framework, base class, raw framework, raw class)."""

    def __init__(self) -> None:
        self._conversions: dict[Key, Conversion] = {}

    def register(
        self,
        base_framework: str,
        base_class: str,
        raw_framework: str,
        raw_class: str,
        conversion: Conversion,
    ) -> None:
        """Register for one direction; the other is found by inversion.

        ``base_class`` / ``raw_class`` are class names (``MultiheadAttention``)
        or families (``multiheadattention``); class names win on lookup.
        """
        self._conversions[(base_framework, base_class, raw_framework, raw_class)] = conversion

    def find(self, base: LayerSide, raw: LayerSide) -> Conversion | None:
        """The conversion for this pair, inverted if registered the other way."""
        for base_name, raw_name in ((base.class_name, raw.class_name), (base.family, raw.family)):
            forward = self._conversions.get((base.framework, base_name, raw.framework, raw_name))
            if forward is not None:
                return forward
            backward = self._conversions.get((raw.framework, raw_name, base.framework, base_name))
            if backward is not None:
                return backward.inverted()
        return None

    def names(self) -> list[str]:
        return sorted({conversion.name for conversion in self._conversions.values()})


def renamed(mapping: Mapping[str, str | tuple[str, Transform]]) -> PairTensors:
    """A conversion that pairs tensors by a fixed name table (missing ones skipped)."""

    def pair_tensors(base: LayerSide, raw: LayerSide) -> list[TensorPair]:
        pairs = []
        for base_name, target in mapping.items():
            raw_name, transform = (target, IDENTITY) if isinstance(target, str) else target
            if base_name in base.tensors and raw_name in raw.tensors:
                pairs.append(TensorPair(base_name, raw_name, transform))
        return pairs

    return pair_tensors


#: The registry the pipeline uses unless a caller passes its own.
DEFAULT_REGISTRY = ConversionRegistry()


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

    Example::

        @register_conversion("torch", "FusedQKV", "paddle", "SplitQKV")
        def fused_qkv(base, raw):
            return [TensorPair("qkv.weight[0:64]", "q.weight", TRANSPOSE), ...]
    """

    def decorate(function: PairTensors) -> PairTensors:
        conversion = Conversion(name or function.__name__, function, covers_subtree)
        registry.register(base_framework, base_class, raw_framework, raw_class, conversion)
        return function

    return decorate


def _register_builtins(registry: ConversionRegistry) -> None:
    registry.register(
        "torch",
        "linear",
        "paddle",
        "linear",
        Conversion("linear-transpose", renamed({"weight": ("weight", TRANSPOSE), "bias": "bias"})),
    )
    batchnorm = Conversion(
        "batchnorm-statistics",
        renamed({"weight": "weight", "bias": "bias", "running_mean": "_mean", "running_var": "_variance"}),
    )
    for family in ("batchnorm", "batchnorm1d", "batchnorm2d", "batchnorm3d", "syncbatchnorm"):
        registry.register("torch", family, "paddle", family, batchnorm)
    # paddle's generic BatchNorm may face any torch BatchNormNd
    for family in ("batchnorm1d", "batchnorm2d", "batchnorm3d"):
        registry.register("torch", family, "paddle", "batchnorm", batchnorm)
    same_names = renamed({"weight": "weight", "bias": "bias"})
    for family in ("conv1d", "conv2d", "conv3d", "embedding", "layernorm", "groupnorm"):
        registry.register("torch", family, "paddle", family, Conversion(f"{family}-identity", same_names))


_register_builtins(DEFAULT_REGISTRY)
