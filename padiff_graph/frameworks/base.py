"""The adapter Protocol: the only way the pipeline touches a framework.

Each framework gets one adapter module that imports the framework when first
used, never at ``import padiff_graph`` time, so the core runs (and maps
layer-map files, dumps and reports) with neither torch nor paddle installed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import BuiltinFunctionType, FunctionType
from typing import Any, Protocol

import numpy as np

from padiff_graph.core.records import LayerInfo, Layout, TensorInfo, TensorKind
from padiff_graph.core.tensorfile import CheckpointReader, Stored
from padiff_graph.knowledge.families import EMBEDDING_FAMILIES, family_of

Hook = Callable[[Any], None]
#: ``hook(args, kwargs)`` before a layer runs; returns replacement ``(args, kwargs)`` or ``None``.
InputHook = Callable[[tuple[Any, ...], dict[str, Any]], "tuple[tuple[Any, ...], dict[str, Any]] | None"]
#: ``hook(api_name, outputs)`` after each recorded framework API call.
OpHook = Callable[[str, Any], None]


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

    def to_numpy(self, tensor: Any, copy: bool = True) -> np.ndarray:
        """A detached host array (bf16 widened to fp32); ``copy=False`` may share memory.

        A distributed tensor gives this rank's local part (see :meth:`layout`).
        """

    def write(self, tensor: Any, value: np.ndarray) -> None:
        """Overwrite a parameter or buffer in place, keeping its dtype and device."""

    def dtype_name(self, tensor: Any) -> str:
        """``float32``, ``bfloat16``, ...: the same spelling in every framework."""

    def grad(self, tensor: Any, copy: bool = True) -> np.ndarray | None:
        """The tensor's accumulated gradient, if any: a host copy, or (``copy=False``) a view where the
        framework allows, only valid until the gradient changes."""

    def write_grad(self, tensor: Any, value: np.ndarray) -> bool:
        """Overwrite the tensor's accumulated gradient in place; ``False`` where it has none."""

    def to_inputs(self, model: Any, arrays: Mapping[str, Any]) -> dict[str, Any]:
        """Numpy arrays or this framework's tensors as tensors on the model's device.

        Floating values take the dtype of the model's floating parameters.
        """

    def is_tensor(self, value: object) -> bool: ...

    def runs_beside(self, model: Any) -> bool:
        """Whether a step of ``model`` keeps its speed on a worker thread while another framework's model
        steps on the main thread (:func:`padiff_graph.frameworks.side_beside`)."""

    def cpu_threads(self) -> int:
        """The threads this framework's CPU kernels use when called from this thread."""

    def add_forward_hook(self, layer: Any, hook: Callable[[Any], None]) -> RemovableHandle:
        """Call ``hook(output)`` after each call of ``layer``."""

    def add_pre_hook(self, layer: Any, hook: Callable[[], None]) -> RemovableHandle:
        """Call ``hook()`` before each call of ``layer``."""

    def add_input_hook(self, layer: Any, hook: InputHook) -> RemovableHandle:
        """Call ``hook(args, kwargs)`` before each call of ``layer``; it may replace the inputs."""

    def watch_grad(self, tensor: Any, hook: Callable[[Any], np.ndarray | None]) -> None:
        """Call ``hook(grad)`` when the gradient of a non-leaf tensor is computed.

        If the hook returns an array, it replaces the gradient flowing on.
        """

    def watch_accumulated_grad(self, tensor: Any, hook: Callable[[Any], None]) -> RemovableHandle:
        """Call ``hook(grad)`` once a backward has accumulated the gradient of the leaf ``tensor`` (a parameter):
        one call per backward, every use of the tensor summed, the array its ``.grad`` then holds."""

    def version(self, tensor: Any) -> int:
        """The tensor's in-place modification counter."""

    def substitute(self, tensor: Any, value: np.ndarray) -> Any:
        """A tensor holding ``value`` (``tensor``'s dtype and device) through which gradients reach ``tensor``."""

    def step_optimizer(self, optimizer: Any) -> None:
        """Step a framework optimizer and clear its gradients, or call a callable that does both."""

    def autocast(self, model: Any, dtype: str | None) -> AbstractContextManager[Any]:
        """The framework's automatic mixed precision for ``model``'s device (no-op for ``None``)."""

    def full_precision(self, layer: Any) -> AbstractContextManager[Any]:
        """While active, ``layer``'s bfloat16/float16 parameters and buffers hold their values in float32
        (a lossless widening); each gets its own memory back after."""

    def rank(self) -> int:
        """This process's rank under the framework's distributed runtime (0 if not initialized)."""

    def world_size(self) -> int:
        """How many processes the framework's distributed runtime runs (1 if not initialized)."""

    def layout(self, tensor: Any, of_grad: bool = False) -> Layout | None:
        """Where a distributed engine placed this rank's part of ``tensor`` (or of its gradient).

        ``None`` for a plain tensor: whatever it holds, the engine did not say.
        :meth:`to_numpy` of a distributed tensor is this rank's local part.
        """

    def record_ops(self, names: Mapping[str, str], hook: OpHook) -> AbstractContextManager[Any]:
        """While active, call ``hook(name, outputs)`` after each call of an API in ``names``.

        ``names`` maps qualified API names (``torch.nn.functional.gelu``) to
        canonical ones; nothing is patched or hooked outside the context.
        """

    def op_overrides(self, overrides: Mapping[str, Callable[..., Any]]) -> AbstractContextManager[Any]:
        """While active, a call of a named API runs ``replacement(original, *args, **kwargs)`` instead."""

    def requires_grad(self, tensor: Any) -> bool: ...

    def mean_loss(self, output: Any) -> Any:
        """Sum of the means of all floating tensors in ``output`` (the default loss)."""

    def backward(self, loss: Any) -> None: ...

    def clear_grads(self, model: Any) -> None:
        """Drop the model's gradients (none, not zeros): a parameter the next step does not reach has none after it."""

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

    def open_checkpoint(self, path: Path) -> CheckpointReader:
        """This framework's own checkpoint format, read without running code (lazily where it can)."""

    def save_checkpoint(self, path: Path, tensors: Mapping[str, Stored]) -> None:
        """Write ``tensors`` in this framework's own format (``path``'s suffix picks it)."""

    def check_checkpoint(self, path: Path, expected: Mapping[str, Stored]) -> list[str]:
        """Read a file :meth:`save_checkpoint` wrote once, without holding it whole, and say how it differs
        from ``expected`` bit for bit (keys, shapes, dtypes, values; by tensor where the format allows)."""

    def load_checkpoint(self, model: Any, path: Path) -> list[str] | None:
        """Load ``path`` into ``model`` as a user would: the missing and unexpected keys.

        ``None`` when the model cannot take values (built without memory, and
        the framework cannot attach the file's tensors to it).
        """

    def load_tensors(self, model: Any, tensors: Mapping[str, Stored]) -> list[str]:
        """Copy ``tensors`` (some of a state dict) into a materialized ``model``'s memory: the keys it lacks."""

    def host_memory(self, tensor: Any) -> np.ndarray | None:
        """The tensor's own host memory as a writable C-ordered array, where numpy can hold its dtype."""


