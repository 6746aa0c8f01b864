"""The example zoo as benchmark data, and PaDiff's definition-order pairing as a baseline.

:func:`cases` yields every example of ``examples/`` and its variant, with the
layer map it expects; :func:`definition_order_pairs` pairs two exported trees
the way PaDiff's weight copy does. An accuracy benchmark scores both against
the expected maps. Nothing here imports torch or paddle until a case is
reached (each example module imports its frameworks).

Example::

    from benchmarks.zoo import cases, definition_order_pairs
    from padiff_graph import export_tree, suggest_map

    for name, base_factory, raw_factory, expected in cases():
        (base, inputs), (raw, _) = base_factory(), raw_factory()
        proposed = {pair.base: pair.raw for pair in suggest_map(base, raw, inputs).pairs}
        baseline = definition_order_pairs(export_tree(base), export_tree(raw))
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from padiff_graph.core.records import TensorKind
from padiff_graph.core.tree import ModelTree, preorder

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

Factory = Callable[[], tuple[Any, Any]]


class ZooCase(NamedTuple):
    """One base/raw pair: ``raw()``, or ``variant()`` (named ``<example>-variant``)."""

    name: str
    base: Factory
    raw: Factory
    expected_pairs: dict[str, str]


def example_names() -> list[str]:
    """Modules of ``examples/`` that define ``base()`` (the others are helpers)."""
    return sorted(
        path.stem
        for path in EXAMPLES.glob("*.py")
        if not path.stem.startswith("_") and re.search(r"^def base\(", path.read_text(), re.MULTILINE)
    )


def cases() -> Iterator[ZooCase]:
    """Every example and variant with its expected map, importing each example when reached."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    for name in example_names():
        module = importlib.import_module(name)
        yield ZooCase(name, module.base, module.raw, module.EXPECTED_PAIRS)
        if hasattr(module, "variant"):
            yield ZooCase(f"{name}-variant", module.base, module.variant, module.EXPECTED_VARIANT_PAIRS)


def definition_order_pairs(base_tree: ModelTree, raw_tree: ModelTree) -> dict[str, str]:
    """PaDiff's pairing: zip the layers that own parameters, in definition order.

    Layers are taken in ``named_modules()`` / ``named_sublayers()`` preorder,
    keeping those holding at least one parameter of their own (buffers, such
    as torch's BatchNorm statistics, are not walked; paddle's are parameters).
    PaDiff stops with an error when the two counts differ; the baseline pairs
    as far as the shorter side goes, its best case.
    """
    return dict(zip(_parameter_layers(base_tree), _parameter_layers(raw_tree), strict=False))


def _parameter_layers(tree: ModelTree) -> list[str]:
    return [
        path
        for path in preorder(tree)
        if any(tensor.kind is not TensorKind.BUFFER for tensor in tree.nodes[path]["tensors"])
    ]
