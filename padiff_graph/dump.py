"""Offline mode: record one model's run to a directory, compare two such directories later.

Each model can run in its own process, or on its own machine, and only one
model ever needs to fit in memory. The format (``docs/dump.md``)::

    DIR/
      rank_0.json              written last by rank 0: the dump of that rank is complete
      step_0/
        rank_0/
          tensors.npz          one array per record (no pickle)
          manifest.json        the records in the order the model produced them
      step_1/...

Records are keyed by the dotted layer path (or full tensor name) exactly as
``named_modules()`` / ``named_sublayers()`` / ``named_parameters()`` give
it, so two dumps compare through a layer map without the models loaded.
A step folder is written under a temporary name and renamed when complete;
the rank file is removed when a dump starts and written when it ends, so an
interrupted dump is reported as incomplete, never read as a finished one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from padiff_graph.compare import DEFAULT_TOLERANCES, Mode, Verdict, compare_arrays, default_tolerance
from padiff_graph.diff import Comparison, DiffReport, Tolerance, all_divergences, first_divergence
from padiff_graph.engine import Side, run_step
from padiff_graph.errors import InputError, PadiffGraphError
from padiff_graph.frameworks import adapter_for
from padiff_graph.frameworks.base import FrameworkAdapter
from padiff_graph.inputs import prepare
from padiff_graph.knowledge.families import is_random
from padiff_graph.layermap import LayerMap, write_atomically
from padiff_graph.match import match_trees
from padiff_graph.options import PHASES
from padiff_graph.preflight import preflight_trees
from padiff_graph.randomness import RandomWatch, random_layers_disabled
from padiff_graph.recording import HostCache, Recorder, RecordKey
from padiff_graph.records import LayerInfo, TensorInfo, TensorKind, join_path
from padiff_graph.selection import parse_entries, selected_paths, skip_wrap_layers_from_environment
from padiff_graph.tracing import trace_call_order
from padiff_graph.tree import ModelTree, build_tree, layer_info

FORMAT = "padiff-graph-dump"
_RANK_FOLDER = re.compile(r"\.?rank_(\d+)(?:\.partial)?")
FORMAT_VERSION = 1


class DumpError(PadiffGraphError):
    """A dump directory that is missing, incomplete or not a padiff_graph dump."""


def record_name(key: RecordKey) -> str:
    """The npz member of a record: ``forward:mlp.fc1:0:0``, ``grad:mlp.fc1.weight:0:0``, ``loss::0:0``."""
    return f"{key.stage}:{key.path}:{key.call}:{key.index}"


class StepWriter:
    """Streams one step's records of one rank into ``tensors.npz`` as they are produced."""

    def __init__(self, folder: Path, adapter: FrameworkAdapter) -> None:
        self.folder = folder
        self.records: list[dict[str, Any]] = []
        self._cache = HostCache(adapter, copy=False, size=3)
        self._zip = zipfile.ZipFile(folder / "tensors.npz", "w", zipfile.ZIP_STORED, allowZip64=True)

    def write(self, key: RecordKey, value: Any, dtype: str) -> None:
        array = np.ascontiguousarray(self._cache.array(value))
        name = record_name(key)
        with self._zip.open(name + ".npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, array, allow_pickle=False)
        self.records.append(
            {
                "name": name,
                "stage": key.stage,
                "path": key.path,
                "call": key.call,
                "index": key.index,
                "dtype": dtype,
                "shape": list(array.shape),
            }
        )

    def close(self, call_order: list[str]) -> None:
        self._zip.close()
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "call_order": call_order, "records": self.records}
        write_atomically(self.folder / "manifest.json", json.dumps(manifest, indent=1))


