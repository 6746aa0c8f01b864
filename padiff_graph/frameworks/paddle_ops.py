"""API-level interception for paddle, by wrapping module functions while active.

Paddle has no function mode, so the named functions (``paddle.matmul``,
``paddle.nn.functional.gelu``, ...) are replaced by wrappers on entering
:func:`recording` and put back on leaving it. Nothing is patched at import.
A wrapper that user code captured while the patch was in place (a
``from paddle.nn.functional import gelu`` run inside a forward) stays
harmless afterwards: with no recording active it calls the original directly.
Only the outermost call is recorded; what a recorded function calls inside
is not recorded again.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from padiff_graph.frameworks.base import OpHook


@dataclass
class _State:
    hook: OpHook | None = None
    overrides: dict[str, Callable[..., Any]] = field(default_factory=dict)
    depth: int = 0


_STATE = _State()


def _wrap(qualified: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = _STATE
        override = state.overrides.get(qualified)
        if state.depth or (state.hook is None and override is None):
            return original(*args, **kwargs)
        state.depth += 1
        try:
            output = override(original, *args, **kwargs) if override else original(*args, **kwargs)
            if state.hook is not None:
                state.hook(qualified, output)
        finally:
            state.depth -= 1
        return output

    wrapper.__padiff_graph_original__ = original  # type: ignore[attr-defined]
    return wrapper


def _owner(qualified: str) -> tuple[Any, str] | None:
    module_name, _, attribute = qualified.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    target = getattr(module, attribute, None)
    if not callable(target) or isinstance(target, type):
        return None
    return module, attribute


@contextmanager
def recording(
    names: Mapping[str, str], hook: OpHook | None, overrides: Mapping[str, Callable[..., Any]]
) -> Iterator[None]:
    """Record the named functions (and redirect the overridden ones) while the block runs.

    An override is called as ``override(original, *args, **kwargs)``.
    """
    patched: list[tuple[Any, str, Any]] = []
    previous = _State(_STATE.hook, dict(_STATE.overrides), _STATE.depth)
    try:
        for qualified in {*names, *overrides}:
            owner = _owner(qualified)
            if owner is None:
                continue
            module, attribute = owner
            current = getattr(module, attribute)
            if hasattr(current, "__padiff_graph_original__"):
                continue  # already wrapped by an enclosing recording
            try:
                setattr(module, attribute, _wrap(qualified, current))
            except (AttributeError, TypeError):
                continue  # a read-only attribute: left alone rather than failing the run
            patched.append((module, attribute, current))
        _STATE.hook = hook if names else _STATE.hook
        _STATE.overrides.update(overrides)
        yield
    finally:
        for module, attribute, original in reversed(patched):
            setattr(module, attribute, original)
        _STATE.hook, _STATE.overrides, _STATE.depth = previous.hook, previous.overrides, previous.depth
