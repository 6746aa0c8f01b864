"""PaDiff's offline checks over dump folders: ``check_report``, ``check_params``, ``check_grads``, ``check_weights``.

A path is what was dumped into: a dump's root (every step and rank in it is
checked, as PaDiff walks ``step_*`` and ``rank_*`` folders), one of its
``step_S`` folders, or one ``step_S/rank_N``. The comparison is
:func:`padiff_graph.compare_dumps` through the matcher's map of the two
dumped layer trees (with the proxies' ``set_layer_map`` pairs pinned).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from padiff_graph.compat.messages import (
    Named,
    log,
    print_failure,
    print_missing_grad,
    print_tensor_failures,
    remember,
)
from padiff_graph.compat.proxy import METADATA, numbered
from padiff_graph.core.records import join_path
from padiff_graph.errors import DumpError, InputError, PadiffGraphError
from padiff_graph.layermap.layer_map import LayerMap
from padiff_graph.match import match_trees
from padiff_graph.offline.compare import compare_dumps
from padiff_graph.offline.reader import Dump, load_dump
from padiff_graph.run.numerics import Mode, compare_arrays
from padiff_graph.run.options import parse_mode, parse_tolerance

#: PaDiff's defaults for ``cfg``
DEFAULT_CFG: dict[str, Any] = {"atol": 0.0, "rtol": 1e-7, "compare_mode": "mean"}
_STAGES = {
    "report": ("forward", "backward", "loss"),
    "params": ("grad", "weights"),
    "grads": ("grad",),
    "weights": ("weights",),
}
_PHASES = {"both": _STAGES["report"], "forward": ("forward",), "backward": ("backward",)}


def check_report(
    report_path_0: str, report_path_1: str, cfg: dict[str, Any] | None = None, diff_phase: str = "both"
) -> bool:
    """Layer outputs, output gradients and losses of two dumps; ``True`` if they agree.

    ``diff_phase`` ``"forward"`` checks the outputs only, ``"backward"`` the output gradients only.
    """
    if diff_phase not in _PHASES:
        raise InputError(f"diff_phase must be one of {', '.join(_PHASES)}, not {diff_phase!r}")
    return _check("report", report_path_0, report_path_1, cfg, _PHASES[diff_phase])


def check_params(report_path_0: str, report_path_1: str, cfg: dict[str, Any] | None = None) -> bool:
    """Parameters and their gradients of two dumps."""
    return _check("params", report_path_0, report_path_1, cfg)


def check_grads(report_path_0: str, report_path_1: str, cfg: dict[str, Any] | None = None) -> bool:
    """Parameter gradients of two dumps."""
    return _check("grads", report_path_0, report_path_1, cfg)


def check_weights(report_path_0: str, report_path_1: str, cfg: dict[str, Any] | None = None) -> bool:
    """Parameters of two dumps (after the optimizer step, when dumped with ``dump_weights``)."""
    return _check("weights", report_path_0, report_path_1, cfg)


def compare_cfg(cfg: dict[str, Any] | None) -> dict[str, Any]:
    """``cfg`` over PaDiff's defaults; it applies to this call only (PaDiff kept it for later calls).

    Raises:
        InputError: a key other than ``atol``, ``rtol``, ``compare_mode``, or a value they cannot take.
    """
    given = dict(cfg or {})
    unknown = sorted(set(given) - set(DEFAULT_CFG))
    if unknown:
        raise InputError(f"cfg takes atol, rtol and compare_mode, not {', '.join(unknown)}")
    settings = {**DEFAULT_CFG, **given}
    for key in ("atol", "rtol"):
        settings[key] = parse_tolerance(f"cfg {key}", settings[key])
    settings["compare_mode"] = parse_mode(settings["compare_mode"]).value
    return settings


def _check(
    kind: str, path_0: str, path_1: str, cfg: dict[str, Any] | None, stages: tuple[str, ...] | None = None
) -> bool:
    remember(None)
    settings = compare_cfg(cfg)
    log(f"check cfg {settings}" if kind == "report" else f"Check {kind} cfg: {settings}")
    try:
        (root_0, steps_0, ranks_0), (root_1, steps_1, ranks_1) = locate(path_0), locate(path_1)
        steps, ranks = _narrowest(steps_0, steps_1, "steps"), _narrowest(ranks_0, ranks_1, "ranks")
        base, raw = load_dump(root_0), load_dump(root_1)
        shared = [
            (step, rank)
            for rank in set(base.ranks) & set(raw.ranks)
            for step in set(base.ranks[rank].steps) & set(raw.ranks[rank].steps)
            if (steps is None or step in steps) and (ranks is None or rank in ranks)
        ]
        for step, rank in sorted(shared):
            where = f"step_{step}/rank_{rank}"
            log(f"Checking {kind} in {root_0 / where} and {root_1 / where}")
        layer_map = match_trees(base.tree(), raw.tree(), pinned=_pins(base, raw))
        report = compare_dumps(
            root_0,
            root_1,
            layer_map,
            atol=float(settings["atol"]),
            rtol=float(settings["rtol"]),
            mode=settings["compare_mode"],
            steps=steps,
            ranks=ranks,
            stages=stages or _STAGES[kind],
        )
    except PadiffGraphError as error:
        log(f"Error occurs when checking {kind}: {error}")
        return False
    remember(report)
    named = _named(base), _named(raw)
    if kind == "report":
        print_failure(report, *named)
        return report.ok
    one_sided = _one_sided_grads(base, raw, layer_map, steps, ranks) if "grad" in _STAGES[kind] else []
    print_tensor_failures(report, *named, kinds=_STAGES[kind])
    for base_tensor, raw_tensor, missing in one_sided:
        print_missing_grad(named[0], named[1], base_tensor, raw_tensor, missing)
    return report.ok and not one_sided


def _one_sided_grads(
    base: Dump, raw: Dump, layer_map: LayerMap, steps: set[int] | None, ranks: set[int] | None
) -> list[tuple[str, str, str]]:
    """(base tensor, raw tensor, the side without it) for each paired parameter with a gradient in one dump only.

    Only parameters of layers both proxies dumped count (a layer a list left
    out has no gradients either way); dumps without that list are not checked.
    """
    base_layers, raw_layers = _compat_metadata(base).get("layers"), _compat_metadata(raw).get("layers")
    if base_layers is None or raw_layers is None:
        return []
    found = []
    for rank in sorted(set(base.ranks) & set(raw.ranks) & (ranks if ranks is not None else set(base.ranks))):
        base_steps, raw_steps = base.ranks[rank].steps, raw.ranks[rank].steps
        for step in sorted(set(base_steps) & set(raw_steps) & (steps if steps is not None else set(base_steps))):
            base_grads, raw_grads = _grads(base_steps[step]), _grads(raw_steps[step])
            for pair in layer_map.pairs:
                if pair.base not in base_layers or pair.raw not in raw_layers:
                    continue
                for tensor in pair.tensors:
                    base_tensor, raw_tensor = join_path(pair.base, tensor.base), join_path(pair.raw, tensor.raw)
                    if (base_tensor in base_grads) != (raw_tensor in raw_grads):
                        missing = "raw_model" if base_tensor in base_grads else "base_model"
                        found.append((base_tensor, raw_tensor, missing))
    return found


def _grads(folder: Path) -> set[str]:
    """The tensors a step folder holds gradients of."""
    manifest = json.loads((folder / "manifest.json").read_text())
    return {entry["path"] for entry in manifest["records"] if entry["stage"] == "grad"}


def locate(path: str | Path) -> tuple[Path, set[int] | None, set[int] | None]:
    """(dump root, steps, ranks) of a path: a root, a ``step_S`` folder in it, or a ``step_S/rank_N``.

    Raises:
        DumpError: no dump there.
    """
    folder = Path(path)

    def is_root(candidate: Path) -> bool:
        return any(candidate.glob("rank_*.json"))

    if is_root(folder):
        return folder, None, None
    step = numbered(folder.name, "step")
    if step is not None and is_root(folder.parent):
        return folder.parent, {step}, None
    rank, step = numbered(folder.name, "rank"), numbered(folder.parent.name, "step")
    if rank is not None and step is not None and is_root(folder.parent.parent):
        return folder.parent.parent, {step}, {rank}
    if not folder.exists():
        raise DumpError(f"{folder}: no such dump directory")
    raise DumpError(f"{folder}: no finished dump here (a dump root, or a step_S or step_S/rank_N folder in one)")


def _narrowest(first: set[int] | None, second: set[int] | None, what: str) -> set[int] | None:
    if first is not None and second is not None and first != second:
        raise DumpError(f"the two paths name different {what} ({sorted(first)} and {sorted(second)})")
    return first if first is not None else second


def _pins(base: Dump, raw: Dump) -> list[tuple[str, str]]:
    """The ``set_layer_map`` layers the two proxies stored in their dumps, zipped in order."""
    base_paths, raw_paths = _compat_metadata(base).get("layer_map", []), _compat_metadata(raw).get("layer_map", [])
    if len(base_paths) != len(raw_paths):
        raise InputError(
            f"the dumps' set_layer_map lists differ in length ({len(base_paths)} and {len(raw_paths)} layers); "
            "give both models' corresponding layers, in the same order"
        )
    return list(zip(base_paths, raw_paths, strict=True))


def _compat_metadata(dump: Dump) -> dict[str, Any]:
    header = dump.ranks[min(dump.ranks)].header
    found: dict[str, Any] = header.get("metadata", {}).get(METADATA, {})
    return found


def _named(dump: Dump) -> Named:
    header = dump.ranks[min(dump.ranks)].header
    return Named(_compat_metadata(dump).get("name", header["model"]), dump.tree())


def check_dataloader(first_loader: Iterable[Any], second_loader: Iterable[Any], **kwargs: Any) -> bool:
    """Whether two data loaders give the same batches (``atol``, ``rtol``, ``compare_mode`` as in ``cfg``)."""
    settings = compare_cfg(kwargs)
    for index, (first, second) in enumerate(zip_longest(first_loader, second_loader, fillvalue=None)):
        if first is None or second is None:
            log(f"check dataloader failed!!! the loaders give different numbers of batches (from batch {index})")
            return False
        for position, (left, right) in enumerate(zip_longest(_arrays(first), _arrays(second), fillvalue=None)):
            if left is None or right is None:
                verdict_ok, note = False, "the batches hold different numbers of arrays"
            else:
                verdict = compare_arrays(
                    left, right, float(settings["atol"]), float(settings["rtol"]), Mode(settings["compare_mode"])
                )
                verdict_ok, note = verdict.ok, verdict.note or f"max abs diff {verdict.max_abs:.3g}"
            if not verdict_ok:
                log(f"check dataloader failed!!! batch {index}, array {position}: {note}")
                return False
    return True


def _arrays(batch: Any) -> list[np.ndarray]:
    """The arrays of a batch: tensors, arrays and numbers, depth first through tuples, lists and dicts."""
    if isinstance(batch, dict):
        return [array for value in batch.values() for array in _arrays(value)]
    if isinstance(batch, (list, tuple)):
        return [array for value in batch for array in _arrays(value)]
    if hasattr(batch, "detach"):  # a tensor that may need grad
        batch = batch.detach()
    if hasattr(batch, "cpu"):
        batch = batch.cpu()
    return [np.asarray(batch)]
