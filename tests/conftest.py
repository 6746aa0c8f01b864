"""Shared fixtures: the example zoo and tiny literal trees."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pytest

from padiff_graph.records import LayerInfo, TensorInfo, TensorKind
from padiff_graph.tree import ModelTree, build_tree

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_NAMES = sorted(
    path.stem for path in EXAMPLES.glob("*.py") if not path.stem.startswith("_") and path.stem != "torch_resnet"
)


def load_example(name: str) -> ModuleType:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module(name)


@pytest.fixture(params=EXAMPLE_NAMES)
def example(request: pytest.FixtureRequest) -> ModuleType:
    return load_example(request.param)


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
