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
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import networkx as nx
import numpy as np

from padiff_graph.atomic import atomic_file, write_atomically
from padiff_graph.compare import DEFAULT_TOLERANCES, Mode, Verdict, compare_arrays, default_tolerance
from padiff_graph.diff import Comparison, DiffReport, Tolerance, all_divergences, first_divergence
from padiff_graph.engine import Side, run_step
from padiff_graph.errors import InputError, PadiffGraphError
from padiff_graph.frameworks import adapter_for
from padiff_graph.frameworks.base import FrameworkAdapter
from padiff_graph.inputs import prepare
from padiff_graph.knowledge.families import is_random
from padiff_graph.layermap import LayerMap
from padiff_graph.match import match_trees
from padiff_graph.options import PHASES
from padiff_graph.preflight import preflight_trees
from padiff_graph.randomness import RandomWatch, random_layers_disabled
from padiff_graph.recording import HostCache, Recorder, RecordKey
from padiff_graph.records import LayerInfo, TensorInfo, TensorKind, join_path
from padiff_graph.selection import parse_entries, selected_paths, skip_wrap_layers_from_environment
from padiff_graph.tracing import hooks, trace_call_order
from padiff_graph.tree import ModelTree, build_tree, layer_info

FORMAT = "padiff-graph-dump"
_RANK_FOLDER = re.compile(r"\.?rank_(\d+)(?:\.partial)?")
FORMAT_VERSION = 1
#: the npz file :func:`dump` writes every record of a step into
TENSORS = "tensors.npz"
#: the stages a dump records
RECORD_STAGES = ("forward", "backward", "loss", "grad", "weights")


class DumpError(PadiffGraphError):
    """A dump directory that is missing, incomplete or not a padiff_graph dump."""


def record_name(key: RecordKey) -> str:
    """The npz member of a record: ``forward:mlp.fc1:0:0``, ``grad:mlp.fc1.weight:0:0``, ``loss::0:0``."""
    return f"{key.stage}:{key.path}:{key.call}:{key.index}"


class StepWriter:
    """Streams records into one npz file of a step folder as they are produced."""

    def __init__(self, stream: BinaryIO, adapter: FrameworkAdapter, file: str = TENSORS) -> None:
        self.file = file
        self.records: list[dict[str, Any]] = []
        self._cache = HostCache(adapter, copy=False, size=3)
        self._zip = zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED, allowZip64=True)

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
                "file": self.file,
            }
        )

    def close(self) -> list[dict[str, Any]]:
        """Finish the npz file; returns the manifest entries of its records."""
        self._zip.close()
        return self.records

    def __enter__(self) -> StepWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._zip.close()  # before the stream closes, also when the step failed


def _write_manifest(folder: Path, call_order: list[str], records: list[dict[str, Any]]) -> None:
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "call_order": call_order, "records": records}
    write_atomically(folder / "manifest.json", json.dumps(manifest, indent=1))


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
            with (
                _step_folder(root / f"step_{step}" / f"rank_{rank}") as folder,
                open(folder / TENSORS, "wb") as stream,
                StepWriter(stream, adapter) as writer,
            ):
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
                _write_manifest(folder, recorder.tracker.order, writer.close())
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


# --- recording inside your own training loop ---------------------------------------------------

#: what each part of a step folder that :class:`Recording` saves holds
PARTS = {"report": ("forward", "backward", "loss"), "grads": ("grad",), "weights": ("weights",)}


