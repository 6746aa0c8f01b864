"""Recurrent layers in eval mode, which paddle cannot run backward through.

Paddle's LSTM/GRU/SimpleRNN keep no state for the backward pass in eval mode, and
eval mode is how most users align a model. Such a layer without dropout computes
the same in training mode, so it runs in training mode for the diff (and is put
back after); one with dropout between its stacked layers would compute something
else there, so the diff then compares the forward pass only. The report's
settings say which: ``trained_for_backward`` and ``forward_only_because``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from padiff_graph.core.tree import ModelTree, is_within, layer_info, preorder
from padiff_graph.frameworks.base import FrameworkAdapter
from padiff_graph.knowledge.families import EVAL_RECURRENT_WITHOUT_BACKWARD, RECURRENT_FAMILIES, layer_family


@dataclass(frozen=True)
class RecurrentPlan:
    """Which eval-mode recurrent layers run in training mode, per side, and which block the backward."""

    base: tuple[str, ...] = ()
    raw: tuple[str, ...] = ()
    blocked: tuple[str, ...] = ()

    @classmethod
    def of(cls, base: ModelTree, raw: ModelTree) -> RecurrentPlan:
        (base_plain, base_dropping), (raw_plain, raw_dropping) = _eval_recurrent(base), _eval_recurrent(raw)
        blocked = tuple(f"base {p!r}" for p in base_dropping) + tuple(f"raw {p!r}" for p in raw_dropping)
        if blocked:
            return cls(blocked=blocked)
        return cls(tuple(base_plain), tuple(raw_plain))

    def settings(self) -> dict[str, Any]:
        """What the report's settings say about it."""
        found: dict[str, Any] = {}
        if self.base or self.raw:
            found["trained_for_backward"] = {"base": list(self.base), "raw": list(self.raw)}
        if self.blocked:
            found["forward_only_because"] = (
                f"eval-mode recurrent layers with dropout ({', '.join(self.blocked)}) keep no state for backward "
                "and would compute something else in training mode"
            )
        return found

    @contextmanager
    def applied(self, base: tuple[FrameworkAdapter, Any], raw: tuple[FrameworkAdapter, Any]) -> Iterator[None]:
        """Run the planned layers (and the layers inside them) in training mode inside the block, then in eval again."""
        switched = []
        for (adapter, model), tops in ((base, self.base), (raw, self.raw)):
            layers = adapter.named_layers(model)
            switched += [layers[path] for path in layers if any(is_within(path, top) for top in tops)]
        for layer in switched:
            layer.training = True
        try:
            yield
        finally:
            for layer in switched:
                layer.training = False


def _eval_recurrent(tree: ModelTree) -> tuple[list[str], list[str]]:
    """Eval-mode recurrent layers this framework cannot run backward through: (without dropout, with dropout)."""
    if tree.graph["framework"] not in EVAL_RECURRENT_WITHOUT_BACKWARD:
        return [], []
    plain: list[str] = []
    dropping: list[str] = []
    for path in preorder(tree):
        info = layer_info(tree, path)
        if layer_family(info) not in RECURRENT_FAMILIES or info.training or any(is_within(path, p) for p in plain):
            continue
        stacked = int(info.config.get("num_layers", 1)) > 1
        (dropping if stacked and float(info.config.get("dropout", 0.0)) > 0 else plain).append(path)
    return plain, dropping
