"""Init functions named in layer maps: resolving, expanding, calling, running backwards.

A map entry's ``init: package.module:function`` names either

- a registered *data* conversion (decorated with ``register_conversion``):
  :func:`expand_inits` replaces the entry's tensors with the conversion's
  pairs, so preflight, the copy, checkpoint conversion and the diff treat it
  like any other pair, in either direction; or
- an *opaque* function with PaDiff's signature ``init(base_layer, raw_layer)``
  that copies the whole sublayer by itself (registered with
  ``add_special_init``, or any importable function).

An opaque function copies one way. When the models come in the other order
(registered torch -> paddle, the base is paddle), :func:`run_backwards` probes
it: it fills the raw layer's floating tensors with element numbers, lets the
function copy them into the base layer, and reads back which raw element
each base element came from. That index map, inverted, copies base -> raw;
running the function forward afterwards must give back the base values
exactly, which verifies the copy. This works for functions that only move
values (copies, transposes, splits, concatenations, renames); a function
that computes (scales, sums), or leaves raw elements unread, is refused with
an error naming it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from padiff_graph.core.tree import ModelTree
from padiff_graph.errors import AssignError, LayerMapError
from padiff_graph.frameworks.base import FrameworkAdapter
from padiff_graph.knowledge.conversions import Conversion, ConversionRegistry, Key, layer_side
from padiff_graph.knowledge.families import IGNORED_TENSOR_NAMES, family_of
from padiff_graph.layermap import LayerMap, LayerPair

#: Element numbers are written in digits of this base: exact in float32 (24-bit mantissa).
_PROBE_BASE = 2**20
_PROBE_DTYPES = ("float32", "float64")


def resolve_init(reference: str, registry: ConversionRegistry) -> tuple[Key | None, Conversion]:
    """The conversion a map's ``init`` names, and the key it was registered under (if any).

    Registered functions are found without importing (so functions defined in
    a script or a test work); otherwise the module is imported, which may
    register the function, and an unregistered function is taken as an
    opaque init in PaDiff's order (base first).

    Raises:
        LayerMapError: the module or function cannot be loaded.
    """
    found = registry.by_reference(reference)
    if found is not None:
        return found
    module_name, _, function_name = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise LayerMapError(f"cannot load init {reference!r}: {type(error).__name__}: {error}") from None
    found = registry.by_reference(reference)
    if found is not None:
        return found
    function = getattr(module, function_name, None)
    if not callable(function):
        raise LayerMapError(f"cannot load init {reference!r}: {module_name} has no function {function_name!r}")
    return None, Conversion(function_name, init=function, covers_subtree=True)


def oriented(key: Key | None, conversion: Conversion, base_framework: str, base_class: str) -> Conversion:
    """``conversion`` as it applies when the base layer is ``base_class`` of ``base_framework``."""
    if key is None:
        return conversion

    def names(framework: str, registered: str) -> bool:
        return framework == base_framework and registered in (base_class, family_of(base_class, True))

    if names(key[0], key[1]) or not names(key[2], key[3]):
        return conversion
    return conversion.inverted()


def expand_inits(base: ModelTree, raw: ModelTree, layer_map: LayerMap, registry: ConversionRegistry) -> LayerMap:
    """The map with every ``init`` naming a data conversion replaced by that conversion's tensor pairs.

    Raises:
        LayerMapError: an ``init`` cannot be loaded, or names a pair's layer the models lack.
    """
    if not any(pair.init for pair in layer_map.pairs):
        return layer_map
    pairs = []
    for pair in layer_map.pairs:
        if pair.init and pair.base in base and pair.raw in raw:
            pair = _expanded(pair, base, raw, registry)
        pairs.append(pair)
    return layer_map.with_pairs(pairs)


def _expanded(pair: LayerPair, base: ModelTree, raw: ModelTree, registry: ConversionRegistry) -> LayerPair:
    assert pair.init is not None
    key, conversion = resolve_init(pair.init, registry)
    if conversion.init is not None:
        return pair
    base_side, raw_side = layer_side(base, pair.base), layer_side(raw, pair.raw)
    conversion = oriented(key, conversion, base_side.framework, base_side.class_name)
    return LayerPair(
        base=pair.base,
        raw=pair.raw,
        score=pair.score,
        tensors=tuple(conversion.tensor_pairs(base_side, raw_side)),
        conversion=conversion.name,
        candidates=pair.candidates,
        stage=pair.stage,
    )


def run_init(
    reference: str,
    base_layer: Any,
    raw_layer: Any,
    base_adapter: FrameworkAdapter,
    raw_adapter: FrameworkAdapter,
    registry: ConversionRegistry,
) -> None:
    """Copy ``base_layer`` into ``raw_layer`` with the opaque init ``reference`` names."""
    key, conversion = resolve_init(reference, registry)
    conversion = oriented(key, conversion, base_adapter.name, type(base_layer).__name__)
    init = conversion.init
    if init is None:
        raise AssignError(f"init {reference!r} is a tensor-pairing conversion; expand the map first")
    if not conversion.reverse:
        _call(init, base_layer, raw_layer, reference)
        return
    run_backwards(init, base_layer, raw_layer, base_adapter, raw_adapter, reference)


def _call(init: Callable[[Any, Any], Any], first: Any, second: Any, reference: str) -> None:
    try:
        init(first, second)
    except Exception as error:
        raise AssignError(f"init {reference!r} raised {type(error).__name__}: {error}") from error


def run_backwards(
    init: Callable[[Any, Any], Any],
    base_layer: Any,
    raw_layer: Any,
    base_adapter: FrameworkAdapter,
    raw_adapter: FrameworkAdapter,
    reference: str,
) -> None:
    """Copy base -> raw with ``init``, which copies raw -> base (see the module docstring).

    Raises:
        AssignError: ``init`` does not only move values, leaves raw tensors
            unread, or the layers are not float32/float64.
    """
    base_side = _Side(base_adapter, base_layer, reference)
    raw_side = _Side(raw_adapter, raw_layer, reference)
    saved = base_side.read()
    sources = raw_side.read()
    offsets = dict(zip(sources, np.cumsum([0] + [v.size for v in sources.values()])[:-1].tolist(), strict=True))
    total = sum(value.size for value in sources.values())
    try:
        origin, written = _probe(init, base_side, raw_side, sources, offsets, total, reference)
        flat = np.zeros(total, dtype=np.float64)
        assigned = np.zeros(total, dtype=bool)
        for name, value in saved.items():
            indices, values = origin[name][written[name]], value[written[name]]
            if np.any(assigned[indices] & (flat[indices] != values)):
                raise AssignError(f"init {reference!r} copies one raw element into differing base values")
            flat[indices], assigned[indices] = values, True
        unread = [
            name
            for name, value in sources.items()
            if not assigned[offsets[name] : offsets[name] + value.size].all()
            and name.rpartition(".")[2] not in IGNORED_TENSOR_NAMES
        ]
        if unread:
            raise AssignError(
                f"init {reference!r} run backwards leaves raw tensors {', '.join(unread)} unset; register the "
                "reverse direction with add_special_init, or write a conversion with register_conversion"
            )
        raw_side.write({n: flat[offsets[n] : offsets[n] + v.size].reshape(v.shape) for n, v in sources.items()})
        _call(init, raw_layer, base_layer, reference)  # forward again: must give back the base values
        for name, value in base_side.read().items():
            if not np.array_equal(value[written[name]], saved[name][written[name]]):
                raise AssignError(f"init {reference!r} run backwards does not reproduce base tensor {name!r}")
    finally:
        base_side.write(saved)


def _probe(
    init: Callable[[Any, Any], Any],
    base_side: _Side,
    raw_side: _Side,
    sources: dict[str, np.ndarray],
    offsets: dict[str, int],
    total: int,
    reference: str,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """For each base element: the number of the raw element ``init`` copies into it, and whether it copies one."""
    origin: dict[str, np.ndarray] = {}
    written: dict[str, np.ndarray] = {}
    digits = max(1, math.ceil(math.log(max(total, 2), _PROBE_BASE)))
    for digit in range(digits):
        place = _PROBE_BASE**digit
        raw_side.write(
            {
                name: ((np.arange(offsets[name], offsets[name] + value.size) // place) % _PROBE_BASE)
                .reshape(value.shape)
                .astype(np.float64)
                for name, value in sources.items()
            }
        )
        base_side.write({name: np.full(value.shape, np.nan) for name, value in base_side.read().items()})
        _call(init, raw_side.layer, base_side.layer, reference)
        for name, value in base_side.read().items():
            if digit == 0:
                written[name] = ~np.isnan(value)
                origin[name] = np.zeros(value.shape, dtype=np.int64)
            digits_read = np.where(written[name], value, 0.0)
            if np.any(digits_read != np.round(digits_read)) or np.any((digits_read < 0) | (digits_read >= _PROBE_BASE)):
                raise _not_a_move(reference, name)
            origin[name] += digits_read.astype(np.int64) * place
    for name in origin:
        if np.any(origin[name][written[name]] >= total):
            raise _not_a_move(reference, name)
    return origin, written


def _not_a_move(reference: str, name: str) -> AssignError:
    return AssignError(
        f"init {reference!r} does not only move values (base tensor {name!r}), so it cannot run in the other "
        "direction; register the reverse with add_special_init, or write a conversion with register_conversion "
        "(it serves both directions)"
    )


class _Side:
    """One layer's floating tensors, fetched anew on each access (an init may replace them)."""

    def __init__(self, adapter: FrameworkAdapter, layer: Any, reference: str) -> None:
        self.adapter = adapter
        self.layer = layer
        self.reference = reference

    def tensors(self) -> dict[str, Any]:
        result = {}
        for name, tensor in self.adapter.named_tensors(self.layer).items():
            dtype = self.adapter.dtype_name(tensor)
            if dtype in _PROBE_DTYPES:
                result[name] = tensor
            elif dtype.startswith(("bfloat", "float")):
                raise AssignError(
                    f"init {self.reference!r} can only run backwards on float32/float64 layers, "
                    f"and {name!r} is {dtype}; copy in float32, then cast"
                )
        return result

    def read(self) -> dict[str, np.ndarray]:
        return {name: self.adapter.to_numpy(tensor) for name, tensor in self.tensors().items()}

    def write(self, values: dict[str, np.ndarray]) -> None:
        for name, tensor in self.tensors().items():
            if name in values:
                self.adapter.write(tensor, values[name])
