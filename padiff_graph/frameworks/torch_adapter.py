"""PyTorch adapter: ``torch.nn.Module`` to neutral records, hooks and tensors."""

from __future__ import annotations

import pickle
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from padiff_graph.core.records import LayerInfo, Layout
from padiff_graph.core.tensorfile import ZIP_ERRORS, SafetensorsReader, Stored, differences
from padiff_graph.errors import InputError
from padiff_graph.frameworks.base import (
    ExportRules,
    InputHook,
    OpHook,
    RemovableHandle,
    aliases,
    export_layers,
    iter_tensors,
    widened,
)

#: Keys under which training scripts commonly nest the state dict.
_NESTED_STATE_KEYS = ("state_dict", "model", "model_state_dict", "module")


def _torch() -> Any:
    import torch

    return torch


@cache
def _base_attributes() -> frozenset[str]:
    return frozenset(vars(_torch().nn.Module()))


def _is_builtin(layer: object) -> bool:
    return type(layer).__module__.startswith("torch.nn.")


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


_RULES = ExportRules(
    framework="torch",
    child_names=lambda layer: layer._modules,
    is_builtin=_is_builtin,
    trainable=lambda parameter: bool(parameter.requires_grad),
    non_persistent=lambda layer: layer._non_persistent_buffers_set,
    dtype_name=_dtype_name,
    base_attributes=_base_attributes,
)


