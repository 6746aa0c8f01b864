"""A layer that applies an activation inside (paddle's legacy ``BatchNorm(act="relu")``) against one that does not.

The other model applies that activation as its next layer (torchvision's
``BatchNorm2d`` then ``ReLU``), so the pair's outputs differ by design. The
diff compares the built-in side's output with the other side's output after
that activation, applied here on the recorded array, and says so in the
note. The pair's output gradients are not the same quantity (after against
before the activation): they are not compared, and the report says so. Its
parameter gradients are (both sides differentiate the same loss). An
activation not in :data:`ACTIVATIONS` leaves the pair's outputs uncompared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from padiff_graph.core.tree import ModelTree
from padiff_graph.knowledge.configs import builtin_activation
from padiff_graph.layermap import LayerMap
from padiff_graph.run.containers import NotCompared


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


#: Activations applied to a recorded array, by paddle's ``act`` name.
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "swish": lambda x: x * _sigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
}


@dataclass(frozen=True)
class BuiltinActivation:
    """``name`` applied inside the ``inside`` side's layer (``"base"`` or ``"raw"``), not the other's."""

    inside: str
    name: str

    def apply(self, value: np.ndarray) -> np.ndarray:
        """``value`` after the activation, in its own dtype."""
        return ACTIVATIONS[self.name](value.astype(np.float64)).astype(value.dtype)

    @property
    def note(self) -> str:
        other = "raw" if self.inside == "base" else "base"
        return f"the {self.inside} layer applies {self.name} inside: compared with the {other} output after {self.name}"

    @property
    def gradients_skipped(self) -> str:
        return (
            f"output gradients: the {self.inside} layer applies {self.name} inside, so its output gradient is taken "
            f"after {self.name} and the other's before it"
        )


def builtin_activations(
    layer_map: LayerMap, base_tree: ModelTree, raw_tree: ModelTree
) -> tuple[dict[str, BuiltinActivation], list[NotCompared]]:
    """The active pairs whose layers apply different built-in activations, by base path, and those
    whose activation cannot be applied here (:data:`ACTIVATIONS`): not compared, with the reason."""
    found, unknown = {}, []
    for pair in layer_map.active_pairs():
        base = builtin_activation(base_tree.nodes[pair.base].get("config", {})) if pair.base in base_tree else None
        raw = builtin_activation(raw_tree.nodes[pair.raw].get("config", {})) if pair.raw in raw_tree else None
        if base == raw:
            continue
        if base is not None and raw is not None:
            unknown.append(NotCompared(pair.base, pair.raw, f"the layers apply {base} and {raw} inside"))
        elif (base or raw) not in ACTIVATIONS:
            inside = "base" if base is not None else "raw"
            why = f"the {inside} layer applies {base or raw} inside, which the diff cannot apply to the other's output"
            unknown.append(NotCompared(pair.base, pair.raw, why))
        else:
            found[pair.base] = BuiltinActivation("base" if base is not None else "raw", str(base or raw))
    return found, unknown


def records_skipped(
    activations: Mapping[str, BuiltinActivation], layer_map: LayerMap, backward: bool, means_only: bool
) -> list[NotCompared]:
    """What the diff leaves out of those pairs: their output gradients (``backward``), and their
    outputs too where only means are kept (mean mode), to which no activation can be applied."""
    found = []
    for base, activation in activations.items():
        whys = [f"outputs: mean mode keeps only means, and {activation.name} needs the elements"] if means_only else []
        whys += [activation.gradients_skipped] if backward else []
        if whys:
            found.append(NotCompared(base, layer_map.raw_of(base) or "", "; ".join(whys)))
    return found


def offline_left_out(activations: Mapping[str, BuiltinActivation], layer_map: LayerMap) -> list[NotCompared]:
    """Those pairs in an offline compare, which does not apply activations to dumped records: not compared."""
    return [
        NotCompared(base, layer_map.raw_of(base) or "", f"{activation.gradients_skipped}; outputs: not applied offline")
        for base, activation in activations.items()
    ]