class Recording:
    """Record a model inside your own training loop, into the dump format.

    For loops :func:`dump` cannot drive (your own data pipeline, gradient
    accumulation, a distributed runtime): call the model through
    :meth:`forward` and run its backward through :meth:`backward` (or
    ``loss.backward()``), then save, for a step, one of three parts:

    - ``"report"``: the selected layers' outputs and output gradients and
      the loss, recorded since the last :meth:`clear` (held in host memory
      until then);
    - ``"grads"``: the parameter gradients of the selected layers, as they are now;
    - ``"weights"``: their parameters and buffers, as they are now (after an
      optimizer step, say).

    Each part is its own npz file in ``step_S/rank_N`` (``report.npz``,
    ``grads.npz``, ``weights.npz``); saving a part again replaces it. The
    rank's header lists the steps saved so far and is rewritten after every
    save, so the dump can be compared at any point. The first save of this
    recording into a directory starts the rank afresh there (its old header
    goes), and the first save into a step folder empties it.

    Example::

        recording = pg.Recording(model)
        for step, batch in enumerate(batches):
            loss = loss_fn(recording.forward(**batch))
            recording.backward(loss)
            recording.save("dumps/torch", step, "report")
            recording.save("dumps/torch", step, "grads")
            optimizer.step()
            recording.save("dumps/torch", step, "weights")
            recording.clear()

    Args:
        black_list, white_list, skip_wrap_layers: which layers to record, as
            for :func:`padiff_graph.diff`.
        metadata: JSON-serializable data stored in the rank headers (``"metadata"``).
    """

    def __init__(
        self,
        model: Any,
        *,
        black_list: Iterable[Any] | None = None,
        white_list: Iterable[Any] | None = None,
        skip_wrap_layers: bool | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.adapter = adapter_for(model)
        self.metadata = dict(metadata or {})
        self._layers = self.adapter.export(model)
        self._copies = HostCache(self.adapter, copy=True)
        self._steps: dict[tuple[Path, int], set[int]] = {}
        self._folders: set[Path] = set()
        self.records: list[tuple[RecordKey, np.ndarray, str]] = []
        self.select(black_list, white_list, skip_wrap_layers)

    def select(
        self,
        black_list: Iterable[Any] | None = None,
        white_list: Iterable[Any] | None = None,
        skip_wrap_layers: bool | None = None,
    ) -> None:
        """Choose the layers to record (as for :func:`padiff_graph.diff`); applies from the next :meth:`clear`,
        or at once while nothing is recorded."""
        selected = selected_paths(
            self.adapter.named_layers(self.model),
            build_tree(self._layers),
            parse_entries(black_list, "all", "black_list"),
            parse_entries(white_list, "self", "white_list"),
            skip_wrap_layers_from_environment() if skip_wrap_layers is None else skip_wrap_layers,
        )
        self.layers = {layer.path: layer.path for layer in self._layers if layer.path in selected}
        if not self.records:
            self.clear()

    def clear(self) -> None:
        """Forget what was recorded (the next forward starts a new report)."""
        self.records = []
        self._recorder = Recorder(self.adapter, self.model, self.layers, self._keep, step=0)
        self._losses = 0

    def _keep(self, key: RecordKey, value: Any, dtype: str) -> None:
        self.records.append((key, self._copies.array(value), dtype))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """``model(*args, **kwargs)``, recording the selected layers' outputs (and, later, their gradients)."""
        with hooks(self._recorder.install()):
            return self.model(*args, **kwargs)

    def backward(self, loss: Any) -> None:
        """Record ``loss`` and run backward from it."""
        self._keep(RecordKey(0, "loss", "", self._losses), loss, self.adapter.dtype_name(loss))
        self._losses += 1
        self.adapter.backward(loss)

    def save(self, directory: str | os.PathLike[str], step: int, part: str, *, rank: int | None = None) -> Path:
        """Write one part of ``step`` (``"report"``, ``"grads"`` or ``"weights"``) into the dump ``directory``.

        Returns:
            the step folder, ``directory/step_S/rank_N``.

        Raises:
            InputError: an unknown part, or a negative step.
            OutputError: the folder cannot be written.
        """
        if part not in PARTS:
            raise InputError(f"part must be one of {', '.join(PARTS)}, not {part!r}")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise InputError(f"step must be a non-negative integer, not {step!r}")
        root = Path(directory)
        rank = self.adapter.rank() if rank is None else rank
        saved = self._steps.get((root.resolve(), rank))
        if saved is None:
            (root / f"rank_{rank}.json").unlink(missing_ok=True)  # incomplete until the first part is saved
            saved = self._steps[(root.resolve(), rank)] = set()
        folder = root / f"step_{step}" / f"rank_{rank}"
        if folder.resolve() not in self._folders:
            shutil.rmtree(folder, ignore_errors=True)
            self._folders.add(folder.resolve())
        file = f"{part}.npz"
        with atomic_file(folder / file) as stream, StepWriter(stream, self.adapter, file) as writer:
            for key, value, dtype in self._part(part):
                writer.write(key, value, dtype)
            written = writer.close()
        manifest = _manifest(folder) if (folder / "manifest.json").is_file() else {"call_order": [], "records": []}
        records = [entry for entry in manifest["records"] if entry.get("file", TENSORS) != file] + written
        call_order = self._recorder.tracker.order if part == "report" else manifest["call_order"]
        _write_manifest(folder, call_order, records)
        saved.add(step)
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "framework": self.adapter.name,
            "model": type(self.model).__name__,
            "rank": rank,
            "steps": sorted(saved),
            "diff_phase": "both",
            "layers": [_layer_dict(record) for record in self._layers],
            "metadata": self.metadata,
        }
        write_atomically(root / f"rank_{rank}.json", json.dumps(header, indent=1))
        return folder

    def _part(self, part: str) -> list[tuple[RecordKey, Any, str]]:
        if part == "report":
            return list(self.records)
        stage = PARTS[part][0]
        found = []
        for name, tensor in self.adapter.named_tensors(self.model).items():
            if name.rpartition(".")[0] not in self.layers:
                continue
            value = self.adapter.grad(tensor) if stage == "grad" else tensor
            if value is not None:
                found.append((RecordKey(0, stage, name), value, self.adapter.dtype_name(tensor)))
        return found


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
        steps = header["steps"]  # a count (steps 0..n-1, from dump) or the step numbers (from Recording)
        for step in range(int(steps)) if isinstance(steps, int) else [int(step) for step in steps]:
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
    steps: Collection[int] | None = None,
    ranks: Collection[int] | None = None,
    stages: Collection[str] | None = None,
) -> DiffReport:
    """Compare two dumps step by step and rank by rank, through ``layer_map`` (proposed if omitted).

    ``steps``, ``ranks`` and ``stages`` (of ``forward``, ``backward``,
    ``loss``, ``grad``, ``weights``) narrow the comparison; by default every
    step and rank both dumps hold is compared, every record of them.

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
    shared = [
        (rank, step)
        for rank, step in shared
        if step in raw.ranks[rank].steps and (steps is None or step in steps) and (ranks is None or rank in ranks)
    ]
    if not shared:
        chosen = "".join(
            f" among {what} {sorted(values)}" for what, values in (("steps", steps), ("ranks", ranks)) if values
        )
        raise DumpError(f"{base.root} and {raw.root} share no step and rank to compare{chosen}")
    kinds = set(RECORD_STAGES if stages is None else stages)
    unknown = kinds - set(RECORD_STAGES)
    if unknown:
        raise InputError(f"stages must be among {', '.join(RECORD_STAGES)}, not {sorted(unknown)}")
    for rank, step in sorted(shared, key=lambda item: (item[1], item[0])):
        found, missing = _compare_step(
            base.ranks[rank].steps[step], raw.ranks[rank].steps[step], layer_map, tolerance, step, kinds
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
    base_folder: Path, raw_folder: Path, layer_map: LayerMap, tolerance: Tolerance, step: int, stages: set[str]
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
        _Arrays(base_folder, base_manifest["records"]) as base_arrays,
        _Arrays(raw_folder, raw_manifest["records"]) as raw_arrays,
    ):
        for entry in raw_manifest["records"]:
            stage, path = entry["stage"], entry["path"]
            if stage not in stages:
                continue
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
            if e["name"] not in used
            and e["stage"] in ("forward", "backward")
            and e["stage"] in stages
            and e["path"] in paired_base
        }
    )
    return comparisons, missing


class _Arrays:
    """The arrays of one step folder by record name, each npz file opened when first needed."""

    def __init__(self, folder: Path, records: Iterable[dict[str, Any]]) -> None:
        self.folder = folder
        self.file_of = {entry["name"]: entry.get("file", TENSORS) for entry in records}
        self._open: dict[str, Any] = {}

    def __enter__(self) -> _Arrays:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for arrays in self._open.values():
            arrays.close()

    def __getitem__(self, name: str) -> np.ndarray:
        file = self.file_of[name]
        if file not in self._open:
            try:
                self._open[file] = np.load(self.folder / file, allow_pickle=False)
            except OSError as error:
                raise DumpError(f"{self.folder / file}: cannot read: {error}; dump again") from None
        array: np.ndarray = self._open[file][name]
        return array


def _verdict(base: np.ndarray, raw: np.ndarray, tolerance: Tolerance, *dtypes: str) -> Verdict:
    atol, rtol = tolerance.for_dtypes(*dtypes)
    return compare_arrays(base, raw, atol, rtol, tolerance.mode)
