"""PaddlePaddle adapter: ``paddle.nn.Layer`` to neutral records, hooks and tensors."""

from __future__ import annotations

import ctypes
import os
import pickle
import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from padiff_graph.core.arrays import copy_into
from padiff_graph.core.records import LayerInfo, Layout
from padiff_graph.core.tensorfile import SafetensorsReader, Stored, dtype_of
from padiff_graph.errors import InputError
from padiff_graph.frameworks import quiet_framework_imports
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

#: The only callables a ``.pdparams`` pickle may name: rebuilding numpy arrays.
_PDPARAMS_GLOBALS = frozenset(
    {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),  # protocol 5
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
    }
)


@cache
def _paddle() -> Any:
    with quiet_framework_imports():
        import paddle
    return paddle


@cache
def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime paddle's wheel ships and loads (``paddle/libs/libiomp5``), if there is one."""
    for path in sorted((Path(_paddle().__file__).parent / "libs").glob("libiomp5*")):
        try:
            return ctypes.CDLL(str(path))
        except OSError:
            continue
    return None


@cache
def _base_attributes() -> frozenset[str]:
    return frozenset(vars(_paddle().nn.Layer()))


def _is_builtin(layer: object) -> bool:
    return type(layer).__module__.startswith("paddle.nn.")


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("paddle.")


_RULES = ExportRules(
    framework="paddle",
    child_names=lambda layer: layer._sub_layers,
    is_builtin=_is_builtin,
    trainable=lambda parameter: not parameter.stop_gradient,
    non_persistent=lambda layer: layer._non_persistable_buffer_names_set,
    dtype_name=_dtype_name,
    base_attributes=_base_attributes,
)


