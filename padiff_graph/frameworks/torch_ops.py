"""API-level interception for torch, through a ``TorchFunctionMode``.

The mode exists only inside :func:`recording`: importing padiff_graph, or
running without op-level comparison, leaves torch untouched. A mode sees
every ``torch.*``, ``torch.nn.functional.*`` and ``Tensor`` method call
(factories included) while it is active, and only the outermost call: what a
recorded function does inside is not recorded again.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch.overrides import TorchFunctionMode

from padiff_graph.frameworks.base import OpHook


def resolve(qualified: str) -> Any | None:
    """The object a qualified name (``torch.nn.functional.gelu``, ``torch.Tensor.add``) refers to."""
    module_name, _, attribute = qualified.rpartition(".")
    owner: Any
    try:
        owner = importlib.import_module(module_name)
    except ImportError:
        parent, _, class_name = module_name.rpartition(".")
        try:
            owner = getattr(importlib.import_module(parent), class_name)
        except (ImportError, AttributeError):
            return None
    return getattr(owner, attribute, None)


def _by_object(names: Mapping[str, Any]) -> dict[Any, tuple[str, Any]]:
    found = {}
    for qualified, value in names.items():
        target = resolve(qualified)
        if target is not None:
            found[target] = (qualified, value)
    return found


class _Mode(TorchFunctionMode):
    def __init__(self, names: Mapping[str, str], hook: OpHook | None, overrides: Mapping[str, Callable[..., Any]]):
        super().__init__()
        self.names = _by_object(names)
        self.overrides = _by_object(overrides)
        self.hook = hook

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        try:
            override = self.overrides.get(func)
            named = self.names.get(func)
        except TypeError:  # an unhashable callable: neither recorded nor overridden
            override = named = None
        output = override[1](func, *args, **kwargs) if override else func(*args, **kwargs)
        if named is not None and self.hook is not None:
            self.hook(named[0], output)
        return output


@contextmanager
def recording(
    names: Mapping[str, str], hook: OpHook | None, overrides: Mapping[str, Callable[..., Any]]
) -> Iterator[None]:
    """Record the named APIs (and redirect the overridden ones) while the block runs.

    An override is called as ``override(original, *args, **kwargs)``.
    """
    if not names and not overrides:
        yield
        return
    with _Mode(names, hook, overrides):
        yield