class TorchAdapter:
    name = "torch"

    def owns(self, model: object) -> bool:
        return isinstance(model, _torch().nn.Module)

    def named_layers(self, model: Any) -> dict[str, Any]:
        return dict(model.named_modules())

    def export(self, model: Any) -> list[LayerInfo]:
        return export_layers(self.named_layers(model), model.named_parameters(), model.named_buffers(), _RULES)

    def named_tensors(self, model: Any) -> dict[str, Any]:
        tensors = dict(model.named_parameters())
        tensors.update(model.named_buffers())
        return tensors

    def to_numpy(self, tensor: Any, copy: bool = True) -> np.ndarray:
        torch = _torch()
        value = _local(tensor).detach()
        if value.is_meta:
            raise ValueError("tensor lives on the meta device and holds no values")
        if value.dtype == torch.bfloat16:
            value, copy = value.float(), False
        if value.device.type != "cpu":
            value, copy = value.cpu(), False
        array = value.resolve_conj().resolve_neg().numpy()
        return array.copy() if copy else array

    def write(self, tensor: Any, value: np.ndarray) -> None:
        torch = _torch()
        with torch.no_grad():
            source = value if value.flags.writeable else value.copy()  # torch wants writable memory
            tensor.copy_(torch.from_numpy(source))  # any strides, any dtype: one pass of torch's copy kernel

    def dtype_name(self, tensor: Any) -> str:
        return _dtype_name(tensor.dtype)

    def grad(self, tensor: Any, copy: bool = True) -> np.ndarray | None:
        return None if tensor.grad is None else self.to_numpy(tensor.grad, copy=copy)

    def write_grad(self, tensor: Any, value: np.ndarray) -> bool:
        if tensor.grad is None:
            return False
        self.write(tensor.grad, value)
        return True

    def to_inputs(self, model: Any, arrays: Mapping[str, Any]) -> dict[str, Any]:
        torch = _torch()
        device = _device(model)
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        converted = {}
        for name, value in arrays.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value))
            if tensor.is_floating_point() and dtype is not None:
                tensor = tensor.to(dtype)
            converted[name] = tensor.to(device)
        return converted

    def runs_beside(self, model: Any) -> bool:
        # on the CPU its intra-op threads take the cores the other step leaves idle; a GPU's current
        # device is the thread's own, and its launches return at once anyway
        return bool(_device(model).type == "cpu")

    def cpu_threads(self) -> int:
        return int(_torch().get_num_threads())

    def is_tensor(self, value: object) -> bool:
        return isinstance(value, _torch().Tensor)

    def add_forward_hook(self, layer: Any, hook: Callable[[Any], None]) -> RemovableHandle:
        # first among the layer's hooks: it sees what the forward computed, before a hook rewrites it
        # (tensor parallelism turns a DTensor output into a bare local shard, or reduces a partial sum)
        return layer.register_forward_hook(lambda _layer, _args, output: hook(output), prepend=True)

    def add_pre_hook(self, layer: Any, hook: Callable[[], None]) -> RemovableHandle:
        return layer.register_forward_pre_hook(lambda _layer, _args: hook())

    def add_input_hook(self, layer: Any, hook: InputHook) -> RemovableHandle:
        return layer.register_forward_pre_hook(lambda _layer, args, kwargs: hook(args, kwargs), with_kwargs=True)

    def watch_grad(self, tensor: Any, hook: Callable[[Any], np.ndarray | None]) -> None:
        torch = _torch()

        def call(grad: Any) -> Any:
            replacement = hook(grad)
            if replacement is None:
                return None
            return torch.from_numpy(np.ascontiguousarray(replacement)).to(grad.dtype).to(grad.device)

        tensor.register_hook(call)

    def watch_accumulated_grad(self, tensor: Any, hook: Callable[[Any], None]) -> RemovableHandle:
        return tensor.register_post_accumulate_grad_hook(lambda parameter: hook(parameter.grad))

    def version(self, tensor: Any) -> int:
        return int(tensor._version)

    def substitute(self, tensor: Any, value: np.ndarray) -> Any:
        torch = _torch()
        replacement = torch.from_numpy(np.ascontiguousarray(value)).to(tensor.dtype).to(tensor.device)
        if not tensor.requires_grad:
            return replacement
        return _substitute_function().apply(tensor, replacement)

    def step_optimizer(self, optimizer: Any) -> None:
        if isinstance(optimizer, _torch().optim.Optimizer):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            optimizer()

    def autocast(self, model: Any, dtype: str | None) -> AbstractContextManager[Any]:
        if dtype is None:
            return nullcontext()
        torch = _torch()
        return torch.autocast(_device(model).type, dtype=getattr(torch, dtype))

    def full_precision(self, layer: Any) -> AbstractContextManager[Any]:
        torch = _torch()
        return widened(
            [*layer.parameters(), *layer.buffers()], (torch.bfloat16, torch.float16), lambda data: data.float()
        )

    def rank(self) -> int:
        distributed = _torch().distributed
        return int(distributed.get_rank()) if distributed.is_available() and distributed.is_initialized() else 0

    def world_size(self) -> int:
        distributed = _torch().distributed
        return int(distributed.get_world_size()) if distributed.is_available() and distributed.is_initialized() else 1

    def layout(self, tensor: Any, of_grad: bool = False) -> Layout | None:
        value = tensor.grad if of_grad else tensor
        if not _is_dtensor(value):
            return None
        mesh = value.device_mesh
        coordinate = mesh.get_coordinate()
        if coordinate is None:  # this rank is outside the tensor's mesh: it holds nothing of it
            return None
        placements = tuple(_placement_name(placement, value.ndim) for placement in value.placements)
        return Layout(placements, tuple(mesh.shape), tuple(coordinate), tuple(value.shape))

    def record_ops(self, names: Mapping[str, str], hook: OpHook) -> AbstractContextManager[Any]:
        from padiff_graph.frameworks.torch_ops import recording

        return recording(names, hook, {})

    def op_overrides(self, overrides: Mapping[str, Callable[..., Any]]) -> AbstractContextManager[Any]:
        from padiff_graph.frameworks.torch_ops import recording

        return recording({}, None, overrides)

    def requires_grad(self, tensor: Any) -> bool:
        return bool(tensor.requires_grad)

    def mean_loss(self, output: Any) -> Any:
        floats = [t for t in iter_tensors(output, self.is_tensor) if t.is_floating_point() and t.requires_grad]
        if not floats:
            raise ValueError("the model's output holds no floating tensor that requires grad")
        return sum(t.float().mean() for t in floats)

    def backward(self, loss: Any) -> None:
        loss.backward()

    def clear_grads(self, model: Any) -> None:
        model.zero_grad(set_to_none=True)

    def no_grad(self) -> AbstractContextManager[Any]:
        return _torch().no_grad()

    def forward_signature_target(self, model: Any) -> Callable[..., Any]:
        return model.forward

    def shared_layers(self, model: Any) -> dict[str, str]:
        return aliases(model, lambda layer: layer._modules.items())

    def state_dict_names(self, model: Any) -> dict[str, str]:
        canonical = {id(tensor): name for name, tensor in self.named_tensors(model).items()}
        return {key: canonical.get(id(tensor), key) for key, tensor in model.state_dict(keep_vars=True).items()}

    def is_materialized(self, model: Any) -> bool:
        return not any(tensor.is_meta for tensor in model.state_dict(keep_vars=True).values())

    def open_checkpoint(self, path: Path) -> TorchCheckpoint:
        return TorchCheckpoint(path)  # memory-mapped: reading the layout touches no values

    def save_checkpoint(self, path: Path, tensors: Mapping[str, Stored]) -> None:
        _torch().save(_state_of(tensors), path)

    def check_checkpoint(self, path: Path, expected: Mapping[str, Stored]) -> list[str]:
        state = _load(path)  # memory-mapped: each tensor is compared where the file holds it
        return differences(((name, _stored(tensor)) for name, tensor in state.items()), expected)

    def load_checkpoint(self, model: Any, path: Path) -> list[str] | None:
        if path.suffix == ".safetensors":
            reader = SafetensorsReader(path)
            state = {name: _from_stored(reader.read(name)) for name in reader.names()}
        else:
            state = _torch().load(path, map_location="cpu", weights_only=True, mmap=True)
        # a model built on the meta device takes the file's (memory-mapped) tensors as they are
        result = model.load_state_dict(state, strict=False, assign=not self.is_materialized(model))
        missing = [f"missing {key}" for key in result.missing_keys]
        return missing + [f"unexpected {key}" for key in result.unexpected_keys]

    def load_tensors(self, model: Any, tensors: Mapping[str, Stored]) -> list[str]:
        result = model.load_state_dict(_state_of(tensors), strict=False)
        return [f"unexpected {key}" for key in result.unexpected_keys]

    def host_memory(self, tensor: Any) -> np.ndarray | None:
        value = tensor.detach()
        if value.is_meta or value.device.type != "cpu" or value.dtype == _torch().bfloat16 or _is_dtensor(tensor):
            return None
        return value.numpy() if value.is_contiguous() and not value.is_conj() and not value.is_neg() else None