class PaddleAdapter:
    name = "paddle"

    def owns(self, model: object) -> bool:
        return isinstance(model, _paddle().nn.Layer)

    def named_layers(self, model: Any) -> dict[str, Any]:
        return dict(model.named_sublayers(include_self=True))

    def export(self, model: Any) -> list[LayerInfo]:
        return export_layers(self.named_layers(model), model.named_parameters(), model.named_buffers(), _RULES)

    def named_tensors(self, model: Any) -> dict[str, Any]:
        tensors = dict(model.named_parameters())
        tensors.update(model.named_buffers())
        return tensors

    def to_numpy(self, tensor: Any, copy: bool = True) -> np.ndarray:
        paddle = _paddle()
        value = tensor.detach()
        if value.is_dist():
            value = value._local_value()  # this rank's part, no collective
        if not value._is_initialized():
            raise ValueError("tensor was created under paddle.LazyGuard and holds no values")
        if value.dtype == paddle.bfloat16:
            value, copy = value.astype("float32"), False
        if not value.place.is_cpu_place():
            value, copy = value.cpu(), False
        try:
            array = np.from_dlpack(value)  # shares the tensor's memory (numpy copies it 10x faster than .numpy())
        except (RuntimeError, TypeError, BufferError):
            return value.numpy()  # always a fresh host copy
        return array.copy() if copy else array

    def write(self, tensor: Any, value: np.ndarray) -> None:
        paddle = _paddle()
        memory = self.host_memory(tensor)
        if memory is not None and memory.shape == value.shape:
            copy_into(memory, value)  # in place: no intermediate tensor, no new allocation
            return
        source = paddle.to_tensor(np.ascontiguousarray(value)).astype(tensor.dtype)
        with paddle.no_grad():
            tensor.set_value(source)

    def host_memory(self, tensor: Any) -> np.ndarray | None:
        value = tensor.detach()
        if not value._is_initialized() or not value.place.is_cpu_place() or value.dtype == _paddle().bfloat16:
            return None
        try:
            memory = np.from_dlpack(value)
        except (RuntimeError, TypeError, BufferError):
            return None
        return memory if memory.flags.writeable else None

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
        paddle = _paddle()
        place = next((p.place for p in model.parameters()), None)
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
        converted = {}
        for name, value in arrays.items():
            if isinstance(value, paddle.Tensor):
                moved = place is not None and str(value.place) != str(place)
                tensor = value._copy_to(place, False) if moved else value
            else:
                tensor = paddle.to_tensor(np.array(value), place=place)
            if tensor.is_floating_point() and dtype is not None and tensor.dtype != dtype:
                tensor = tensor.astype(dtype)
            converted[name] = tensor
        return converted

    def runs_beside(self, model: Any) -> bool:
        return False  # measured: on a worker thread beside torch's step, its CPU step waits instead of overlapping

    def cpu_threads(self) -> int:
        # its CPU kernels (MKL, oneDNN) run on paddle's OpenMP runtime, whose count paddle.base.core.set_num_threads
        # and OMP_NUM_THREADS set; paddle has no getter. Unknown: as many as the machine has
        runtime = _openmp_runtime()
        return int(runtime.omp_get_max_threads()) if runtime is not None else os.cpu_count() or 1

    def is_tensor(self, value: object) -> bool:
        return isinstance(value, _paddle().Tensor)

    def add_forward_hook(self, layer: Any, hook: Callable[[Any], None]) -> RemovableHandle:
        def post_hook(_layer: Any, _inputs: Any, output: Any) -> None:
            hook(output)

        return layer.register_forward_post_hook(post_hook)

    def add_pre_hook(self, layer: Any, hook: Callable[[], None]) -> RemovableHandle:
        def pre_hook(_layer: Any, _inputs: Any) -> None:
            hook()

        return layer.register_forward_pre_hook(pre_hook)

    def add_input_hook(self, layer: Any, hook: InputHook) -> RemovableHandle:
        def pre_hook(_layer: Any, args: Any, kwargs: Any) -> Any:
            return hook(tuple(args), kwargs)

        return layer.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def watch_grad(self, tensor: Any, hook: Callable[[Any], np.ndarray | None]) -> None:
        paddle = _paddle()

        def call(grad: Any) -> Any:
            replacement = hook(grad)
            if replacement is None:
                return None
            return paddle.to_tensor(np.ascontiguousarray(replacement), place=grad.place).astype(grad.dtype)

        tensor.register_hook(call)

    def watch_accumulated_grad(self, tensor: Any, hook: Callable[[Any], None]) -> RemovableHandle:
        # a leaf's hook runs once per backward, on the sum of its uses, and that tensor becomes its .grad
        handle: RemovableHandle = tensor.register_hook(lambda grad: hook(grad))
        return handle

    def version(self, tensor: Any) -> int:
        return int(tensor.inplace_version)

    def substitute(self, tensor: Any, value: np.ndarray) -> Any:
        paddle = _paddle()
        replacement = paddle.to_tensor(np.ascontiguousarray(value), place=tensor.place).astype(tensor.dtype)
        if tensor.stop_gradient:
            return replacement
        return _substitute_layer().apply(tensor, replacement)

    def step_optimizer(self, optimizer: Any) -> None:
        if isinstance(optimizer, _paddle().optimizer.Optimizer):
            optimizer.step()
            optimizer.clear_grad()
        else:
            optimizer()

    def autocast(self, model: Any, dtype: str | None) -> AbstractContextManager[Any]:
        if dtype is None:
            return nullcontext()
        return _paddle().amp.auto_cast(enable=True, level="O1", dtype=dtype)

    def full_precision(self, layer: Any) -> AbstractContextManager[Any]:
        paddle = _paddle()
        return widened(
            [*layer.parameters(), *layer.buffers()],
            (paddle.bfloat16, paddle.float16),
            lambda data: data.astype("float32"),
        )

    def rank(self) -> int:
        distributed = _paddle().distributed
        return int(distributed.get_rank()) if distributed.is_initialized() else 0

    def world_size(self) -> int:
        distributed = _paddle().distributed
        return int(distributed.get_world_size()) if distributed.is_initialized() else 1

    def layout(self, tensor: Any, of_grad: bool = False) -> Layout | None:
        value = tensor.grad if of_grad else tensor
        if value is None:
            return None
        if not value.is_dist():
            return _fleet_layout(tensor, value)
        mesh = value.process_mesh
        rank = _paddle().distributed.get_rank()
        if rank not in mesh.process_ids:  # this rank is outside the tensor's mesh: it holds nothing of it
            return None
        ids = np.array(mesh.process_ids).reshape(mesh.shape)
        coordinate = tuple(int(axis[0]) for axis in np.nonzero(ids == rank))
        placements = tuple(_placement_name(placement, len(value.shape)) for placement in value.placements)
        return Layout(placements, tuple(mesh.shape), coordinate, tuple(value.shape))

    def record_ops(self, names: Mapping[str, str], hook: OpHook) -> AbstractContextManager[Any]:
        from padiff_graph.frameworks.paddle_ops import recording

        return recording(names, hook, {})

    def op_overrides(self, overrides: Mapping[str, Callable[..., Any]]) -> AbstractContextManager[Any]:
        from padiff_graph.frameworks.paddle_ops import recording

        return recording({}, None, overrides)

    def requires_grad(self, tensor: Any) -> bool:
        return not tensor.stop_gradient

    def mean_loss(self, output: Any) -> Any:
        floats = [t for t in iter_tensors(output, self.is_tensor) if t.is_floating_point() and not t.stop_gradient]
        if not floats:
            raise ValueError("the model's output holds no floating tensor that requires grad")
        return sum(t.astype("float32").mean() for t in floats)

    def backward(self, loss: Any) -> None:
        loss.backward()

    def clear_grads(self, model: Any) -> None:
        # to None, as torch's: zeroed, every gradient would be written over with zeros, then read and added to by the
        # backward into a new tensor anyway (the 2-layer BERT's step: 91 -> 86 ms)
        model.clear_gradients(set_to_zero=False)

    def no_grad(self) -> AbstractContextManager[Any]:
        return _paddle().no_grad()

    def forward_signature_target(self, model: Any) -> Callable[..., Any]:
        return model.forward

    def shared_layers(self, model: Any) -> dict[str, str]:
        return aliases(model, lambda layer: layer._sub_layers.items())

    def state_dict_names(self, model: Any) -> dict[str, str]:
        canonical = {id(tensor): name for name, tensor in self.named_tensors(model).items()}
        return {key: canonical.get(id(tensor), key) for key, tensor in model.state_dict().items()}

    def is_materialized(self, model: Any) -> bool:
        return all(tensor._is_initialized() for tensor in model.state_dict().values())

    def open_checkpoint(self, path: Path) -> PdparamsCheckpoint:
        return PdparamsCheckpoint(path)

    def save_checkpoint(self, path: Path, tensors: Mapping[str, Stored]) -> None:
        """paddle's own format: a pickle of numpy arrays (bfloat16 as its uint16 bits, as paddle saves it).

        Protocol 5 writes each array's bytes straight from its memory (protocol 4,
        ``paddle.save``'s, copies each into a ``bytes`` object first); ``paddle.load``
        reads both (it unpickles with Python's ``pickle``, 3.8 and later read protocol 5).
        """
        with path.open("wb") as stream:
            _pickle_arrays(stream, tensors)

    def check_checkpoint(self, path: Path, expected: Mapping[str, Stored]) -> list[str]:
        """The file must hold exactly the bytes pickling ``expected`` gives: pickled again, into a comparison
        with the file read once through one reused buffer (a pickle cannot be memory-mapped; unpickling it
        would allocate every array again)."""
        with path.open("rb") as stream:
            comparison = _SameBytes(stream)
            _pickle_arrays(comparison, expected)
            if comparison.differs_at is None and stream.read(1):
                comparison.differs_at = comparison.position
        if comparison.differs_at is None:
            return []
        return [f"its bytes differ from what was written, from byte {comparison.differs_at}"]

    def load_checkpoint(self, model: Any, path: Path) -> list[str] | None:
        if not self.is_materialized(model):
            return None  # a LazyGuard model takes no values until initialized
        if path.suffix == ".safetensors":
            reader = SafetensorsReader(path)
            state = {name: np.asarray(reader.read(name).array) for name in reader.names()}
        else:
            state = _paddle().load(str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # paddle warns per alias key it skips
            missing, unexpected = model.set_state_dict(state)
        names = self.state_dict_names(model)
        loaded = {names.get(key, key) for key in state}
        return [f"missing {key}" for key in missing if names.get(key, key) not in loaded] + [
            f"unexpected {key}" for key in unexpected
        ]

    def load_tensors(self, model: Any, tensors: Mapping[str, Stored]) -> list[str]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # paddle warns per alias key it skips
            _, unexpected = model.set_state_dict({name: np.asarray(stored.array) for name, stored in tensors.items()})
        return [f"unexpected {key}" for key in unexpected]


def _fleet_layout(parameter: Any, value: Any) -> Layout | None:
    """fleet tensor parallelism (``ColumnParallelLinear``...): a parameter marked ``is_distributed`` holds its
    model-parallel rank's slice along ``split_axis`` (``value`` is it or its gradient); anything else, ``None``."""
    axis = getattr(parameter, "split_axis", None)
    if not getattr(parameter, "is_distributed", False) or axis is None:
        return None
    group = _paddle().distributed.fleet.get_hybrid_communicate_group()
    degree, rank = group.get_model_parallel_world_size(), group.get_model_parallel_rank()
    shape = [int(size) for size in value.shape]
    shape[axis] *= degree  # fleet splits evenly
    return Layout((f"shard({axis})",), (int(degree),), (int(rank),), tuple(shape))


def _placement_name(placement: Any, ndim: int) -> str:
    """``shard(d)`` (``d`` counted from 0), ``partial(sum)``, ``replicate``; ``other(Name)`` for the rest."""
    kind = type(placement).__name__
    if kind == "Shard":
        return f"shard({placement.get_dim() % ndim})"
    if kind == "Partial":
        reduce = str(placement.reduce_type()).rpartition(".")[2].removeprefix("kRed").lower()
        return f"partial({reduce})"
    if kind == "Replicate":
        return "replicate"
    return f"other({kind})"


class _Refused(pickle.UnpicklingError):
    """A pickle names a callable that is not a numpy array's (told apart from a damaged pickle)."""


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and containers; any other callable is refused before it is looked up."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PDPARAMS_GLOBALS:
            raise _Refused(f"{module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused("a persistent reference")


def _pickle_arrays(stream: Any, tensors: Mapping[str, Stored]) -> None:
    pickler = pickle.Pickler(stream, protocol=5)
    pickler.fast = True  # no memo: each array's bytes are freed once written
    pickler.dump({name: np.asarray(stored.array) for name, stored in tensors.items()})


class _SameBytes:
    """A stream to pickle into that compares what it is given with a file, read through one reused buffer."""

    CHUNK = 1 << 22

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.position = 0
        self.differs_at: int | None = None
        self.buffer = bytearray(self.CHUNK)

    def write(self, data: Any) -> int:
        given = np.frombuffer(data, dtype=np.uint8)
        for start in range(0, given.size, self.CHUNK):
            if self.differs_at is not None:
                break
            wanted = given[start : start + self.CHUNK]
            read = self.stream.readinto(memoryview(self.buffer)[: wanted.size])
            if read != wanted.size or not np.array_equal(np.frombuffer(self.buffer, np.uint8, read), wanted):
                self.differs_at = self.position + start
        self.position += given.size
        return given.size


class PdparamsCheckpoint:
    """A paddle ``.pdparams`` file: a pickle of numpy arrays, loaded without running any other code.

    The pickle is read whole (the format allows no lazy access), so it takes
    the checkpoint's size in memory; conversion then streams the output.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with path.open("rb") as stream:
                loaded = _ArraysOnly(stream).load()
        except _Refused as error:
            raise InputError(
                f"refusing to load {path}: it would call {error}, and a .pdparams file holds numpy arrays only"
            ) from None
        except Exception as error:  # a damaged pickle makes the unpickler and numpy raise many kinds of errors
            raise InputError(
                f"cannot read {path} as a paddle checkpoint: {type(error).__name__}: {error}; get the file again"
            ) from None
        if not isinstance(loaded, Mapping) or not all(isinstance(name, str) for name in loaded):
            raise InputError(f"{path} holds a {type(loaded).__name__}, not a state dict of named arrays")
        # paddle adds a name table ("StructuredToParameterName@@"); only the arrays matter
        self.arrays = {name: value for name, value in loaded.items() if isinstance(value, np.ndarray)}
        for name, value in self.arrays.items():
            try:
                dtype_of(value)  # refuses object arrays and other non-tensor dtypes
            except InputError as error:
                raise InputError(f"{path}: tensor {name!r}: {error}") from None

    def names(self) -> list[str]:
        return list(self.arrays)

    def info(self, name: str) -> tuple[tuple[int, ...], str]:
        return tuple(self.arrays[name].shape), dtype_of(self.arrays[name])

    def read(self, name: str) -> Stored:
        value = self.arrays[name]
        return Stored(value, dtype_of(value))

    def close(self) -> None:
        self.arrays = {}


@cache
def _substitute_layer() -> Any:
    paddle = _paddle()

    class Substitute(paddle.autograd.PyLayer):  # type: ignore[name-defined,misc]
        """Forward: the replacement's values; backward: the gradient flows on to the original."""

        @staticmethod
        def forward(ctx: Any, original: Any, replacement: Any) -> Any:
            return replacement.clone()

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            return grad

    return Substitute
