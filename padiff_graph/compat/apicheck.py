"""PaDiff's ``PADIFF_API_CHECK=ON`` for a proxy's own runs: the API calls a model's code makes, as report items.

PaDiff wraps framework APIs at import and reports each call made directly in
a layer defined outside the framework (``F.relu(x)``, ``x * 2`` in your
``forward``), not the calls framework layers make inside. Here nothing is
wrapped at import: :func:`api_calls` wraps while a proxy runs and unwraps
after. Recorded are the APIs of :data:`padiff_graph.knowledge.apis.API_EQUIVALENTS`
and the tensor operators, called through their module, as a tensor method, or
through a layer attribute that holds the function (``self.act = F.relu``,
set before the wrapping began). Only the outermost call is recorded.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from padiff_graph.frameworks.base import FrameworkAdapter
from padiff_graph.frameworks.tracing import hooks
from padiff_graph.knowledge.apis import API_EQUIVALENTS, names_for

#: paddle's tensor operators recorded, as ``paddle.Tensor.<operator>``
OPERATORS = (
    "__add__",
    "__radd__",
    "__sub__",
    "__rsub__",
    "__mul__",
    "__rmul__",
    "__truediv__",
    "__rtruediv__",
    "__matmul__",
    "__pow__",
    "__neg__",
)
#: torch shows an operator as the method it runs (``x * 2`` as ``mul``): these are recorded as ``torch.Tensor.<method>``
TORCH_OPERATOR_METHODS = ("add", "sub", "mul", "div", "matmul", "neg")
#: ``hook(API name, output)``
ApiHook = Callable[[str, Any], None]


def api_names(framework: str) -> dict[str, str]:
    """The qualified names recorded for ``framework`` (``"torch"`` or ``"paddle"``) -> the names items carry."""
    names = {name: name for name in names_for(framework, API_EQUIVALENTS)}
    if framework == "torch":
        names |= {f"torch._C.TensorBase.{method}": f"torch.Tensor.{method}" for method in TORCH_OPERATOR_METHODS}
    else:
        names |= {f"paddle.Tensor.{operator}": f"paddle.Tensor.{operator}" for operator in OPERATORS}
    return names


@contextmanager
def api_calls(adapter: FrameworkAdapter, model: Any, hook: ApiHook) -> Iterator[None]:
    """While active, ``hook(name, output)`` after each outermost API call made directly in a user-defined layer."""
    running: list[Any] = []
    layers = adapter.named_layers(model).values()

    def leave(_output: Any) -> None:  # a hook's return value would replace the output
        if running:
            running.pop()

    handles = [adapter.add_pre_hook(layer, functools.partial(running.append, layer)) for layer in layers]
    handles += [adapter.add_forward_hook(layer, leave) for layer in layers]

    names = api_names(adapter.name)

    def filtered(name: str, output: Any) -> None:
        if running and not type(running[-1]).__module__.startswith(("torch.", "paddle.")):
            hook(names[name], output)

    with ExitStack() as stack:
        stack.enter_context(hooks(handles))
        if adapter.name == "torch":
            stack.enter_context(adapter.record_ops(names, filtered))
        else:
            stack.enter_context(_wrapped(list(names), layers, filtered))
        yield


@contextmanager
def _wrapped(names: list[str], layers: Any, hook: ApiHook) -> Iterator[None]:
    """Paddle, which has no function mode: wrap the named functions, operators and layer attributes holding them."""
    depth = [0]
    patched: list[tuple[Any, str, Any]] = []

    def wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            depth[0] += 1
            try:
                output = original(*args, **kwargs)
            finally:
                depth[0] -= 1
            if not depth[0]:
                hook(name, output)
            return output

        return wrapper

    def patch(owner: Any, attribute: str, name: str, original: Any) -> None:
        setattr(owner, attribute, wrap(name, original))
        patched.append((owner, attribute, original))

    originals = {}
    try:
        for name in names:
            owner, attribute = _owner(name)
            original = getattr(owner, attribute, None) if owner is not None else None
            if callable(original) and not isinstance(original, type):
                originals[id(original)] = name
                patch(owner, attribute, name, original)
        for layer in layers:
            for attribute, value in list(vars(layer).items()):
                if id(value) in originals and callable(value):
                    patch(layer, attribute, originals[id(value)], value)
        yield
    finally:
        for owner, attribute, original in reversed(patched):
            setattr(owner, attribute, original)


def _owner(qualified: str) -> tuple[Any, str]:
    """The module or class holding a qualified name's attribute (``None`` if it cannot be imported)."""
    owner_name, _, attribute = qualified.rpartition(".")
    module_name, _, class_name = owner_name.rpartition(".")
    try:
        if class_name == "Tensor":
            return getattr(importlib.import_module(module_name), class_name), attribute
        return importlib.import_module(owner_name), attribute
    except (ImportError, AttributeError):
        return None, attribute
