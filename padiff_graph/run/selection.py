"""Which layers a diff hooks and compares: black and white lists, and wrapper skipping.

PaDiff's semantics: an entry names a layer *instance* or a layer *class*
(every instance of it), with a scope — ``"self"`` (the layer only),
``"sublayers"`` (everything below it, not the layer) or ``"all"`` (both).
A white list, once given, wins: only what it selects is compared. Each
entry applies to the model that holds it (a torch class to the torch
model), and a layer pair is compared when both of its layers are
selected; a model that no white-list entry names keeps all its layers, so
white-listing a base layer is enough to compare it with its raw partner.

Parameter-less wrapper layers — no tensors of their own but sublayers —
are skipped with ``skip_wrap_layers=True`` or PaDiff's environment
variable ``PADIFF_SIKP_WRAP_LAYER`` (and the correctly spelled
``PADIFF_SKIP_WRAP_LAYER``) set to a true value (``1``, ``true``, ``on``,
``yes``). Unlike PaDiff, parameter-less *leaves* (activations) are kept:
they are where many ports go wrong. The root is always kept.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from padiff_graph.core.tree import ModelTree, children, has_ancestor_in
from padiff_graph.errors import InputError
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.run.containers import NotCompared
from padiff_graph.run.fused_pairs import FusedPair

SCOPES = ("self", "sublayers", "all")
WRAP_LAYER_VARIABLES = ("PADIFF_SKIP_WRAP_LAYER", "PADIFF_SIKP_WRAP_LAYER")
_TRUE = frozenset({"1", "true", "on", "yes"})


@dataclass(frozen=True)
class ListEntry:
    """A layer instance or class, and how far the entry reaches."""

    target: Any
    scope: str


def parse_entries(entries: Iterable[Any] | None, default_scope: str, what: str) -> list[ListEntry]:
    """``[layer, (LayerClass, "all"), ...]`` -> entries; a bare item takes ``default_scope``.

    Raises:
        InputError: an unknown scope.
    """
    parsed = []
    for entry in entries or ():
        target, scope = entry if isinstance(entry, tuple) and len(entry) == 2 else (entry, default_scope)
        if scope not in SCOPES:
            raise InputError(f"{what} scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        parsed.append(ListEntry(target, scope))
    return parsed


def skip_wrap_layers_from_environment() -> bool:
    """True if either spelling of PaDiff's wrap-layer variable is set to a true value."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in WRAP_LAYER_VARIABLES)


def _matches(entry: ListEntry, layer: Any) -> bool:
    if isinstance(entry.target, type):
        return isinstance(layer, entry.target)
    return entry.target is layer


def _reach(entries: list[ListEntry], layers: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(paths selected themselves, paths whose sublayers are selected)."""
    own, below = set(), set()
    for path, layer in layers.items():
        for entry in entries:
            if _matches(entry, layer):
                if entry.scope in ("self", "all"):
                    own.add(path)
                if entry.scope in ("sublayers", "all"):
                    below.add(path)
    return own, below


def selected_paths(
    layers: dict[str, Any],
    tree: ModelTree,
    black_list: list[ListEntry],
    white_list: list[ListEntry],
    skip_wrap_layers: bool,
) -> set[str]:
    """The layer paths of one model that the lists and the wrapper setting leave in.

    A white list counts for a model only if one of its entries names a layer of that
    model: white-listing a base layer leaves its raw partner selected through the pair.
    """
    own, below = _reach(white_list, layers)
    if own or below:
        chosen = {path for path in layers if path in own or has_ancestor_in(path, below)}
    else:
        own, below = _reach(black_list, layers)
        chosen = {path for path in layers if path not in own and not has_ancestor_in(path, below)}
    if skip_wrap_layers:
        chosen = {path for path in chosen if not _is_wrapper(tree, path)}
    return chosen


def _is_wrapper(tree: ModelTree, path: str) -> bool:
    return path != "" and not tree.nodes[path]["tensors"] and bool(children(tree, path))


@dataclass(frozen=True)
class LayerSelection:
    """Black and white lists and the wrapper setting, checked once: which layers a run records and compares."""

    black_list: tuple[ListEntry, ...] = ()
    white_list: tuple[ListEntry, ...] = ()
    skip_wrap_layers: bool = False

    @classmethod
    def parse(
        cls, black_list: Iterable[Any] | None, white_list: Iterable[Any] | None, skip_wrap_layers: bool | None
    ) -> LayerSelection:
        """PaDiff's list semantics (a bare black-list entry reaches ``"all"``, a white-list one ``"self"``).

        Raises:
            InputError: an unknown scope.
        """
        return cls(
            tuple(parse_entries(black_list, "all", "black_list")),
            tuple(parse_entries(white_list, "self", "white_list")),
            skip_wrap_layers_from_environment() if skip_wrap_layers is None else bool(skip_wrap_layers),
        )

    def paths(self, layers: dict[str, Any], tree: ModelTree) -> set[str]:
        """The layer paths of one model that this selection leaves in (:func:`selected_paths`)."""
        return selected_paths(layers, tree, list(self.black_list), list(self.white_list), self.skip_wrap_layers)


def compared_pairs(
    layer_map: LayerMap,
    selection: LayerSelection,
    base: tuple[dict[str, Any], ModelTree],
    raw: tuple[dict[str, Any], ModelTree],
    not_compared: Iterable[NotCompared] = (),
) -> list[LayerPair]:
    """The map's active pairs (no ``ignore`` reaches them) both of whose layers ``selection`` leaves in.

    ``base`` and ``raw`` are each model's layers by path and its tree; ``not_compared``
    (:func:`~padiff_graph.run.containers.unlike_containers`) are left out.
    """
    base_paths, raw_paths = selection.paths(*base), selection.paths(*raw)
    left_out = {(pair.base, pair.raw) for pair in not_compared}
    return [
        pair
        for pair in layer_map.active_pairs()
        if pair.base in base_paths and pair.raw in raw_paths and (pair.base, pair.raw) not in left_out
    ]


def compared_fused(
    fused: Iterable[FusedPair],
    selection: LayerSelection,
    base: tuple[dict[str, Any], ModelTree],
    raw: tuple[dict[str, Any], ModelTree],
) -> list[FusedPair]:
    """The fused pairs every layer of which ``selection`` leaves in (as :func:`compared_pairs`)."""
    base_paths, raw_paths = selection.paths(*base), selection.paths(*raw)
    return [pair for pair in fused if set(pair.base) <= base_paths and set(pair.raw) <= raw_paths]
