"""A proxy's ``.report``: what it recorded since the last ``clear_report``, as PaDiff's report items.

PaDiff gives every recorded call two items, a ``forward`` one and a
``backward`` one, in the order the calls finish: a layer's after its
sublayers', the model's last. Layers are those the proxy's lists select;
with ``PADIFF_API_CHECK=ON`` the API calls made directly in your layers'
code come in too (:mod:`padiff_graph.compat.apicheck`), named as PaDiff names
them (``paddle.nn.functional.relu``, ``paddle.Tensor.__mul__``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ReportItem:
    """One recorded call in one direction.

    Attributes:
        type: ``"forward"`` or ``"backward"``.
        step: the item's position in the report.
        net_str: the layer's class name, or the API's qualified name.
        path: the layer's dotted path in the model (``""`` for the model); ``None`` for an API call.
        net_id: the layer's position in the model's traversal (the model is 0); -1 for an API call.
        tensors: the outputs (forward), or the output gradients recorded so far (backward; none for an API call).
    """

    type: str
    step: int
    net_str: str
    path: str | None
    net_id: int
    tensors: list[np.ndarray] = field(default_factory=list)

    def tensors_for_compare(self) -> list[np.ndarray]:
        return self.tensors


@dataclass
class Report:
    """PaDiff's report of one recorded run: ``items``, in order."""

    items: list[ReportItem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(["Report:", *(f"    {item.step}: [{item.net_str}]" for item in self.items)])


@dataclass(frozen=True)
class ApiCall:
    """An API call recorded while the proxy ran: ``position`` is the number of layer records made before it ended."""

    position: int
    name: str
    outputs: list[np.ndarray]


def padiff_report(records: Sequence[tuple[Any, ...]], classes: dict[str, str], api: list[ApiCall]) -> Report:
    """The items of a :class:`padiff_graph.Recording`'s records and of the API calls.

    ``classes`` maps every layer path to its class name, in the model's traversal order.
    """
    calls: dict[tuple[str, int], tuple[int, list[np.ndarray], list[np.ndarray]]] = {}
    for position, (key, value, *_) in enumerate(records):
        if key.stage not in ("forward", "backward"):
            continue
        _first, outputs, grads = calls.setdefault((key.path, key.call), (position, [], []))
        (outputs if key.stage == "forward" else grads).append(value)
    ordered: list[tuple[int, int, str, str | None, list[np.ndarray], list[np.ndarray]]] = [
        (position, 1, classes.get(path, "?"), path, outputs, grads)
        for (path, _call), (position, outputs, grads) in calls.items()
    ]
    ordered += [(call.position, 0, call.name, None, call.outputs, []) for call in api]
    traversal = {path: index for index, path in enumerate(classes)}
    report = Report()
    for _position, _kind, net_str, path, outputs, grads in sorted(ordered, key=lambda entry: entry[:2]):
        net_id = -1 if path is None else traversal.get(path, -1)
        report.items.append(ReportItem("forward", len(report.items), net_str, path, net_id, outputs))
        report.items.append(ReportItem("backward", len(report.items), net_str, path, net_id, grads))
    return report
