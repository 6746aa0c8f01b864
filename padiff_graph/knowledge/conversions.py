"""The conversion registry: how two layer classes' tensors correspond.

A conversion is keyed by (framework, class or family) on each side. Most are
*data*: a function returning :class:`~padiff_graph.core.transforms.TensorPair`
records, so the weight copy, its verification, checkpoint conversion and the
inverse direction all follow from it. Registering torch -> paddle also serves
paddle -> torch: :meth:`ConversionRegistry.find` inverts the pairs.

PaDiff's *special inits* are opaque instead: ``init(base_layer, raw_layer)``
copies the weights itself. :func:`add_special_init` registers one with
PaDiff's signature; the matcher then knows the pair is handled, and the
weight copy calls it (running it backwards by probing when the models come
in the other order, see :mod:`padiff_graph.assign.inits`).

Users add their own with :func:`register_conversion` (a decorator),
:func:`add_special_init` or :meth:`ConversionRegistry.register`. The shipped
conversions are in :mod:`padiff_graph.knowledge.shipped`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from padiff_graph.core.records import TensorInfo, join_path
from padiff_graph.core.transforms import IDENTITY, TensorPair, Transform, constant
from padiff_graph.core.tree import ModelTree, preorder, relative_path
from padiff_graph.knowledge.families import family_of, significant


@dataclass(frozen=True)
class LayerSide:
    """What a conversion sees of one layer.

    ``tensors`` are the layer's own, by local name; ``subtree_tensors`` add its
    descendants' by relative dotted name (``q_proj.weight``), collected on
    first use since only conversions that cover a subtree need them; ``config``
    holds a builtin layer's hyperparameters (``embed_dim``...).
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
#: PaDiff's special-init signature: copy ``base_layer``'s weights into ``raw_layer``.
InitFunction = Callable[[Any, Any], Any]


def reference_of(function: Callable[..., Any]) -> str:
    """``package.module:function``: how a map file's ``init`` names a function."""
    return f"{function.__module__}:{function.__qualname__}"


@dataclass(frozen=True)
class Conversion:
    """A named way to carry one layer's weights into another's.

    Exactly one of ``pair_tensors`` (data: tensor pairs) and ``init`` (an
    opaque function that copies by itself) is set. ``covers_subtree``
    conversions map their descendants' tensors too (a fused attention block
    owns what the other side keeps in child Linears), so the matcher does not
    pair those descendants separately. ``reverse`` marks an opaque ``init``
    found through the other direction's registration.
    """

    name: str
    pair_tensors: PairTensors | None = None
    covers_subtree: bool = False
    init: InitFunction | None = None
    reverse: bool = False

    def __post_init__(self) -> None:
        if (self.pair_tensors is None) == (self.init is None):
            raise ValueError(f"conversion {self.name!r} needs exactly one of pair_tensors and init")

    def tensor_pairs(self, base: LayerSide, raw: LayerSide) -> list[TensorPair]:
        """The pairs of a data conversion; none for an opaque init."""
        return [] if self.pair_tensors is None else list(self.pair_tensors(base, raw))

    @property
    def init_reference(self) -> str | None:
        return None if self.init is None else reference_of(self.init)

    def fits(self, base: LayerSide, raw: LayerSide) -> bool:
        """Whether this conversion applies to these two layers.

        An opaque init always does; a data conversion must pair at least one
        tensor, and every pair's shapes must agree (constant sides have none).
        """
        if self.init is not None:
            return True
        pairs = self.tensor_pairs(base, raw)
        for pair in pairs:
            if pair.has_constant:
                continue
            base_tensor = base.subtree_tensors.get(pair.base)
            raw_tensor = raw.subtree_tensors.get(pair.raw)
            if base_tensor is None or raw_tensor is None:
                return False
            if pair.transform.output_shape(base_tensor.shape) != pair.transform.region_shape(raw_tensor.shape):
                return False
        return bool(pairs)

    def inverted(self) -> Conversion:
        """The same conversion read in the other direction."""
        if self.pair_tensors is None:
            return replace(self, reverse=not self.reverse)
        forward = self.pair_tensors

        def pair_tensors(base: LayerSide, raw: LayerSide) -> list[TensorPair]:
            return [pair.inverse(_shape_of(raw, pair.base)) for pair in forward(raw, base)]

        return replace(self, pair_tensors=pair_tensors)


def _shape_of(side: LayerSide, name: str) -> tuple[int, ...] | None:
    """A tensor's shape, for inverting a reshape (``None`` for a constant or an unknown name)."""
    tensor = side.subtree_tensors.get(name)
    return None if tensor is None else tensor.shape


