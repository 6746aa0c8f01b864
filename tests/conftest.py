"""Shared fixtures: the example zoo and tiny literal trees."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from padiff_graph.core.records import LayerInfo, TensorInfo, TensorKind, join_path
from padiff_graph.core.transforms import TensorPair
from padiff_graph.core.tree import ModelTree, build_tree, relative_path
from padiff_graph.knowledge.conversions import layer_side
from padiff_graph.knowledge.registry import DEFAULT_REGISTRY
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.match.tensors import pair_layer_tensors, shape_transform

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: an example is a module of examples/ that defines ``base()``; the others are helpers
EXAMPLE_NAMES = sorted(
    path.stem
    for path in EXAMPLES.glob("*.py")
    if not path.stem.startswith("_") and re.search(r"^def base\(", path.read_text(), re.MULTILINE)
)


def load_example(name: str) -> ModuleType:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


@pytest.fixture(params=EXAMPLE_NAMES)
def example(request: pytest.FixtureRequest) -> ModuleType:
    return load_example(request.param)


@dataclass(frozen=True)
class Case:
    """One base/raw pair of the zoo: an example's ``raw()``, or its ``variant()``.

    A variant is read through the same ``EXPECTED_*`` names with ``VARIANT_``
    inserted (``EXPECTED_VARIANT_PAIRS``), so both are tested alike.
    """

    name: str
    variant: bool = False

    @property
    def id(self) -> str:
        return f"{self.name}-variant" if self.variant else self.name

    @property
    def module(self) -> ModuleType:
        return load_example(self.name)

    def models(self) -> tuple[Any, Any, Any]:
        """Fresh ``(base, raw, inputs)``, with seeded weights.

        Seeded because a run can land a value on a ReLU's kink: 1e-7 of kernel
        noise then flips the mask and the gradient there differs in full (about
        one random ResNet-18 in 25). Real, documented in docs/diff.md, but not
        what these tests are about.
        """
        import paddle
        import torch

        torch.manual_seed(0)
        paddle.seed(0)
        base, inputs = self.module.base()
        raw, _ = (self.module.variant if self.variant else self.module.raw)()
        return base, raw, inputs

    def expected(self, key: str, default: Any = None) -> Any:
        prefix = "EXPECTED_VARIANT_" if self.variant else "EXPECTED_"
        return getattr(self.module, prefix + key, default)

    @property
    def forward_in_tests(self) -> bool:
        """False for models too large to run in the default suite (``--run-slow`` runs them)."""
        return bool(getattr(self.module, "FORWARD_IN_TESTS", True))


def _has_variant(name: str) -> bool:
    return re.search(r"^def variant\(", (EXAMPLES / f"{name}.py").read_text(), re.MULTILINE) is not None


#: every pair of the zoo, variants after their example
CASES = [
    Case(name, variant) for name in EXAMPLE_NAMES for variant in (False, True) if not variant or _has_variant(name)
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the zoo's largest models forward")


def expected_layer_map(case: Case, base: ModelTree, raw: ModelTree) -> LayerMap:
    """The map an example expects, built from its ``EXPECTED_*`` data without the matcher.

    Each expected layer pair (and the two roots) gets its tensors from the
    conversion registry and names; ``EXPECTED_TENSOR_LINKS`` and
    ``EXPECTED_TENSORS`` add what those leave out (a fused attention's
    slices, a tensor that moves to another layer), each to the deepest
    expected pair enclosing both tensors.
    """
    pairs = {"": "", **case.expected("PAIRS")}
    tensors: dict[str, list[TensorPair]] = {}
    for base_path, raw_path in pairs.items():
        base_side, raw_side = layer_side(base, base_path), layer_side(raw, raw_path)
        found = pair_layer_tensors(base_side, raw_side, DEFAULT_REGISTRY.find(base_side, raw_side))
        tensors[base_path] = list(found.pairs)
    covered = {link_key(t.prefixed(b, pairs[b]))[:2] for b in tensors for t in tensors[b]}
    explicit = [TensorPair.parse(text) for text in case.expected("TENSOR_LINKS", [])]
    extra = list(explicit)
    base_shapes, raw_shapes = _tensor_shapes(base), _tensor_shapes(raw)
    for base_name, raw_name in case.expected("TENSORS", {}).items():
        transform = shape_transform(base_shapes[base_name], raw_shapes[raw_name])
        if transform is not None:
            extra.append(TensorPair(base_name, raw_name, transform))
    for link in extra:
        owner = max(
            (b for b, r in pairs.items() if _encloses(b, link.base) and _encloses(r, link.raw)),
            key=len,
        )
        relative = TensorPair(relative_path(owner, link.base), relative_path(pairs[owner], link.raw), link.transform)
        if link_key(link)[:2] in covered:  # copied already: an explicit link says how (shapes only guessed)
            if link not in explicit:
                continue
            tensors[owner] = [t for t in tensors[owner] if (t.base, t.raw) != (relative.base, relative.raw)]
        tensors[owner].append(relative)
        covered.add(link_key(link)[:2])
    return LayerMap(
        pairs=[LayerPair(b, pairs[b], tensors=tuple(tensors[b])) for b in pairs],
        base_framework=base.graph["framework"],
        raw_framework=raw.graph["framework"],
        base_model=base.graph["model"],
        raw_model=raw.graph["model"],
    )


def link_key(pair: TensorPair) -> tuple[Any, ...]:
    """``(base, base index, raw, raw index, op)``; indexes spelled alike (``[0:8]`` is ``[0:8, :]``)."""

    def index(slices: tuple[slice, ...] | None) -> tuple[tuple[Any, Any], ...]:
        parts = [(part.start, part.stop) for part in slices or ()]
        while parts and parts[-1] == (None, None):
            parts.pop()
        return tuple(parts)

    transform = pair.transform
    return (pair.base, index(transform.base_index), pair.raw, index(transform.raw_index), transform.op_text)


def _encloses(layer: str, tensor: str) -> bool:
    return layer == "" or tensor.startswith(layer + ".")


def _tensor_shapes(tree: ModelTree) -> dict[str, tuple[int, ...]]:
    return {join_path(path, t.name): t.shape for path in tree.nodes for t in tree.nodes[path]["tensors"]}


def literal_tree(
    spec: Iterable[tuple[str, str] | tuple[str, str, list[tuple[str, tuple[int, ...]]]]],
    framework: str = "torch",
    call_order: list[str] | None = None,
) -> ModelTree:
    """A tree from ``(path, class)`` or ``(path, class, [(tensor, shape), ...])`` rows.

    Classes starting with a capital known to torch (``Linear``...) are builtin;
    names prefixed ``my`` are user classes.
    """
    layers = []
    siblings: dict[str, int] = {}
    for row in spec:
        path, class_name = row[0], row[1]
        tensors = row[2] if len(row) > 2 else []  # type: ignore[misc]
        parent = path.rpartition(".")[0] if path else None
        index = siblings.get(parent or "", 0) if parent is not None else 0
        if parent is not None:
            siblings[parent] = index + 1
        layers.append(
            LayerInfo(
                path=path,
                class_name=class_name,
                framework=framework,
                index=index,
                builtin=not class_name.startswith("My"),
                training=False,
                tensors=tuple(TensorInfo(n, tuple(s), "float32", TensorKind.PARAMETER) for n, s in tensors),
            )
        )
    return build_tree(layers, call_order)