@contextmanager
def widened(tensors: Iterable[Any], low: Collection[Any], widen: Callable[[Any], Any]) -> Iterator[None]:
    """While active, each of ``tensors`` of a dtype in ``low`` holds ``widen`` of its values (its ``data``
    swapped, a lossless widening); each gets its own memory back after: :meth:`FrameworkAdapter.full_precision`."""
    narrow = [tensor for tensor in tensors if tensor.dtype in low]
    kept = [tensor.data for tensor in narrow]
    for tensor in narrow:
        tensor.data = widen(tensor.data)
    try:
        yield
    finally:
        for tensor, data in zip(narrow, kept, strict=True):
            tensor.data = data


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


@dataclass(frozen=True)
class ExportRules:
    """How one framework spells what the shared export walk needs."""

    framework: str
    child_names: Callable[[Any], Iterable[str]]  # a layer's registered sublayer names, in order
    is_builtin: Callable[[Any], bool]  # the layer's class ships with the framework (torch.nn, paddle.nn)
    trainable: Callable[[Any], bool]  # a parameter that receives gradients
    non_persistent: Callable[[Any], Collection[str]]  # a layer's buffers left out of its state dict
    dtype_name: Callable[[Any], str]
    base_attributes: Callable[[], frozenset[str]]  # attributes every layer has (not hyperparameters)


def export_layers(
    layers: Mapping[str, Any],
    parameters: Iterable[tuple[str, Any]],
    buffers: Iterable[tuple[str, Any]],
    rules: ExportRules,
) -> list[LayerInfo]:
    """Neutral records for every layer: class, place among siblings, own tensors with their kinds."""
    own: dict[str, list[TensorInfo]] = {path: [] for path in layers}
    for full_name, parameter in parameters:
        owner, _, local = full_name.rpartition(".")
        owner_layer = layers[owner]
        if family_of(type(owner_layer).__name__, rules.is_builtin(owner_layer)) in EMBEDDING_FAMILIES:
            kind = TensorKind.EMBEDDING
        elif rules.trainable(parameter):
            kind = TensorKind.PARAMETER
        else:
            kind = TensorKind.FROZEN
        own[owner].append(TensorInfo(local, tuple(parameter.shape), rules.dtype_name(parameter.dtype), kind))
    for full_name, buffer in buffers:
        owner, _, local = full_name.rpartition(".")
        persistent = local not in rules.non_persistent(layers[owner])
        own[owner].append(
            TensorInfo(local, tuple(buffer.shape), rules.dtype_name(buffer.dtype), TensorKind.BUFFER, persistent)
        )
    indices = child_indices(layers, rules.child_names)
    records = []
    for path, layer in layers.items():
        builtin = rules.is_builtin(layer)
        records.append(
            LayerInfo(
                path=path,
                class_name=type(layer).__name__,
                framework=rules.framework,
                index=indices[path],
                builtin=builtin,
                training=bool(layer.training),
                tensors=tuple(own[path]),
                config=scalar_config(vars(layer), rules.base_attributes()) if builtin else {},
            )
        )
    return records


def child_indices(layers: Mapping[str, Any], child_names: Callable[[Any], Iterable[str]]) -> dict[str, int]:
    """Each layer's definition index among its siblings, in one pass over the tree."""
    indices = {"": 0}
    for path, layer in layers.items():
        for index, name in enumerate(child_names(layer)):
            indices.setdefault(f"{path}.{name}" if path else name, index)
    return indices


def map_tensors(value: Any, is_tensor: Callable[[object], bool], replace: Callable[[Any], Any]) -> Any:
    """``value`` rebuilt with every tensor passed through ``replace`` (same traversal as :func:`iter_tensors`)."""
    if is_tensor(value):
        return replace(value)
    if isinstance(value, Mapping):
        return type(value)((key, map_tensors(item, is_tensor, replace)) for key, item in value.items())  # type: ignore[call-arg]
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(map_tensors(item, is_tensor, replace) for item in value))
    if isinstance(value, (list, tuple)):
        return type(value)(map_tensors(item, is_tensor, replace) for item in value)
    return value


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
