"""Random layers and random API calls: found, reported as ``random-op``, switched off on request.

Random *layers* (dropout in training mode) are found in the exported trees
before anything runs (:mod:`padiff_graph.checks`). Random *calls* made
in a forward — ``torch.nn.functional.dropout(x, p, training=True)``,
``paddle.nn.functional.dropout``, ``torch.rand`` — only show when the model
runs, so a :class:`RandomWatch` intercepts them during the diff (the
op-level machinery, active only inside the run): with ``random_ops="error"``
the first one stops the run, with ``"disable"`` functional dropout becomes
the identity for the run. Sampling functions cannot be switched off; they
are reported either way.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from typing import Any

from padiff_graph.core.findings import Code, Finding
from padiff_graph.core.records import Severity, quoted_path
from padiff_graph.core.tree import ModelTree, layer_info
from padiff_graph.errors import PadiffGraphError
from padiff_graph.frameworks.base import FrameworkAdapter
from padiff_graph.knowledge.apis import ATTENTION_DROPOUT_APIS, DROPOUT_APIS, RANDOM_APIS
from padiff_graph.knowledge.families import is_random
from padiff_graph.run.hooks import Recorder


@contextmanager
def random_layers_disabled(adapter: FrameworkAdapter, model: Any, tree: ModelTree) -> Iterator[list[str]]:
    """Switch random layers (dropout in training mode) to eval for the run, then back."""
    layers = adapter.named_layers(model)
    paths = [path for path in tree.nodes if is_random(layer_info(tree, path))]
    for path in paths:
        layers[path].training = False
    try:
        yield paths
    finally:
        for path in paths:
            layers[path].training = True


class RandomOpFound(PadiffGraphError):
    """A random API call inside a forward stopped the run (``random_ops="error"``)."""

    exit_code = 1


@dataclass(frozen=True)
class RandomCall:
    side: str
    path: str
    api: str
    disabled: bool


class RandomWatch:
    """Intercepts random API calls during the runs of both models."""

    def __init__(self, disable: bool) -> None:
        self.disable = disable
        self.found: list[RandomCall] = []

    def overrides(self, side: str, adapter: FrameworkAdapter, recorder: Recorder) -> dict[str, Callable[..., Any]]:
        """Replacements for this framework's random APIs, for ``adapter.op_overrides``."""
        prefix = adapter.name + "."
        watched = RANDOM_APIS | ATTENTION_DROPOUT_APIS
        return {name: self._override(side, name, recorder) for name in watched if name.startswith(prefix)}

    def _override(self, side: str, api: str, recorder: Recorder) -> Callable[..., Any]:
        def call(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            if not _is_random_call(api, original, args, kwargs):
                return original(*args, **kwargs)
            path = recorder.running() or ""
            switch_off = self.disable and (api in DROPOUT_APIS or api in ATTENTION_DROPOUT_APIS)
            if not any(c.side == side and c.path == path and c.api == api for c in self.found):
                self.found.append(RandomCall(side, path, api, switch_off))
            if switch_off and api in ATTENTION_DROPOUT_APIS:
                positional, named, _ = _attention_arguments(original, args, kwargs, dropout=0.0)
                return original(*positional, **named)
            if switch_off:
                return args[0] if args else next(iter(kwargs.values()))
            if not self.disable:
                raise RandomOpFound(f"{side} layer {quoted_path(path)} calls {api} (random in this run)")
            return original(*args, **kwargs)

        return call

    def findings(self) -> list[Finding]:
        """One ``random-op`` finding per call site found."""
        findings = []
        for call in sorted(self.found, key=lambda call: call.side != "base"):  # the sides may run at once
            base, raw = (call.path, None) if call.side == "base" else (None, call.path)
            if call.disabled:
                hint = "switched off for this run (random_ops='disable'); nothing to do"
                severity = Severity.INFO
            elif self.disable:
                hint = "sampling cannot be switched off: seed both frameworks alike or pass the values in as inputs"
                severity = Severity.ERROR
            else:
                hint = "pass training=False, or let diff switch functional dropout off (random_ops='disable')"
                severity = Severity.ERROR
            findings.append(
                Finding(
                    Code.RANDOM_OP,
                    severity,
                    base,
                    raw,
                    f"{call.side} layer {quoted_path(call.path)} calls {call.api}, which is random in this run",
                    hint,
                )
            )
        return findings


#: Where torch's builtin ``scaled_dot_product_attention`` (no signature to bind) takes ``dropout_p``: after
#: query, key, value and the mask.
SDPA_DROPOUT_AT = 4


def _is_random_call(api: str, original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Dropout-like calls are random only with ``training`` and ``p > 0``, attention only with ``dropout_p > 0``
    and ``training`` where taken; sampling always is."""
    if api in ATTENTION_DROPOUT_APIS:
        return _attention_dropout(original, args, kwargs) > 0.0
    if api not in DROPOUT_APIS and not api.endswith("rrelu"):
        return True
    signature = _signature(original)
    if signature is None:
        return True
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return True
    bound.apply_defaults()
    arguments = bound.arguments
    training = bool(arguments.get("training", True))
    probability = arguments.get("p", 1.0)
    try:
        return training and float(probability) > 0.0
    except (TypeError, ValueError):
        return training


def _attention_dropout(original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    """The dropout rate an attention call applies (0 with ``training=False``)."""
    arguments = _attention_arguments(original, args, kwargs)[2]
    if not arguments.get("training", True):
        return 0.0
    try:
        return float(arguments.get("dropout_p", 0.0))
    except (TypeError, ValueError):
        return 1.0


def _attention_arguments(
    original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], dropout: float | None = None
) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
    """The call's arguments (positional, named, and all by name), ``dropout_p`` set to ``dropout`` if given;
    torch's builtin ``scaled_dot_product_attention`` has no signature: its arguments go by position."""
    signature = _signature(original)
    if signature is not None:
        with suppress(TypeError):
            bound = signature.bind(*args, **kwargs)
            if dropout is not None:
                bound.arguments["dropout_p"] = dropout
            return bound.args, bound.kwargs, dict(bound.arguments)
    if len(args) > SDPA_DROPOUT_AT:
        if dropout is not None:
            args = (*args[:SDPA_DROPOUT_AT], dropout, *args[SDPA_DROPOUT_AT + 1 :])
        return args, kwargs, {**kwargs, "dropout_p": args[SDPA_DROPOUT_AT]}
    named = kwargs if dropout is None else {**kwargs, "dropout_p": dropout}
    return args, named, named


@cache
def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None
