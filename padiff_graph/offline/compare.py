"""Comparing two dumps step by step and rank by rank, through a layer map, without the models."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from padiff_graph.checks import preflight_trees
from padiff_graph.core.records import join_path
from padiff_graph.core.tree import descendants_of, tensor_dtypes
from padiff_graph.errors import DumpError, InputError
from padiff_graph.layermap import LayerMap
from padiff_graph.match import match_trees
from padiff_graph.offline.format import RECORD_STAGES
from padiff_graph.offline.reader import StepArrays, load_dump, read_manifest
from padiff_graph.run.numerics import Tolerance, compare_tensor_pair
from padiff_graph.run.options import parse_mode, parse_tolerance
from padiff_graph.run.results import Comparison, DiffReport, build_report


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
    compare_mode = parse_mode(mode)
    atol, rtol = parse_tolerance("atol", atol), parse_tolerance("rtol", rtol)
    kinds = set(RECORD_STAGES if stages is None else stages)
    unknown = kinds - set(RECORD_STAGES)
    if unknown:
        raise InputError(f"stages must be among {', '.join(RECORD_STAGES)}, not {sorted(unknown)}")
    base, raw = load_dump(base_dir), load_dump(raw_dir)
    base_tree, raw_tree = base.tree(), raw.tree()
    if layer_map is None:
        layer_map = match_trees(base_tree, raw_tree)
    findings = preflight_trees(base_tree, raw_tree, layer_map)
    tolerance = Tolerance.chosen(atol, rtol, compare_mode, tensor_dtypes(base_tree) | tensor_dtypes(raw_tree))
    shared = [
        (rank, step)
        for rank in sorted(base.ranks)
        if rank in raw.ranks
        for step in base.ranks[rank].steps
        if step in raw.ranks[rank].steps and (steps is None or step in steps) and (ranks is None or rank in ranks)
    ]
    if not shared:
        chosen = "".join(
            f" among {what} {sorted(values)}" for what, values in (("steps", steps), ("ranks", ranks)) if values
        )
        raise DumpError(f"{base.root} and {raw.root} share no step and rank to compare{chosen}")
    comparisons: list[Comparison] = []
    unproduced: list[str] = []
    for rank, step in sorted(shared, key=lambda item: (item[1], item[0])):
        found, missing = _compare_step(
            base.ranks[rank].steps[step], raw.ranks[rank].steps[step], layer_map, tolerance, step, kinds
        )
        comparisons += found
        unproduced += [f"{entry} (rank {rank})" for entry in missing]
    settings = {
        "atol": tolerance.atol,
        "rtol": tolerance.rtol,
        "tolerance_by_dtype": not tolerance.fixed,
        "mode": compare_mode.value,
        "offline": True,
        "ranks": sorted({rank for rank, _ in shared}),
        "steps": len({step for _, step in shared}),
    }
    return build_report(comparisons, findings, layer_map, settings, descendants_of(base_tree), unproduced=unproduced)


def _compare_step(
    base_folder: Path, raw_folder: Path, layer_map: LayerMap, tolerance: Tolerance, step: int, stages: set[str]
) -> tuple[list[Comparison], list[str]]:
    """Compare one step folder of each dump; also returns the base records the raw dump lacks."""
    base_manifest, raw_manifest = read_manifest(base_folder), read_manifest(raw_folder)
    base_records = {entry["name"]: entry for entry in base_manifest["records"]}
    active = layer_map.active_pairs()  # what the live diff copies and compares: no ignored subtree
    by_raw_path = {pair.raw: pair for pair in active}
    tensor_pairs = {
        join_path(pair.raw, tensor.raw): (pair, tensor)
        for pair in active
        for tensor in pair.tensors
        if not tensor.has_constant
    }
    comparisons: list[Comparison] = []
    used: set[str] = set()
    with (
        StepArrays(base_folder, base_manifest["records"]) as base_arrays,
        StepArrays(raw_folder, raw_manifest["records"]) as raw_arrays,
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
                dtypes = (base_records[name]["dtype"], entry["dtype"])
                verdict = compare_tensor_pair(tensor, base_arrays[name], raw_arrays[entry["name"]], tolerance, *dtypes)
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
            dtypes = (base_records[name]["dtype"], entry["dtype"])
            verdict = tolerance.verdict(
                base_arrays[name], raw_arrays[entry["name"]], *dtypes, gradient=stage == "backward"
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
