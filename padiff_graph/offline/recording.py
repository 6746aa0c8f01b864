"""Recording a model inside your own training loop, into the dump format."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from padiff_graph.core.atomic import atomic_file, write_atomically
from padiff_graph.core.records import Layout
from padiff_graph.core.tree import build_tree
from padiff_graph.errors import InputError
from padiff_graph.frameworks import adapter_for
from padiff_graph.frameworks.base import iter_tensors
from padiff_graph.frameworks.export import tied_tensors
from padiff_graph.frameworks.tracing import hooks
from padiff_graph.offline.format import FORMAT, FORMAT_VERSION, layer_dict
from padiff_graph.offline.integrity import file_entry, sealed_json
from padiff_graph.offline.reader import read_manifest
from padiff_graph.offline.writer import StepWriter, write_manifest
from padiff_graph.run.hooks import HostCache, Recorder, RecordKey
from padiff_graph.run.selection import LayerSelection

#: what each part of a step folder that :class:`Recording` saves holds
PARTS = {"report": ("input", "forward", "backward", "loss"), "grads": ("grad",), "weights": ("weights",)}


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

    Inside a distributed engine (torch ``DTensor``: tensor parallel, FSDP2;
    paddle semi-auto parallel) each rank records its local part of every
    tensor with the engine's placement, and ``compare`` merges the ranks
    (``docs/sharded.md``).

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
        self.records: list[tuple[RecordKey, np.ndarray, str, Layout | None]] = []
        self.select(black_list, white_list, skip_wrap_layers)

    def select(
        self,
        black_list: Iterable[Any] | None = None,
        white_list: Iterable[Any] | None = None,
        skip_wrap_layers: bool | None = None,
    ) -> None:
        """Choose the layers to record (as for :func:`padiff_graph.diff`); applies from the next :meth:`clear`,
        or at once while nothing is recorded."""
        selection = LayerSelection.parse(black_list, white_list, skip_wrap_layers)
        selected = selection.paths(self.adapter.named_layers(self.model), build_tree(self._layers))
        self.layers = {layer.path: layer.path for layer in self._layers if layer.path in selected}
        if not self.records:
            self.clear()

    def clear(self) -> None:
        """Forget what was recorded (the next forward starts a new report)."""
        self.records = []
        self._recorder = Recorder(self.adapter, self.model, self.layers, self._keep, step=0)
        self._losses = 0
        self._forwards = 0

    def _keep(self, key: RecordKey, value: Any, dtype: str) -> None:
        """Keep a host copy of this rank's part of ``value``, with where a distributed engine placed it."""
        self.records.append((key, self._copies.array(value), dtype, self.adapter.layout(value)))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """``model(*args, **kwargs)``, recording the batch (the root's ``input`` records) and the selected
        layers' outputs (and, later, their gradients)."""
        for index, tensor in enumerate(iter_tensors((args, kwargs), self.adapter.is_tensor)):
            self._keep(RecordKey(0, "input", "", self._forwards, index), tensor, self.adapter.dtype_name(tensor))
        self._forwards += 1
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
            DumpError: the step folder's manifest was damaged since the last save.
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
            for key, value, dtype, layout in self._part(part):
                writer.write(key, value, dtype, layout)
            written = writer.close()
        manifest = read_manifest(folder) if (folder / "manifest.json").is_file() else {"call_order": [], "records": []}
        records = [entry for entry in manifest["records"] if entry["file"] != file] + written
        call_order = self._recorder.tracker.order if part == "report" else manifest["call_order"]
        files = {**manifest.get("files", {}), file: file_entry(folder / file)}
        write_manifest(folder, call_order, records, files)
        saved.add(step)
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "framework": self.adapter.name,
            "model": type(self.model).__name__,
            "rank": rank,
            "world_size": self.adapter.world_size(),
            "steps": sorted(saved),
            "diff_phase": "both",
            "layers": [layer_dict(record) for record in self._layers],
            "tied": tied_tensors(self.model),
            "metadata": self.metadata,
        }
        write_atomically(root / f"rank_{rank}.json", sealed_json(header))
        return folder

    def _part(self, part: str) -> list[tuple[RecordKey, Any, str, Layout | None]]:
        if part == "report":
            return list(self.records)
        stage = PARTS[part][0]
        found = []
        for name, tensor in self.adapter.named_tensors(self.model).items():
            if name.rpartition(".")[0] not in self.layers:
                continue
            value = self.adapter.grad(tensor) if stage == "grad" else tensor
            if value is not None:
                layout = self.adapter.layout(tensor, of_grad=stage == "grad")
                found.append((RecordKey(0, stage, name), value, self.adapter.dtype_name(tensor), layout))
        return found
