"""Framework adapters, picked by what the model is.

Following einops' backends: an adapter is only considered if its framework
is already imported (a model of it exists, so it must be), which keeps
``import padiff_graph`` free of torch and paddle.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from padiff_graph.core.tree import ModelTree, tensor_bytes
from padiff_graph.errors import UnsupportedModelError
from padiff_graph.frameworks.base import FrameworkAdapter

#: framework module name -> (adapter module, adapter class)
_ADAPTERS = {
    "torch": ("padiff_graph.frameworks.torch_adapter", "TorchAdapter"),
    "paddle": ("padiff_graph.frameworks.paddle_adapter", "PaddleAdapter"),
}

#: warnings a framework prints while it imports, which say nothing about the models
#: (paddle: "No ccache found", about compiling C++ extensions)
IMPORT_NOISE = ("No ccache found",)


@contextmanager
def quiet_framework_imports() -> Iterator[None]:
    """Hide :data:`IMPORT_NOISE` for the block (an import of torch, paddle or a user's model file).

    Only these messages, only inside the block: other warnings still show.
    """
    with warnings.catch_warnings():
        for message in IMPORT_NOISE:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        yield


@cache
def adapter_named(framework: str) -> FrameworkAdapter:
    """The adapter for ``"torch"`` or ``"paddle"`` (imports that framework)."""
    import importlib

    module_name, class_name = _ADAPTERS[framework]
    adapter: FrameworkAdapter = getattr(importlib.import_module(module_name), class_name)()
    return adapter


def adapter_for(model: object) -> FrameworkAdapter:
    """The adapter whose framework owns ``model``.

    Raises:
        UnsupportedModelError: ``model`` is neither a torch nor a paddle layer.
    """
    for framework in _ADAPTERS:
        if framework in sys.modules:
            adapter = adapter_named(framework)
            if adapter.owns(model):
                return adapter
    raise UnsupportedModelError(
        f"{type(model).__name__} is neither a torch.nn.Module nor a paddle.nn.Layer; "
        "pass the model object itself (a factory may return (model, inputs))"
    )


def worker_side(base_adapter: FrameworkAdapter, base: Any, raw_adapter: FrameworkAdapter, raw: Any) -> str | None:
    """The side (``"base"`` or ``"raw"``) whose work may run on a worker thread while the other's runs on this
    one (:func:`padiff_graph.core.runtime.run_sides`), or ``None``: one after the other.

    A side goes beside when its framework keeps its speed there and the other's neither leaves this thread nor
    runs its CPU kernels on more than one thread (paddle's, unless told otherwise): the two take little more
    than the longer one.
    """
    if base_adapter.runs_beside(base) and not raw_adapter.runs_beside(raw) and raw_adapter.cpu_threads() == 1:
        return "base"
    if raw_adapter.runs_beside(raw) and not base_adapter.runs_beside(base) and base_adapter.cpu_threads() == 1:
        return "raw"
    return None


def side_beside(
    base_adapter: FrameworkAdapter,
    base: Any,
    base_tree: ModelTree,
    raw_adapter: FrameworkAdapter,
    raw: Any,
    raw_tree: ModelTree,
) -> str | None:
    """The side whose training step runs beside the other's: the :func:`worker_side`, where its trace
    (``tree.graph["trace"]``, :class:`~padiff_graph.frameworks.tracing.Trace`) measured its activations (A) no
    larger than 4/3 of its weights (W). Both steps then hold their activations at once: one after the other,
    the process holds both models' weights and gradients (4 W, the models alike) and one step's activations,
    4 W + A; beside, 4 W + 2 A, a quarter more at most while 3 A <= 4 W.
    """
    side = worker_side(base_adapter, base, raw_adapter, raw)
    tree = base_tree if side == "base" else raw_tree
    trace = tree.graph.get("trace")
    if side is None or trace is None or trace.activation_bytes is None:
        return None
    return side if 3 * trace.activation_bytes <= 4 * tensor_bytes(tree) else None