def dump(
    model: Any,
    inputs: Any,
    directory: str | os.PathLike[str],
    *,
    loss_fn: Any = None,
    optimizer: Any = None,
    steps: int = 1,
    diff_phase: str = "both",
    black_list: Iterable[Any] | None = None,
    white_list: Iterable[Any] | None = None,
    skip_wrap_layers: bool | None = None,
    amp: str | None = None,
    random_ops: str = "error",
    rank: int | None = None,
) -> Path:
    """Run ``model`` for ``steps`` training steps and record it under ``directory``.

    Records each hooked layer's outputs and output gradients, the loss, the
    parameter gradients and (with an optimizer) the weights after each step,
    in the format of ``docs/dump.md``. Under ``torch.distributed`` or
    ``paddle.distributed`` each process writes its own ``rank_N`` folders;
    ``rank`` overrides the detected rank. Arguments as for :func:`padiff_graph.diff`.

    Returns:
        ``directory`` as a :class:`~pathlib.Path`.

    Raises:
        InputError: bad inputs or options, or a random layer active with ``random_ops="error"``.
        ModelRunError: the model's forward, loss or backward raised.
    """
    if diff_phase not in PHASES:
        raise InputError(f"diff_phase must be one of {', '.join(PHASES)}, not {diff_phase!r}")
    if random_ops not in ("error", "disable"):
        raise InputError(f"random_ops must be 'error' or 'disable', not {random_ops!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive integer, not {steps!r}")
    adapter = adapter_for(model)
    later = inputs if isinstance(inputs, Iterator) else None
    first = prepare(adapter, model, _next(later, 0) if later is not None else inputs)
    tree = build_tree(adapter.export(model), trace_call_order(adapter, model, first))
    random_layers = [path for path in tree.nodes if is_random(layer_info(tree, path))]
    if random_layers and random_ops == "error":
        raise InputError(
            f"layer {random_layers[0]!r} is random in training mode; put the model in eval mode or pass "
            "random_ops='disable'"
        )
    selected = selected_paths(
        adapter.named_layers(model),
        tree,
        parse_entries(black_list, "all", "black_list"),
        parse_entries(white_list, "self", "white_list"),
        skip_wrap_layers_from_environment() if skip_wrap_layers is None else skip_wrap_layers,
    )
    root = Path(directory)
    rank = adapter.rank() if rank is None else rank
    marker = root / f"rank_{rank}.json"
    marker.unlink(missing_ok=True)  # from now on this rank's dump reads as incomplete until finished
    side = Side(adapter, model, "dumped", loss_fn, optimizer, amp, RandomWatch(disable=random_ops == "disable"))
    forward, backward = diff_phase != "backward", diff_phase != "forward"
    layers = {path: path for path in tree.nodes if path in selected}
    with random_layers_disabled(adapter, model, tree):
        for step in range(steps):
            arguments = first if step == 0 or later is None else prepare(adapter, model, _next(later, step))
            with _step_folder(root / f"step_{step}" / f"rank_{rank}") as folder:
                writer = StepWriter(folder, adapter)
                recorder = Recorder(adapter, model, layers, writer.write, step=step, outputs=forward, grads=backward)
                run_step(
                    side,
                    arguments,
                    recorder,
                    writer.write,
                    backward=backward,
                    after_backward=partial(_write_tensors, writer, adapter, model, step, "grad"),
                    after_optimizer=partial(_write_tensors, writer, adapter, model, step, "weights"),
                )
                writer.close(recorder.tracker.order)
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "framework": adapter.name,
        "model": type(model).__name__,
        "rank": rank,
        "steps": steps,
        "diff_phase": diff_phase,
        "layers": [_layer_dict(record) for record in adapter.export(model)],
    }
    write_atomically(marker, json.dumps(header, indent=1))
    return root


def _next(batches: Iterator[Any], step: int) -> Any:
    try:
        return next(batches)
    except StopIteration:
        raise InputError(f"the inputs iterator ran out at step {step}; give one input set per step") from None


def _write_tensors(writer: StepWriter, adapter: FrameworkAdapter, model: Any, step: int, stage: str) -> None:
    for name, tensor in adapter.named_tensors(model).items():
        value = adapter.grad(tensor) if stage == "grad" else tensor
        if value is not None:
            writer.write(RecordKey(step, stage, name), value, adapter.dtype_name(tensor))


@contextmanager
def _step_folder(final: Path) -> Iterator[Path]:
    """A temporary folder renamed to ``final`` only if the block succeeds."""
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    yield partial
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)


def _layer_dict(layer: LayerInfo) -> dict[str, Any]:
    entry = asdict(layer)
    entry["tensors"] = [{**asdict(t), "kind": t.kind.value, "shape": list(t.shape)} for t in layer.tensors]
    return entry


