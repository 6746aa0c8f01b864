"""The base's parameter gradients given to the raw optimizer, so the weights after a step compare optimizers.

With optimizers, the weights after each step are compared to check that the
two optimizers do the same. Each stepping on its own model's gradients, they
would also differ by what an optimizer makes of the gradients' rounding
noise: Adam divides each element by its own running scale, so an element
whose gradient is zero up to rounding (a key projection's bias, which softmax
ignores) moves by a whole learning rate, in either direction. Each gradient
is compared first (its own difference is judged there); then the raw
optimizer steps on the base's gradients, written through the layer map, as
single-step mode feeds each layer the base's inputs. A raw tensor keeps its
own gradient where the base's cannot stand for it: a pair copied by an opaque
``init`` function, a base tensor written whole into several raw copies (a tie:
each copy's gradient is its own share), a part the base fills with a constant.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from padiff_graph.assign.weights import planned_writes
from padiff_graph.core.arrays import copy_into
from padiff_graph.frameworks.base import FrameworkAdapter
from padiff_graph.layermap import LayerMap


def feed_base_gradients(
    layer_map: LayerMap, base_grads: dict[str, np.ndarray], raw_adapter: FrameworkAdapter, raw_model: Any
) -> list[str]:
    """Write each base gradient (by base tensor name) into the raw tensors the map copies it into; the raw
    tensors fed."""
    raw_tensors = raw_adapter.named_tensors(raw_model)
    writes = planned_writes(layer_map)
    # a base tensor written whole into several raw tensors is a tie (a fused one cut into regions is not)
    copies = Counter(base for parts in writes.values() for base, transform in parts if transform.base_index is None)
    fed = []
    for raw_name, parts in writes.items():
        if any(copies[base] > 1 or base not in base_grads for base, _ in parts):
            continue
        target = raw_tensors[raw_name]
        value = raw_adapter.grad(target)  # a copy: a region the base does not write keeps the raw's own
        if value is None:
            continue
        for base, transform in parts:
            part = transform.view(base_grads[base])
            if transform.raw_index is None:
                value = part
            else:
                copy_into(value[transform.raw_index], part)
        if raw_adapter.write_grad(target, value):
            fed.append(raw_name)
    return fed