class TorchCheckpoint:
    """A torch ``.pt``/``.bin`` state dict: ``torch.load(weights_only=True)``, memory-mapped when the format allows."""

    def __init__(self, path: Path) -> None:
        _verify_records(path)
        try:
            loaded = _load(path)
        except Exception as error:  # the weights-only unpickler is Python code: damage can make it raise anything
            reason = _reason(error)
            if isinstance(error, pickle.UnpicklingError) and "GLOBAL" in reason:
                raise InputError(
                    f"refusing to load {path}: it holds more than tensors and loading it would run code ({reason})"
                ) from None
            raise InputError(f"cannot read {path} as a torch checkpoint: {reason}; get the file again") from None
        self.path = path
        self.tensors = _state_dict_in(loaded, path)

    def names(self) -> list[str]:
        return list(self.tensors)

    def info(self, name: str) -> tuple[tuple[int, ...], str]:
        tensor = self.tensors[name]
        return tuple(tensor.shape), _dtype_name(tensor.dtype)

    def read(self, name: str) -> Stored:
        return _stored(self.tensors[name])

    def close(self) -> None:
        self.tensors = {}


def _load(path: Path) -> Any:
    torch = _torch()
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)  # the legacy format cannot be mapped


#: the lines of torch's weights-only errors that say nothing about the file
_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _reason(error: BaseException) -> str:
    """The informative line of a loading error (torch's start with boilerplate, miniz's end with it)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(_BOILERPLATE)] or lines or [""]
    return f"{type(error).__name__}: {lines[0].split('. This is an internal miniz error')[0]}"


def _verify_records(path: Path) -> None:
    """Check the CRC-32 of every record of torch's zip format, which ``torch.load`` does not (legacy files: none).

    Raises:
        InputError: a record whose bytes changed since it was written, named with its byte range.
    """
    try:
        archive = zipfile.ZipFile(path)
    except ZIP_ERRORS:
        return  # the legacy format, or damage that torch.load reports
    with archive:
        for info in archive.infolist():
            try:
                with archive.open(info) as stream:
                    while stream.read(2**20):  # reading to a record's end checks its CRC-32
                        pass
            except ZIP_ERRORS as error:
                where = f"record {info.filename!r}, from byte {info.header_offset}"
                raise InputError(f"{path}: damaged torch checkpoint ({where}): {error}; get the file again") from None


def _state_dict_in(loaded: Any, path: Path) -> dict[str, Any]:
    """The tensor dictionary in what ``torch.load`` returned (possibly nested under ``state_dict``...)."""
    torch = _torch()
    if isinstance(loaded, Mapping):
        if loaded and all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in loaded.items()):
            return dict(loaded)
        for key in _NESTED_STATE_KEYS:
            if isinstance(loaded.get(key), Mapping):
                return _state_dict_in(loaded[key], path)
    keys = list(loaded)[:5] if isinstance(loaded, Mapping) else type(loaded).__name__
    raise InputError(f"{path} holds no state dict of tensors (found {keys})")


def _stored(tensor: Any) -> Stored:
    """A CPU tensor's bytes as a numpy view (bfloat16 as its ``uint16`` bits)."""
    tensor = tensor.detach()
    if tensor.dtype == _torch().bfloat16:
        return Stored(tensor.view(_torch().int16).numpy().view(np.uint16), "bfloat16")
    return Stored(tensor.numpy(), _dtype_name(tensor.dtype))


