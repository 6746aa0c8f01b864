"""Checkpoint conversion: a saved state dict of the base model, made into one the raw model loads.

The models give structure only, so they may be built without memory
(torch's meta device, paddle's ``LazyGuard``); the values come from the
checkpoint, one tensor at a time:

1. the layer map (proposed, or a file, its inits expanded) says which base
   tensors, through which transforms, make each raw tensor: the pairs the
   weight copy uses, so a conversion registered for copying converts
   checkpoints too, in either direction;
2. the checkpoint is opened lazily: safetensors and torch's zip format are
   memory-mapped; a ``.pdparams`` pickle is read whole, by an unpickler that
   rebuilds numpy arrays and refuses everything else;
3. each raw tensor is assembled from its parts: into the raw model's own
   memory where it has some, else held in memory while the output fits the
   memory budget, else written into a scratch safetensors file beside the
   output and dropped (memory holds one tensor and its parts at a time);
4. the output is written once, into a temporary file, read back once and
   compared bit for bit with what was written, the raw model given the
   tensors it does not hold yet, and only then renamed over the output.

Example::

    report = convert_checkpoint(paddle_model, torch_model, "resnet18.pdparams", "resnet18.pt")
    print(report.tensors, report.verified)
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from padiff_graph.assign.inits import expand_inits
from padiff_graph.assign.probe import probe_with_inputs
from padiff_graph.assign.verify import OutputCheck, compare_outputs
from padiff_graph.assign.weights import raise_for_blocking
from padiff_graph.checks import preflight_trees
from padiff_graph.core import arrays
from padiff_graph.core.atomic import default_file_mode
from padiff_graph.core.records import TensorInfo
from padiff_graph.core.tensorfile import (
    CheckpointReader,
    SafetensorsReader,
    Stored,
    constant,
    differences,
    stored_dtype,
    write_safetensors,
)
from padiff_graph.core.transforms import Transform
from padiff_graph.core.tree import ModelTree, full_tensor_names
from padiff_graph.errors import AssignError, InputError
from padiff_graph.frameworks import adapter_for, adapter_named
from padiff_graph.frameworks.base import FrameworkAdapter
from padiff_graph.frameworks.export import export_pair
from padiff_graph.knowledge.conversions import ConversionRegistry
from padiff_graph.knowledge.families import IGNORED_TENSOR_NAMES
from padiff_graph.knowledge.registry import DEFAULT_REGISTRY
from padiff_graph.layermap import LayerMap
from padiff_graph.match import match_trees

#: checkpoint suffix -> the framework whose format it is (``None``: framework-neutral safetensors)
FORMATS: dict[str, str | None] = {
    ".safetensors": None,
    ".pt": "torch",
    ".pth": "torch",
    ".bin": "torch",
    ".pdparams": "paddle",
}


@dataclass
class ConversionReport:
    """What :func:`convert_checkpoint` wrote and how it was checked.

    The written file is always read back and compared bit for bit with what was
    written; ``verified`` says what the raw model made of it.
    """

    output: Path
    tensors: int = 0
    bytes: int = 0
    verified: str = ""
    unused: list[str] = field(default_factory=list)
    filled: list[str] = field(default_factory=list)
    outputs: OutputCheck | None = None


@dataclass(frozen=True)
class Part:
    """Where a region of a raw tensor comes from: a checkpoint key through a transform, or a constant."""

    key: str | None
    transform: Transform
    value: float | None = None


@dataclass
class Planned:
    """One raw tensor to produce: its state-dict keys (aliases share it), layout and parts."""

    name: str
    keys: list[str]
    shape: tuple[int, ...]
    dtype: str
    parts: list[Part]


def open_checkpoint(path: Path) -> CheckpointReader:
    """A reader for ``path`` by its suffix (see :data:`FORMATS`).

    Raises:
        InputError: unknown suffix, unreadable file, or a pickle that would run code.
    """
    if not path.is_file():
        raise InputError(f"checkpoint {str(path)!r} does not exist")
    if path.suffix not in FORMATS:
        raise InputError(f"checkpoint {path.name!r}: unknown format; expected one of {', '.join(FORMATS)}")
    framework = FORMATS[path.suffix]
    if framework is None:
        return SafetensorsReader(path)
    return adapter_named(framework).open_checkpoint(path)


def convert_checkpoint(
    base: Any,
    raw: Any,
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    layer_map: LayerMap | None = None,
    registry: ConversionRegistry = DEFAULT_REGISTRY,
    inputs: Any = None,
    *,
    accept_guesses: bool = False,
    memory_budget_mib: float | None = None,
) -> ConversionReport:
    """Convert ``checkpoint`` (a state dict of ``base``) into ``output``, a state dict ``raw`` loads.

    The output format follows ``output``'s suffix: ``.safetensors``, or the
    raw framework's own (``.pt``/``.pth``/``.bin`` for torch, ``.pdparams``
    for paddle).

    Args:
        inputs: optional inputs; a traced run of each model lets call order
            pair same-shaped layers (see :func:`padiff_graph.assign_weights`).
        accept_guesses: convert through ``ambiguous-match`` / ``ambiguous-transform``
            findings instead of stopping.
        memory_budget_mib: the converted tensors are held in memory when the output
            fits this many MiB (default: half the memory available now, see
            :func:`default_memory_budget_mib`), else streamed through a scratch file.

    Returns:
        What was written; with ``inputs``, ``report.outputs`` says whether ``base``
        and ``raw``, both loaded with the checkpoint's weights, agree on them.

    Raises:
        InputError: unreadable or unsafe checkpoint, unknown format.
        AssignError: the map cannot convert a pair or only guesses it, the checkpoint lacks a
            base tensor, or the result does not load into ``raw``.
        LayerMapError: ``layer_map`` does not fit the models.
    """
    source, target = Path(checkpoint), Path(output)
    base_adapter, raw_adapter = adapter_for(base), adapter_for(raw)
    if target.suffix not in FORMATS or FORMATS[target.suffix] not in (None, raw_adapter.name):
        wanted = ", ".join(s for s, f in FORMATS.items() if f in (None, raw_adapter.name))
        raise InputError(f"output {target.name!r}: a {raw_adapter.name} model loads {wanted}")
    base_tree, raw_tree = export_pair(base, raw, inputs)
    if layer_map is None:
        layer_map = match_trees(base_tree, raw_tree, registry=registry)
    layer_map = expand_inits(base_tree, raw_tree, layer_map, registry)
    layer_map = probe_with_inputs(base, raw, layer_map, inputs, (base_tree, raw_tree))
    raise_for_blocking(preflight_trees(base_tree, raw_tree, layer_map), accept_guesses)
    reader = open_checkpoint(source)
    try:
        sources = KeyIndex(base_adapter.state_dict_names(base), reader.names())
        _check_layout(reader, sources, base_tree)
        plan = _plan(layer_map, base_tree, raw_tree, sources, raw, reader)
        report = ConversionReport(target)
        used = {part.key for item in plan for part in item.parts}
        used_names = {sources.name_of(key) for key in used if key is not None}
        report.unused = [
            key
            for key in reader.names()
            if sources.name_of(key) not in used_names and key.rpartition(".")[2] not in IGNORED_TENSOR_NAMES
        ]
        report.filled = [item.name for item in plan if not item.parts]
        _check_constants(layer_map, sources, reader)
        budget = default_memory_budget_mib() if memory_budget_mib is None else memory_budget_mib
        _write(plan, reader, raw, raw_adapter, target, report, budget * 2**20)
    finally:
        reader.close()
    if (
        inputs is not None
        and report.verified == "loaded into the raw model"
        and not base_adapter.load_checkpoint(base, source)
    ):
        report.outputs = compare_outputs(base, raw, inputs)  # both models now hold the checkpoint's weights
    return report


def default_memory_budget_mib() -> float:
    """Half the memory available now (Linux ``MemAvailable``; else the free pages): room for the converted
    tensors beside the frameworks, the models and whatever else runs."""
    try:
        with open("/proc/meminfo") as meminfo:
            kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable:"))
        return kib / 1024 / 2
    except (OSError, StopIteration, ValueError, IndexError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20 / 2


class KeyIndex:
    """Which checkpoint key holds which base tensor: through state-dict aliases, and past a wrapper's prefix.

    A checkpoint saved from ``DataParallel`` prefixes every key (``module.``);
    when no key names a base tensor as it is, their common first part is dropped.
    """

    def __init__(self, base_keys: dict[str, str], keys: list[str]) -> None:
        self.base_keys = base_keys
        self.prefix = ""
        if keys and not any(key in base_keys for key in keys):
            first = keys[0].partition(".")[0] + "."
            if all(key.startswith(first) for key in keys):
                self.prefix = first
        self.keys = keys
        self.by_name: dict[str, str] = {}
        for key in keys:
            name = self.name_of(key)
            if name is not None:
                self.by_name.setdefault(name, key)

    def name_of(self, key: str) -> str | None:
        """The base tensor ``key`` holds, if any."""
        return self.base_keys.get(key.removeprefix(self.prefix))


def _check_layout(reader: CheckpointReader, sources: KeyIndex, base_tree: ModelTree) -> None:
    """Each checkpoint tensor that stands for a base tensor must have its shape (a damaged file may not)."""
    infos = full_tensor_names(base_tree)
    for name, key in sources.by_name.items():
        if name not in infos:
            continue
        shape, dtype = reader.info(key)
        expected = infos[name]
        bits = expected.dtype == "bfloat16" and dtype == "uint16"  # paddle saves bfloat16 as its bits
        if shape != expected.shape or (("float" in dtype) != ("float" in expected.dtype) and not bits):
            raise InputError(
                f"{reader.path}: tensor {key!r} is {dtype} {list(shape)}, but base {name!r} is {expected.dtype} "
                f"{list(expected.shape)}; is the checkpoint intact, and one of the base model?"
            )


def _plan(
    layer_map: LayerMap,
    base_tree: ModelTree,
    raw_tree: ModelTree,
    sources: KeyIndex,
    raw: Any,
    reader: CheckpointReader,
) -> list[Planned]:
    """Every raw state-dict tensor with the parts it is made of."""
    for pair in layer_map.pairs:
        if pair.init:
            raise AssignError(
                f"base {pair.base!r} / raw {pair.raw!r} are copied by the opaque init {pair.init}; checkpoint "
                "conversion needs tensor pairs: write it as a conversion (padiff_graph.register_conversion)"
            )
    base_infos, raw_infos = full_tensor_names(base_tree), full_tensor_names(raw_tree)
    parts: dict[str, list[Part]] = defaultdict(list)
    for tensor in layer_map.tensor_pairs():
        if tensor.raw_constant is not None:
            continue
        if tensor.base_constant is not None:
            parts[tensor.raw].append(Part(None, tensor.transform, tensor.base_constant))
            continue
        if tensor.base not in sources.by_name:
            raise AssignError(
                f"checkpoint {reader.path} has no tensor for base {tensor.base!r} (needed for raw {tensor.raw!r}); "
                f"its keys look like {', '.join(repr(k) for k in reader.names()[:3])}"
            )
        parts[tensor.raw].append(Part(sources.by_name[tensor.base], tensor.transform))
    aliases: dict[str, list[str]] = defaultdict(list)
    for key, name in adapter_for(raw).state_dict_names(raw).items():
        aliases[name].append(key)
    plan, unsourced = [], []
    for name, keys in aliases.items():
        info = raw_infos[name]
        if not parts[name] and name.rpartition(".")[2] not in IGNORED_TENSOR_NAMES:
            unsourced.append(name)
            continue
        dtype = _dtype(parts[name], reader, base_infos, sources, info)
        plan.append(Planned(name, keys, info.shape, dtype, parts[name]))
    if unsourced:
        raise AssignError(
            f"no base tensor maps to raw {', '.join(map(repr, unsourced[:5]))}"
            + (f" (and {len(unsourced) - 5} more)" if len(unsourced) > 5 else "")
            + "; pair their layers in the map (padiff-graph check lists what is unmatched)"
        )
    return plan


def _dtype(
    parts: list[Part],
    reader: CheckpointReader,
    base_infos: dict[str, TensorInfo],
    sources: KeyIndex,
    raw_info: TensorInfo,
) -> str:
    """The output dtype: the checkpoint's (its precision is kept); the raw model's for constants."""
    dtypes = set()
    for part in parts:
        if part.key is not None:
            dtype = reader.info(part.key)[1]
            name = sources.name_of(part.key)
            if dtype == "uint16" and name is not None and base_infos[name].dtype == "bfloat16":
                dtype = "bfloat16"  # paddle saves bfloat16 as its bits
            dtypes.add(dtype)
    if len(dtypes) > 1:
        raise AssignError(f"raw {raw_info.name!r} would be assembled from parts of dtypes {sorted(dtypes)}")
    return dtypes.pop() if dtypes else raw_info.dtype


def _check_constants(layer_map: LayerMap, sources: KeyIndex, reader: CheckpointReader) -> None:
    """Base tensors the raw model has no place for must hold the neutral value."""
    for tensor in layer_map.tensor_pairs():
        if tensor.raw_constant is None or tensor.base not in sources.by_name:
            continue
        value = reader.read(sources.by_name[tensor.base]).as_float32()
        region = value[tensor.transform.base_index] if tensor.transform.base_index is not None else value
        if not np.all(region == tensor.raw_constant):
            raise AssignError(
                f"base {tensor.base!r} holds values other than {tensor.raw_constant:g}, and the raw model has "
                "no tensor to hold them; construct the raw layer with that tensor (bias=True, affine=True, ...)"
            )


def _produce(item: Planned, reader: CheckpointReader, out: np.ndarray | None = None) -> Stored:
    """One raw tensor, assembled from its parts (into ``out`` when given: the raw model's own memory)."""
    storage = stored_dtype(item.dtype)
    whole = len(item.parts) == 1 and item.parts[0].transform.raw_index is None
    value: np.ndarray | None = out
    if not whole:  # regions no part covers (all of a tensor the base has no counterpart for) are zero
        if value is None:
            value = np.zeros(item.shape, dtype=storage)
        else:
            value.fill(0)
    for part in item.parts:
        region = part.transform.region_shape(item.shape)
        if part.key is None:
            piece = constant(part.value or 0.0, region, item.dtype).array
        else:
            piece = part.transform.view(reader.read(part.key).array)
        if piece.shape != region:
            raise AssignError(
                f"raw {item.name!r}: {part.key} gives shape {list(piece.shape)} for a region of {list(region)}"
            )
        if value is None and piece.flags.c_contiguous and piece.dtype == storage:
            value = piece  # written straight from the checkpoint's memory map
        else:
            value = np.empty(item.shape, dtype=storage) if value is None else value
            raw_index = part.transform.raw_index
            arrays.copy_into(value[raw_index] if raw_index is not None else value, piece)
    assert value is not None
    return Stored(value, item.dtype)


def _write(
    plan: list[Planned],
    reader: CheckpointReader,
    raw: Any,
    raw_adapter: FrameworkAdapter,
    target: Path,
    report: ConversionReport,
    budget: float,
) -> None:
    """Produce the raw tensors, write the output once, check it bit for bit, load it into ``raw``, rename.

    When the output fits ``budget`` bytes, the tensors are produced in memory:
    in the raw model's own where it has memory of their dtype; else they are
    streamed through a scratch safetensors file and read back memory-mapped.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    final = _temporary(target, target.suffix)
    scratch = _temporary(target, ".scratch.safetensors") if _output_bytes(plan) > budget else None
    homes: dict[str, np.ndarray] = {}
    produced: SafetensorsReader | None = None
    try:
        if scratch is None:
            homes = _homes(plan, raw, raw_adapter)
            tensors = {item.name: _produce(item, reader, homes.get(item.name)) for item in plan}
        else:
            produced = _spill(plan, reader, scratch)
            tensors = {item.name: produced.read(item.name) for item in plan}
        everything = {key: tensors[item.name] for item in plan for key in item.keys}
        if target.suffix == ".safetensors":
            with final.open("wb") as stream:
                layout = [(key, value.shape, value.dtype) for key, value in everything.items()]
                write_safetensors(stream, layout, iter(everything.items()))
        else:
            raw_adapter.save_checkpoint(final, everything)
        _check_written(final, everything, raw_adapter)
        report.tensors = len(everything)
        report.bytes = final.stat().st_size
        unloaded = {key: tensors[item.name] for item in plan if item.name not in homes for key in item.keys}
        report.verified = _load_into(raw, raw_adapter, final, unloaded)
        os.replace(final, target)
    finally:
        if produced is not None:
            produced.close()
        if scratch is not None:
            scratch.unlink(missing_ok=True)
        final.unlink(missing_ok=True)


def _homes(plan: list[Planned], raw: Any, raw_adapter: FrameworkAdapter) -> dict[str, np.ndarray]:
    """The raw model's own memory for each tensor that can be produced in place (same dtype, host memory)."""
    if not raw_adapter.is_materialized(raw):
        return {}
    tensors = raw_adapter.named_tensors(raw)
    homes = {}
    for item in plan:
        memory = raw_adapter.host_memory(tensors[item.name]) if item.name in tensors else None
        fits = memory is not None and memory.shape == item.shape and memory.flags.c_contiguous
        if fits and memory is not None and memory.dtype == stored_dtype(item.dtype):
            homes[item.name] = memory
    return homes


def _output_bytes(plan: list[Planned]) -> int:
    return sum(math.prod(item.shape) * stored_dtype(item.dtype).itemsize for item in plan)


def _spill(plan: list[Planned], reader: CheckpointReader, scratch: Path) -> SafetensorsReader:
    """Stream the plan into ``scratch`` one tensor at a time; the file, memory-mapped."""
    with scratch.open("wb") as stream:
        tensors: Iterator[tuple[str, Stored]] = ((item.name, _produce(item, reader)) for item in plan)
        write_safetensors(stream, [(item.name, item.shape, item.dtype) for item in plan], tensors)
    return SafetensorsReader(scratch)


def _check_written(path: Path, expected: dict[str, Stored], raw_adapter: FrameworkAdapter) -> None:
    """Read the written file once, without holding it whole, and compare it bit for bit with what was written.

    Raises:
        AssignError: a key missing or unexpected, or a tensor whose shape, dtype or bits differ.
    """
    if path.suffix == ".safetensors":
        written = SafetensorsReader(path)
        try:
            problems = differences(((name, written.read(name)) for name in written.names()), expected)
        finally:
            written.close()
    else:
        problems = raw_adapter.check_checkpoint(path, expected)
    if problems:
        raise AssignError(f"the converted checkpoint does not hold what was converted: {'; '.join(problems[:5])}")


def _load_into(raw: Any, raw_adapter: FrameworkAdapter, path: Path, tensors: dict[str, Stored]) -> str:
    """Give ``raw`` the converted ``tensors`` not produced in its memory (checked equal to the file's):
    copied in, or, built without memory, the file's own where its framework can take them; how it was verified."""
    if raw_adapter.is_materialized(raw):
        problems: list[str] | None = raw_adapter.load_tensors(raw, tensors) if tensors else []
    else:
        problems = raw_adapter.load_checkpoint(raw, path)
    if problems:
        raise AssignError(f"the converted checkpoint does not fit the raw model: {'; '.join(problems[:5])}")
    if problems is None:
        return "names and shapes checked, every value bit for bit (the raw model was built without memory)"
    return "loaded into the raw model"


def _temporary(target: Path, suffix: str) -> Path:
    """A new empty file beside ``target``, with the permissions a plain ``open`` would give."""
    handle, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=suffix, dir=target.parent)
    os.close(handle)
    os.chmod(name, default_file_mode())
    return Path(name)
