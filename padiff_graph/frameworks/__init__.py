"""Framework adapters, picked by what the model is.

Following einops' backends: an adapter is only considered if its framework
is already imported (a model of it exists, so it must be), which keeps
``import padiff_graph`` free of torch and paddle.
"""

from __future__ import annotations

import sys
from functools import cache

from padiff_graph.errors import UnsupportedModelError
from padiff_graph.frameworks.base import FrameworkAdapter

#: framework module name -> (adapter module, adapter class)
_ADAPTERS = {
    "torch": ("padiff_graph.frameworks.torch_adapter", "TorchAdapter"),
    "paddle": ("padiff_graph.frameworks.paddle_adapter", "PaddleAdapter"),
}


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
