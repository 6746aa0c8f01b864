"""The adapter Protocol: the only way the pipeline touches a framework.

Each framework gets one adapter module that imports the framework when first
used, never at ``import padiff_graph`` time, so the core runs (and maps
layer-map files, dumps and reports) with neither torch nor paddle installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import BuiltinFunctionType, FunctionType
from typing import Any, Protocol

import numpy as np

from padiff_graph.records import LayerInfo
from padiff_graph.tensorfile import CheckpointReader, Stored

Hook = Callable[[Any], None]


class RemovableHandle(Protocol):
    def remove(self) -> None: ...


class FrameworkAdapter(Protocol):
    """What the pipeline needs from a framework (torch, paddle)."""

    name: str

    def owns(self, model: object) -> bool:
        """True if ``model`` is this framework's layer type."""

    def export(self, model: Any) -> list[LayerInfo]:
        """Neutral records for every layer, in ``named_modules`` order."""

    def named_layers(self, model: Any) -> dict[str, Any]:
        """Layer objects by dotted path (root ``""``)."""

    def named_tensors(self, model: Any) -> dict[str, Any]:
        """Parameters and buffers by full dotted name."""

    def to_numpy(self, tensor: Any) -> np.ndarray:
        """A detached host copy (bf16 widened to fp32)."""

    def write(self, tensor: Any, value: np.ndarray) -> None:
        """Overwrite a parameter or buffer in place, keeping its dtype and device."""

    def dtype_name(self, tensor: Any) -> str:
        """``float32``, ``bfloat16``, ...: the same spelling in every framework."""

    def grad(self, tensor: Any) -> np.ndarray | None:
        """The tensor's accumulated gradient, if any."""

    def to_inputs(self, model: Any, arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Framework tensors on the model's device for numpy inputs."""

    def is_tensor(self, value: object) -> bool: ...

    def add_forward_hook(self, layer: Any, hook: Callable[[Any], None]) -> RemovableHandle:
        """Call ``hook(output)`` after each call of ``layer``."""

    def add_pre_hook(self, layer: Any, hook: Callable[[], None]) -> RemovableHandle:
        """Call ``hook()`` before each call of ``layer``."""

    def watch_grad(self, tensor: Any, hook: Callable[[Any], None]) -> None:
        """Call ``hook(grad)`` when the gradient of a non-leaf tensor is computed."""

    def requires_grad(self, tensor: Any) -> bool: ...

    def mean_loss(self, output: Any) -> Any:
        """Sum of the means of all floating tensors in ``output`` (the default loss)."""

    def backward(self, loss: Any) -> None: ...

    def clear_grads(self, model: Any) -> None: ...

    def no_grad(self) -> Any:
        """A context manager that disables autograd."""

    def forward_signature_target(self, model: Any) -> Callable[..., Any]:
        """The callable whose signature names the model's inputs."""

    def shared_layers(self, model: Any) -> dict[str, str]:
        """Second and later paths of layers reachable under several names -> their first path."""

    def state_dict_names(self, model: Any) -> dict[str, str]:
        """Each key of the model's state dict -> the :meth:`named_tensors` name of its tensor.

        Keys differ from names where one tensor appears twice (tied weights;
        paddle's RNN cells repeat their parent's parameters).
        """

    def is_materialized(self, model: Any) -> bool:
        """False for models built without memory (torch meta device, paddle ``LazyGuard``)."""

    def open_checkpoint(self, path: Path, layout_only: bool = False) -> CheckpointReader:
        """This framework's own checkpoint format, read without running code (lazily where it can).

        ``layout_only``: only names, shapes and dtypes will be asked for.
        """

    def save_checkpoint(self, path: Path, tensors: Mapping[str, Stored]) -> None:
        """Write ``tensors`` in this framework's own format (``path``'s suffix picks it)."""

    def load_checkpoint(self, model: Any, path: Path) -> list[str] | None:
        """Load ``path`` into ``model`` as a user would: the missing and unexpected keys.

        ``None`` when the model cannot take values (built without memory, and
        the framework cannot attach the file's tensors to it).
        """


def iter_tensors(value: Any, is_tensor: Callable[[object], bool]) -> Iterator[Any]:
    """Tensors in an output, depth first through tuples, lists and dicts."""
    if is_tensor(value):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from iter_tensors(item, is_tensor)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from iter_tensors(item, is_tensor)


def child_indices(layers: Mapping[str, Any], child_names: Callable[[Any], Iterable[str]]) -> dict[str, int]:
    """Each layer's definition index among its siblings, in one pass over the tree."""
    indices = {"": 0}
    for path, layer in layers.items():
        for index, name in enumerate(child_names(layer)):
            indices.setdefault(f"{path}.{name}" if path else name, index)
    return indices


def scalar_config(attributes: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    """Hyperparameters of a builtin layer: its plain scalar attributes.

    Leading underscores are dropped (paddle keeps ``_epsilon``) so both
    frameworks' spellings can be compared through the knowledge tables;
    functions (a transformer layer's ``activation``) are kept by name.
    """
    config: dict[str, Any] = {}
    for key, value in attributes.items():
        if key in skip:
            continue
        if isinstance(value, (bool, int, float, str)) or value is None:
            config[key.lstrip("_")] = value
        elif isinstance(value, (FunctionType, BuiltinFunctionType)):
            config[key.lstrip("_")] = value.__name__.lstrip("_")
        elif (
            isinstance(value, (tuple, list))
            and len(value) <= 8
            and all(isinstance(item, (bool, int, float, str)) for item in value)
        ):
            config[key.lstrip("_")] = list(value)
    return config


def aliases(root: Any, children: Callable[[Any], Iterable[tuple[str, Any]]]) -> dict[str, str]:
    """Paths of layer objects met again under another name -> the path first met (definition order).

    Frameworks list a shared layer once, under its first name; its other names
    matter when the other model has a layer of its own there.
    """
    first: dict[int, str] = {}
    found: dict[str, str] = {}
    stack: list[tuple[str, Any]] = [("", root)]
    while stack:
        path, layer = stack.pop()
        if id(layer) in first:
            found[path] = first[id(layer)]
            continue
        first[id(layer)] = path
        named = [(f"{path}.{name}" if path else name, child) for name, child in children(layer) if child is not None]
        stack.extend(reversed(named))
    return found