def _state_of(tensors: Mapping[str, Stored]) -> dict[str, Any]:
    """Torch tensors sharing the arrays' memory; one tensor per array, so aliases stay shared."""
    made: dict[int, Any] = {}
    state = {}
    for name, stored in tensors.items():
        if id(stored.array) not in made:
            made[id(stored.array)] = _from_stored(stored)
        state[name] = made[id(stored.array)]
    return state


def _from_stored(stored: Stored) -> Any:
    torch = _torch()
    with warnings.catch_warnings():  # read-only memory-mapped arrays: torch only reads them
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(stored.array)
    return tensor.view(torch.bfloat16) if stored.dtype == "bfloat16" else tensor


def _is_dtensor(value: Any) -> bool:
    """A ``DTensor`` (none exists before something imported ``torch.distributed.tensor``)."""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(value, module.DTensor)


def _local(tensor: Any) -> Any:
    """This rank's part of a ``DTensor`` (no collective); any other tensor as it is."""
    return tensor.to_local() if _is_dtensor(tensor) else tensor


def _placement_name(placement: Any, ndim: int) -> str:
    """``shard(d)`` (``d`` counted from 0), ``partial(sum)``, ``replicate``; ``other(Name)`` for the rest.

    Exact class names: a subclass (FSDP2's ``_StridedShard`` under tensor
    parallelism) splits differently, so it is not read as a plain shard.
    """
    kind = type(placement).__name__
    if kind == "Shard":
        return f"shard({placement.dim % ndim})"
    if kind == "Partial":
        return f"partial({placement.reduce_op})"
    if kind == "Replicate":
        return "replicate"
    return f"other({kind})"


def _device(model: Any) -> Any:
    torch = _torch()
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@cache
def _substitute_function() -> Any:
    torch = _torch()

    class Substitute(torch.autograd.Function):  # type: ignore[name-defined,misc]
        """Forward: the replacement's values; backward: the gradient flows on to the original."""

        @staticmethod
        def forward(ctx: Any, original: Any, replacement: Any) -> Any:
            # a new tensor, not the input as-is (a view to autograd), so in-place layers may modify it
            return replacement.clone()

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return grad, None

    return Substitute
