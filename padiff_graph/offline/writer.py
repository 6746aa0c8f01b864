"""Recording one model's run to a dump directory: :func:`dump` drives the steps itself.

Each model can run in its own process, or on its own machine, and only one
model ever needs to fit in memory. A step folder is written under a
temporary name and renamed when complete; the rank file is removed when a
dump starts and written when it ends, so an interrupted dump is reported as
incomplete, never read as a finished one.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from padiff_graph.core.atomic import write_atomically
from padiff_graph.core.records import Layout
from padiff_graph.core.tree import build_tree, layer_info
from padiff_graph.errors import InputError
from padiff_graph.frameworks import adapter_for
from padiff_graph.frameworks.base import FrameworkAdapter
from padiff_graph.frameworks.export import tied_tensors
from padiff_graph.frameworks.inputs import StepInputs
from padiff_graph.frameworks.tracing import trace_forward
from padiff_graph.knowledge.families import is_random
from padiff_graph.offline.format import FORMAT, FORMAT_VERSION, TENSORS, layer_dict, record_name
from padiff_graph.offline.integrity import CHECKSUM, file_entry, sealed_json
from padiff_graph.run.engine import Side, run_step
from padiff_graph.run.hooks import HostCache, Recorder, RecordKey
from padiff_graph.run.options import PHASES, RANDOM_OPS, parse_amp, parse_choice, parse_steps
from padiff_graph.run.randomness import RandomWatch, random_layers_disabled
from padiff_graph.run.selection import LayerSelection


class StepWriter:
    """Streams records into one npz file of a step folder as they are produced."""

    def __init__(self, stream: BinaryIO, adapter: FrameworkAdapter, file: str = TENSORS) -> None:
        self.file = file
        self.records: list[dict[str, Any]] = []
        self._adapter = adapter
        self._cache = HostCache(adapter, copy=False, size=3)
        self._zip = zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED, allowZip64=True)

    def write(self, key: RecordKey, value: Any, dtype: str, layout: Layout | None = None) -> None:
        """Store ``value`` (of a framework tensor, this rank's part) with its ``layout``, read off it if not given."""
        if layout is None and not isinstance(value, np.ndarray):
            layout = self._adapter.layout(value)
        array = np.ascontiguousarray(self._cache.array(value))
        name = record_name(key)
        with self._zip.open(name + ".npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, array, allow_pickle=False)
        crc = self._zip.getinfo(name + ".npy").CRC  # the zip's checksum of the member, kept in the manifest too
        entry = {
            "name": name,
            "stage": key.stage,
            "path": key.path,
            "call": key.call,
            "index": key.index,
            "dtype": dtype,
            "shape": list(array.shape),
            "file": self.file,
            CHECKSUM: crc,
        }
        if layout is not None:
            entry["layout"] = layout.as_dict()
        self.records.append(entry)

    def close(self) -> list[dict[str, Any]]:
        """Finish the npz file; returns the manifest entries of its records."""
        self._zip.close()
        return self.records

    def __enter__(self) -> StepWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._zip.close()  # before the stream closes, also when the step failed


def write_manifest(
    folder: Path, call_order: list[str], records: list[dict[str, Any]], files: dict[str, dict[str, int]]
) -> None:
    """Write a step folder's manifest: its records (each with its CRC-32) and the size of each npz file (``files``)."""
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "call_order": call_order, "records": records}
    write_atomically(folder / "manifest.json", sealed_json({**manifest, "files": files}))


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
    parse_choice("diff_phase", diff_phase, PHASES)
    parse_choice("random_ops", random_ops, RANDOM_OPS)
    steps = parse_steps(steps)
    amp_dtype, other = parse_amp(amp)
    if amp_dtype != other:
        raise InputError(f"amp: dump runs one model; give one dtype, not {amp!r}")
    selection = LayerSelection.parse(black_list, white_list, skip_wrap_layers)
    adapter = adapter_for(model)
    step_inputs = StepInputs([(adapter, model)], inputs)
    tree = build_tree(adapter.export(model), trace_forward(adapter, model, step_inputs.first[0]).order)
    random_layers = [path for path in tree.nodes if is_random(layer_info(tree, path))]
    if random_layers and random_ops == "error":
        raise InputError(
            f"layer {random_layers[0]!r} is random in training mode; put the model in eval mode or pass "
            "random_ops='disable'"
        )
    selected = selection.paths(adapter.named_layers(model), tree)
    root = Path(directory)
    rank = adapter.rank() if rank is None else rank
    marker = root / f"rank_{rank}.json"
    marker.unlink(missing_ok=True)  # from now on this rank's dump reads as incomplete until finished
    side = Side(adapter, model, "dumped", loss_fn, optimizer, amp_dtype, RandomWatch(disable=random_ops == "disable"))
    forward, backward = diff_phase != "backward", diff_phase != "forward"
    layers = {path: path for path in tree.nodes if path in selected}
    with random_layers_disabled(adapter, model, tree):
        for step, (arguments,) in enumerate(step_inputs.batches(steps)):
            with _step_folder(root / f"step_{step}" / f"rank_{rank}") as folder:
                with open(folder / TENSORS, "wb") as stream, StepWriter(stream, adapter) as writer:
                    recorder = Recorder(
                        adapter, model, layers, writer.write, step=step, outputs=forward, grads=backward
                    )
                    run_step(
                        side,
                        arguments,
                        recorder,
                        writer.write,
                        backward=backward,
                        after_backward=partial(_write_tensors, writer, adapter, model, step, "grad"),
                        after_optimizer=partial(_write_tensors, writer, adapter, model, step, "weights"),
                    )
                    records = writer.close()
                write_manifest(folder, recorder.tracker.order, records, {TENSORS: file_entry(folder / TENSORS)})
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "framework": adapter.name,
        "model": type(model).__name__,
        "rank": rank,
        "world_size": adapter.world_size(),
        "steps": steps,
        "diff_phase": diff_phase,
        "layers": [layer_dict(record) for record in adapter.export(model)],
        "tied": tied_tensors(model),
    }
    write_atomically(marker, sealed_json(header))
    return root


def _write_tensors(writer: StepWriter, adapter: FrameworkAdapter, model: Any, step: int, stage: str) -> None:
    for name, tensor in adapter.named_tensors(model).items():
        value = adapter.grad(tensor) if stage == "grad" else tensor
        if value is not None:
            layout = adapter.layout(tensor, of_grad=stage == "grad")
            writer.write(RecordKey(step, stage, name), value, adapter.dtype_name(tensor), layout)


@contextmanager
def _step_folder(final: Path) -> Iterator[Path]:
    """A temporary folder renamed to ``final`` only if the block succeeds."""
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    yield partial
    shutil.rmtree(final, ignore_errors=True)
    os.replace(partial, final)