Key = tuple[str, str, str, str]


class ConversionRegistry:
    """Conversions by (base framework, base class, raw framework, raw class)."""

    def __init__(self) -> None:
        self._conversions: dict[Key, Conversion] = {}
        self._by_reference: dict[str, tuple[Key, Conversion]] = {}

    def register(
        self,
        base_framework: str,
        base_class: str,
        raw_framework: str,
        raw_class: str,
        conversion: Conversion,
        function: Callable[..., Any] | None = None,
    ) -> None:
        """Register for one direction; the other is found by inversion.

        ``base_class`` / ``raw_class`` are class names (``MultiheadAttention``)
        or families (``multiheadattention``); class names win on lookup.
        ``function`` (the user's decorated function or init) lets a map file's
        ``init: package.module:function`` find the conversion.
        """
        key = (base_framework, base_class, raw_framework, raw_class)
        self._conversions[key] = conversion
        source = function or conversion.init
        if source is not None:
            self._by_reference[reference_of(source)] = (key, conversion)

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

    def by_reference(self, reference: str) -> tuple[Key, Conversion] | None:
        """The conversion registered from the function ``package.module:function``, with its key."""
        return self._by_reference.get(reference)

    def covering_names(self) -> frozenset[str]:
        """Classes and families, either side, of the conversions that map whole subtrees."""
        return frozenset(
            name
            for (_, base_class, _, raw_class), conversion in self._conversions.items()
            if conversion.covers_subtree
            for name in (base_class, raw_class)
        )

    def names(self) -> list[str]:
        return sorted({conversion.name for conversion in self._conversions.values()})

    def entries(self) -> list[tuple[Key, Conversion]]:
        """Every registration, in registration order."""
        return list(self._conversions.items())

    def unregister(self, base_framework: str, base_class: str, raw_framework: str, raw_class: str) -> None:
        """Forget one registration (and its reference), if present."""
        key = (base_framework, base_class, raw_framework, raw_class)
        self._conversions.pop(key, None)
        for reference, (registered, _) in list(self._by_reference.items()):
            if registered == key:
                del self._by_reference[reference]


def renamed(
    mapping: Mapping[str, str | tuple[str, Transform]], neutral: Mapping[str, float] | None = None
) -> PairTensors:
    """A conversion that pairs tensors by a fixed name table.

    ``neutral`` gives, by base name, the value a tensor present on one side
    only must hold for the layers to agree (a norm's scale 1, a bias 0): the
    missing side becomes ``const(value)``. Other missing tensors are skipped.
    """
    neutral = neutral or {}

    def pair_tensors(base: LayerSide, raw: LayerSide) -> list[TensorPair]:
        pairs = []
        for base_name, target in mapping.items():
            raw_name, transform = (target, IDENTITY) if isinstance(target, str) else target
            pair = linked(base, raw, base_name, raw_name, transform, neutral.get(base_name))
            if pair is not None:
                pairs.append(pair)
        return pairs

    return pair_tensors


def linked(
    base: LayerSide,
    raw: LayerSide,
    base_name: str,
    raw_name: str,
    transform: Transform = IDENTITY,
    neutral: float | None = None,
) -> TensorPair | None:
    """``base_name -> raw_name`` if both exist (looked up in the subtrees), a constant if one does."""
    has_base, has_raw = base_name in base.subtree_tensors, raw_name in raw.subtree_tensors
    if has_base and has_raw:
        return TensorPair(base_name, raw_name, transform)
    if neutral is None or has_base == has_raw:
        return None
    if has_base:
        return TensorPair(base_name, constant(neutral), Transform(base_index=transform.base_index))
    return TensorPair(constant(neutral), raw_name, Transform(raw_index=transform.raw_index))


def layer_side(tree: ModelTree, path: str) -> LayerSide:
    """What a conversion sees of the layer at ``path``: own and (lazily) subtree tensors by relative name."""
    node = tree.nodes[path]

    def collect_subtree() -> dict[str, TensorInfo]:
        return {
            join_path(relative_path(path, layer), tensor.name): tensor
            for layer in preorder(tree, path)
            for tensor in tree.nodes[layer]["tensors"]
            if significant(tensor)
        }

    return LayerSide(
        framework=tree.graph["framework"],
        class_name=node["class_name"],
        builtin=node["builtin"],
        tensors={tensor.name: tensor for tensor in node["tensors"] if significant(tensor)},
        collect_subtree=collect_subtree,
        config=node["config"],
    )
