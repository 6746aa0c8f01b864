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


#: The most cores the other model's trace may have kept busy for a model to run beside it, leaving one idle:
#: paddle's single-threaded CPU kernels measure 1.0-1.25 (its first run at a new shape keeps helper threads
#: busy a while), two cores 1.8 and more.
ONE_CORE = 1.5


def side_beside(
    base_adapter: FrameworkAdapter,
    base: Any,
    base_tree: ModelTree,
    raw_adapter: FrameworkAdapter,
    raw: Any,
    raw_tree: ModelTree,
) -> str | None:
    """The side (``"base"`` or ``"raw"``) whose step runs on a worker thread while the other's runs on this
    one (:func:`padiff_graph.core.runtime.run_sides`), or ``None``: one after the other.

    From what the traces showed (``tree.graph["trace"]``, :class:`~padiff_graph.frameworks.tracing.Trace`):
    a side goes beside when its framework keeps its speed there, the other's does not leave this thread and
    its trace kept about one core busy (a torch model beside a paddle one, whose CPU kernels run on one
    thread: the two steps take little more than the longer one), and its own activations are no larger than
    its weights. Both steps then hold their activations at once; a process that holds both models' weights
    and gradients grows by a quarter at most.
    """
    base_trace, raw_trace = base_tree.graph.get("trace"), raw_tree.graph.get("trace")
    if base_trace is None or raw_trace is None:
        return None
    if base_adapter.runs_beside(base) and not raw_adapter.runs_beside(raw) and raw_trace.cores <= ONE_CORE:
        return "base" if base_trace.activation_bytes <= tensor_bytes(base_tree) else None
    if raw_adapter.runs_beside(raw) and not base_adapter.runs_beside(base) and base_trace.cores <= ONE_CORE:
        return "raw" if raw_trace.activation_bytes <= tensor_bytes(raw_tree) else None
    return None