def _layer_from(entry: dict[str, Any]) -> LayerInfo:
    tensors = tuple(
        TensorInfo(t["name"], tuple(t["shape"]), t["dtype"], TensorKind(t["kind"]), t["persistent"])
        for t in entry["tensors"]
    )
    return LayerInfo(**{**entry, "tensors": tensors})


# --- reading and comparing ---------------------------------------------------------------------


@dataclass
class DumpRank:
    """One rank of a dump: its header and the step folders it wrote."""

    rank: int
    header: dict[str, Any]
    steps: dict[int, Path] = field(default_factory=dict)


@dataclass
class Dump:
    """A complete dump directory."""

    root: Path
    ranks: dict[int, DumpRank]

    def tree(self) -> ModelTree:
        first = self.ranks[min(self.ranks)]
        call_order = _manifest(first.steps[min(first.steps)])["call_order"] if first.steps else None
        return build_tree([_layer_from(entry) for entry in first.header["layers"]], call_order)


def load_dump(directory: str | os.PathLike[str]) -> Dump:
    """Open a dump, checking it is complete.

    Raises:
        DumpError: not a dump, or a rank or step that was not finished.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DumpError(f"{root}: no such dump directory")
    ranks: dict[int, DumpRank] = {}
    for marker in sorted(root.glob("rank_*.json")):
        header = _read_json(marker)
        if header.get("format") != FORMAT:
            raise DumpError(f"{marker}: not a padiff-graph dump (format {header.get('format')!r})")
        rank = int(header["rank"])
        found = DumpRank(rank, header)
        for step in range(int(header["steps"])):
            folder = root / f"step_{step}" / f"rank_{rank}"
            if not (folder / "manifest.json").is_file():
                raise DumpError(f"{folder}: step {step} of rank {rank} is missing; dump again")
            found.steps[step] = folder
        ranks[rank] = found
    written = {int(match.group(1)) for p in root.glob("step_*/*") if (match := _RANK_FOLDER.fullmatch(p.name))}
    unfinished = sorted(written - set(ranks))
    if unfinished or not ranks:
        what = f"rank {unfinished[0]} was interrupted" if unfinished else "it holds no finished rank"
        raise DumpError(f"{root}: incomplete dump ({what}: its rank_N.json was never written); dump again")
    return Dump(root, ranks)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DumpError(f"{path}: cannot read: {error}") from None
    if not isinstance(data, dict):
        raise DumpError(f"{path}: not a padiff-graph dump file")
    return data


def _manifest(folder: Path) -> dict[str, Any]:
    return _read_json(folder / "manifest.json")


def compare_dumps(
    base_dir: str | os.PathLike[str],
    raw_dir: str | os.PathLike[str],
    layer_map: LayerMap | None = None,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    mode: str = "strict",
) -> DiffReport:
    """Compare two dumps step by step and rank by rank, through ``layer_map`` (proposed if omitted).

    Raises:
        DumpError: a dump is missing or incomplete, or the two share no step and rank.
        LayerMapError: ``layer_map`` names layers the dumped models lack.
    """
    try:
        compare_mode = Mode(mode)
    except ValueError:
        raise InputError(f"mode must be 'strict' or 'mean', not {mode!r}") from None
    base, raw = load_dump(base_dir), load_dump(raw_dir)
    base_tree, raw_tree = base.tree(), raw.tree()
    if layer_map is None:
        layer_map = match_trees(base_tree, raw_tree)
    findings = preflight_trees(base_tree, raw_tree, layer_map)
    context = {t.dtype for tree in (base_tree, raw_tree) for p in tree.nodes for t in tree.nodes[p]["tensors"]}
    default_atol, default_rtol = default_tolerance(*context)
    tolerance = Tolerance(
        default_atol if atol is None else atol,
        default_rtol if rtol is None else rtol,
        compare_mode,
        fixed=atol is not None or rtol is not None,
        context=tuple(sorted(d for d in context if d in DEFAULT_TOLERANCES)),
    )
    comparisons: list[Comparison] = []
    unproduced: list[str] = []
    shared = [(rank, step) for rank in sorted(base.ranks) if rank in raw.ranks for step in base.ranks[rank].steps]
    shared = [(rank, step) for rank, step in shared if step in raw.ranks[rank].steps]
    if not shared:
        raise DumpError(f"{base.root} and {raw.root} share no step and rank to compare")
    for rank, step in sorted(shared, key=lambda item: (item[1], item[0])):
        found, missing = _compare_step(
            base.ranks[rank].steps[step], raw.ranks[rank].steps[step], layer_map, tolerance, step
        )
        comparisons += found
        unproduced += [f"{entry} (rank {rank})" for entry in missing]
    divergence, contained = first_divergence(comparisons)
    descendants = {path: set(nx.descendants(base_tree, path)) for path in base_tree.nodes}
    settings = {
        "atol": tolerance.atol,
        "rtol": tolerance.rtol,
        "tolerance_by_dtype": not tolerance.fixed,
        "mode": compare_mode.value,
        "offline": True,
        "ranks": sorted({rank for rank, _ in shared}),
        "steps": len({step for _, step in shared}),
    }
    return DiffReport(
        divergence is None,
        divergence,
        comparisons,
        findings,
        layer_map,
        settings,
        unproduced,
        contained,
        all_divergences(comparisons, descendants),
    )


def _compare_step(
    base_folder: Path, raw_folder: Path, layer_map: LayerMap, tolerance: Tolerance, step: int
) -> tuple[list[Comparison], list[str]]:
    """Compare one step folder of each dump; also returns the base records the raw dump lacks."""
    base_manifest, raw_manifest = _manifest(base_folder), _manifest(raw_folder)
    base_records = {entry["name"]: entry for entry in base_manifest["records"]}
    by_raw_path = {pair.raw: pair for pair in layer_map.pairs if pair.base not in set(layer_map.ignore_base)}
    tensor_pairs = {
        join_path(pair.raw, tensor.raw): (pair, tensor) for pair in layer_map.pairs for tensor in pair.tensors
    }
    comparisons: list[Comparison] = []
    used: set[str] = set()
    with (
        np.load(base_folder / "tensors.npz", allow_pickle=False) as base_arrays,
        np.load(raw_folder / "tensors.npz", allow_pickle=False) as raw_arrays,
    ):
        for entry in raw_manifest["records"]:
            stage, path = entry["stage"], entry["path"]
            if stage in ("grad", "weights"):
                if path not in tensor_pairs:
                    continue
                pair, tensor = tensor_pairs[path]
                name = f"{stage}:{join_path(pair.base, tensor.base)}:0:0"
                if name not in base_records:
                    continue
                used.add(name)
                expected = tensor.transform.apply(base_arrays[name])
                raw_value = raw_arrays[entry["name"]]
                region = raw_value[tensor.transform.raw_index] if tensor.transform.raw_index else raw_value
                verdict = _verdict(expected, region, tolerance, base_records[name]["dtype"], entry["dtype"])
                index = pair.tensors.index(tensor)
                comparisons.append(Comparison(pair.base, pair.raw, f"{stage}:{tensor.base}", 0, index, verdict, step))
                continue
            if stage == "loss":
                base_path, raw_path = "", ""
            elif path in by_raw_path:
                base_path, raw_path = by_raw_path[path].base, path
            else:
                continue
            name = f"{stage}:{base_path}:{entry['call']}:{entry['index']}"
            if name not in base_records:
                continue
            used.add(name)
            verdict = _verdict(
                base_arrays[name], raw_arrays[entry["name"]], tolerance, base_records[name]["dtype"], entry["dtype"]
            )
            comparisons.append(Comparison(base_path, raw_path, stage, entry["call"], entry["index"], verdict, step))
    paired_base = {pair.base for pair in by_raw_path.values()}
    missing = sorted(
        {
            f"{e['stage']} {e['path']} ({f'step {step}, ' if step else ''}call {e['call']})"
            for e in base_manifest["records"]
            if e["name"] not in used and e["stage"] in ("forward", "backward") and e["path"] in paired_base
        }
    )
    return comparisons, missing


def _verdict(base: np.ndarray, raw: np.ndarray, tolerance: Tolerance, *dtypes: str) -> Verdict:
    atol, rtol = tolerance.for_dtypes(*dtypes)
    return compare_arrays(base, raw, atol, rtol, tolerance.mode)
