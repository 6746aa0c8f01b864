"""Comparing two dumps step by step, rank by rank or merged over the ranks of a sharded run, through a
layer map, without the models."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from padiff_graph.checks import preflight_trees
from padiff_graph.core.findings import Code, Finding
from padiff_graph.core.records import Severity, join_path
from padiff_graph.core.transforms import Shape, TensorPair, Transform
from padiff_graph.core.tree import descendants_of, tensor_dtypes
from padiff_graph.errors import DumpError, InputError, NotComparableError
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.match import match_trees
from padiff_graph.offline.format import RECORD_STAGES
from padiff_graph.offline.reader import Dump, load_dump
from padiff_graph.offline.shards import RunStep, has_layouts
from padiff_graph.run.activations import builtin_activations, offline_left_out
from padiff_graph.run.containers import unlike_containers, with_corresponding_containers
from padiff_graph.run.fused_pairs import FusedPair, TensorPlaces, fused_pairs, joined, with_fused
from padiff_graph.run.numerics import Tolerance, compare_tensor_pair
from padiff_graph.run.options import parse_mode, parse_tolerance
from padiff_graph.run.results import Comparison, DiffReport, build_report
from padiff_graph.run.statistics import compare_running_variance, unlike_running_variances


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
    """Compare two dumps step by step, through ``layer_map`` (proposed if omitted).

    Two runs split alike (the same ranks, no placements recorded) are
    compared rank by rank. A sharded run (placements recorded inside a
    distributed engine) or runs over different ranks are merged first, each
    record by its placements (:mod:`padiff_graph.offline.shards`); a record
    that cannot be merged without guessing is listed in the report's
    ``not_comparable``, never compared.

    ``steps``, ``ranks`` (rank by rank only) and ``stages`` (of ``input``,
    ``forward``, ``backward``, ``loss``, ``grad``, ``weights``) narrow the
    comparison; by default every step (and rank) both dumps hold is
    compared, every record of them.

    Raises:
        DumpError: a dump is missing, incomplete or damaged (each file is checked before it is
            compared: see ``docs/dump.md``), or the two share no step and rank.
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
    fused = fused_pairs(layer_map)
    layer_map = with_corresponding_containers(layer_map, base_tree, raw_tree)
    activations, unapplied = builtin_activations(layer_map, base_tree, raw_tree)
    not_compared = (
        unlike_containers(layer_map, base_tree, raw_tree) + unapplied + offline_left_out(activations, layer_map)
    )
    left_out = {(pair.base, pair.raw) for pair in not_compared}
    layer_pairs = [pair for pair in layer_map.active_pairs() if (pair.base, pair.raw) not in left_out]
    tolerance = Tolerance.chosen(atol, rtol, compare_mode, tensor_dtypes(base_tree) | tensor_dtypes(raw_tree))
    merged = set(base.ranks) != set(raw.ranks) or has_layouts(base) or has_layouts(raw)
    units = _merged_steps(base, raw, steps, ranks) if merged else _rank_steps(base, raw, steps, ranks)
    comparisons: list[Comparison] = []
    unproduced: list[str] = []
    not_comparable: list[str] = []
    for rank, step, base_folders, raw_folders in units:
        with RunStep(base_folders) as base_step, RunStep(raw_folders) as raw_step:
            found, missing, unmerged = _compare_step(
                base_step, raw_step, layer_map, (layer_pairs, fused), tolerance, step, kinds
            )
        suffix = "" if rank is None else f" (rank {rank})"
        comparisons += found
        unproduced += [entry + suffix for entry in missing]
        not_comparable += [entry + suffix for entry in unmerged]
    settings: dict[str, object] = {
        "atol": tolerance.atol,
        "rtol": tolerance.rtol,
        "tolerance_by_dtype": not tolerance.fixed,
        "mode": compare_mode.value,
        "offline": True,
        "steps": len({step for _, step, _, _ in units}),
    }
    if merged:
        settings["merged"] = {"base": sorted(base.ranks), "raw": sorted(raw.ranks)}
    else:
        settings["ranks"] = sorted({rank for rank, _, _, _ in units if rank is not None})
    report = build_report(
        comparisons,
        findings,
        layer_map,
        settings,
        with_fused(descendants_of(base_tree), fused),
        unproduced=unproduced,
        not_comparable=not_comparable,
        not_compared=not_compared,
    )
    return _stepped_on_own_gradients(report)


def _stepped_on_own_gradients(report: DiffReport) -> DiffReport:
    """``report``, its first divergence, when in the weights after a step of a tensor whose gradient agrees,
    saying what each optimizer, stepping on its own model's gradients, can make of their rounding noise."""
    first = report.first_divergence
    if first is None or first.stage != "weights":
        return report
    where = (first.step, first.base)
    failing = next(c for c in report.comparisons if not c.ok and c.kind == "weights" and (c.step, c.base) == where)
    tensor = failing.stage.partition(":")[2]
    same = [c.ok for c in report.comparisons if (c.step, c.base, c.stage) == (first.step, first.base, f"grad:{tensor}")]
    if not same or not all(same):
        return report
    why = (
        f"{tensor!r} differs after step {first.step} while its gradient agrees, and each dumped model stepped on "
        "its own gradients: an optimizer that scales each element (Adam) turns their rounding noise into steps up "
        "to its learning rate, so the optimizers may or may not differ"
    )
    hint = (
        "run the live diff (padiff_graph.diff with both optimizers), which steps both on the base's gradients; "
        "offline, only the first step before the optimizers compares the models alone "
        "(steps=[0], stages=('forward', 'backward', 'loss', 'grad'))"
    )
    divergence = replace(first, message=f"{first.message}; {why}")
    unsure = Finding(Code.AMBIGUOUS_DIVERGENCE, Severity.WARNING, first.base, first.raw, why, hint)
    return replace(
        report,
        first_divergence=divergence,
        divergences=[divergence, *report.divergences[1:]],
        findings=[*report.findings, unsure],
    )


#: (rank, or None for merged ranks; step; base folders by rank; raw folders by rank)
Unit = tuple[int | None, int, dict[int, Path], dict[int, Path]]


def _rank_steps(base: Dump, raw: Dump, steps: Collection[int] | None, ranks: Collection[int] | None) -> list[Unit]:
    """Step S of rank N of one dump against step S of rank N of the other (the runs are split alike, or not at all)."""
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
    return [
        (rank, step, {rank: base.ranks[rank].steps[step]}, {rank: raw.ranks[rank].steps[step]})
        for rank, step in sorted(shared, key=lambda item: (item[1], item[0]))
    ]


def _merged_steps(base: Dump, raw: Dump, steps: Collection[int] | None, ranks: Collection[int] | None) -> list[Unit]:
    """Step S of every rank of one run, merged, against the same of the other (a sharded run)."""
    if ranks is not None:
        raise InputError("ranks= narrows a rank-by-rank comparison; these dumps are sharded and compared merged")
    for found in (base, raw):
        world = max(int(rank.header.get("world_size", 1)) for rank in found.ranks.values())
        lacking = sorted(set(range(world)) - set(found.ranks))
        if lacking:
            raise DumpError(
                f"{found.root}: ranks {lacking} of the {world} that ran are missing; merging needs them all"
            )
    shared = sorted(
        step
        for step in set.intersection(*(set(rank.steps) for rank in [*base.ranks.values(), *raw.ranks.values()]))
        if steps is None or step in steps
    )
    if not shared:
        chosen = f" among steps {sorted(steps)}" if steps else ""
        raise DumpError(f"{base.root} and {raw.root} share no step that every rank recorded{chosen}")
    return [
        (
            None,
            step,
            {rank: found.steps[step] for rank, found in base.ranks.items()},
            {rank: found.steps[step] for rank, found in raw.ranks.items()},
        )
        for step in shared
    ]


def _compare_step(
    base: RunStep,
    raw: RunStep,
    layer_map: LayerMap,
    compared: tuple[list[LayerPair], list[FusedPair]],
    tolerance: Tolerance,
    step: int,
    stages: set[str],
) -> tuple[list[Comparison], list[str], list[str]]:
    """Compare one step of each run; also returns the base records the raw run lacks, and those not comparable.

    ``compared``: the pairs whose layer records are compared, and the fused pairs (compared at
    the record of their first raw layer); tensors go through every active pair.
    """
    layer_pairs, fused = compared
    first_raw = {pair.raw[0]: pair for pair in fused}
    places = TensorPlaces(fused)
    base_records = {entry["name"]: entry for entry in base.records}
    by_raw_path = {pair.raw: pair for pair in layer_pairs}
    losses = _merged_losses(base, raw, base_records, tolerance)  # first: output gradients depend on them
    comparisons: list[Comparison] = []
    not_comparable: list[str] = []
    used: set[str] = set()
    where = f"step {step}, " if step else ""
    variances = unlike_running_variances(layer_map)
    sizes = {  # raw path -> elements of its first output: the batch its statistics come from
        e["path"]: int(np.prod(e["shape"]))
        for e in raw.records
        if (e["stage"], e["call"], e["index"]) == ("forward", 0, 0)
    }
    for entry, link in _through(raw.records, layer_map.active_pairs()):  # as the live diff: no ignored subtree
        stage, path, call, index = entry["stage"], entry["path"], entry["call"], entry["index"]
        tensor: TensorPair | None = None
        if stage not in stages:
            continue
        if link is not None:
            pair, tensor = link
            base_path, raw_path, label = places.place(pair, tensor)
            label = f"{stage}:{label}"
            name, call, index = f"{stage}:{join_path(pair.base, tensor.base)}:0:0", 0, pair.tensors.index(tensor)
            what = f"{stage} {join_path(pair.base, tensor.base)} ({where.rstrip(', ') or 'step 0'})"
        elif stage in ("forward", "backward") and path in first_raw:
            try:
                comparisons += _fused_record(base, raw, first_raw[path], entry, base_records, tolerance, step, used)
            except NotComparableError as error:
                not_comparable.append(f"{stage} {first_raw[path].base_name} ({where}call {call}): {error}")
            continue
        elif stage == "loss" or path in by_raw_path:
            base_path, raw_path = ("", "") if stage == "loss" else (by_raw_path[path].base, path)
            name, label = f"{stage}:{base_path}:{call}:{index}", stage
            what = f"{stage} {base_path or '<root>'} ({where}call {call})"
        else:
            continue
        if name not in base_records:
            continue
        used.add(name)
        dtypes = (base_records[name]["dtype"], entry["dtype"])
        try:
            if stage == "loss":
                verdict = tolerance.verdict(*_found(losses[name]), *dtypes)
            elif tensor is not None:
                base_value = base.array(name, _base_shape(tensor.transform, raw.shape(entry["name"])))
                raw_value = raw.array(entry["name"], _raw_shape(tensor.transform, base_value.shape))
                verdict = compare_tensor_pair(tensor, base_value, raw_value, tolerance, *dtypes)
                if stage == "weights" and (pair.base, tensor.base) in variances and pair.raw in sizes:
                    per_channel = sizes[pair.raw] // max(base_value.size, 1)
                    verdict = compare_running_variance(tensor, base_value, raw_value, per_channel, tolerance, *dtypes)
            else:
                base_value = base.array(name, raw.shape(entry["name"]))
                raw_value = raw.array(entry["name"], base_value.shape)
                verdict = tolerance.verdict(base_value, raw_value, *dtypes, gradient=stage == "backward")
        except NotComparableError as error:
            not_comparable.append(f"{what}: {error}")
            continue
        comparisons.append(Comparison(base_path, raw_path, label, call, index, verdict, step))
    paired_base = {pair.base for pair in by_raw_path.values()}
    missing = sorted(
        {
            f"{e['stage']} {e['path']} ({where}call {e['call']})"
            for e in base.records
            if e["name"] not in used
            and e["stage"] in ("forward", "backward")
            and e["stage"] in stages
            and e["path"] in paired_base
        }
    )
    return comparisons, missing, not_comparable


def _through(
    records: list[dict[str, Any]], pairs: list[LayerPair]
) -> Iterator[tuple[dict[str, Any], tuple[LayerPair, TensorPair] | None]]:
    """Each record with the tensor pair of ``pairs`` it is compared through: a layer's record with
    ``None``, a parameter gradient or weight once per tensor pair writing it (a fused tensor's
    parts), none when no pair writes it (not compared)."""
    tensor_pairs: dict[str, list[tuple[LayerPair, TensorPair]]] = {}
    for pair in pairs:
        for tensor in pair.tensors:
            if not tensor.has_constant:
                tensor_pairs.setdefault(join_path(pair.raw, tensor.raw), []).append((pair, tensor))
    for entry in records:
        links = tensor_pairs.get(entry["path"], []) if entry["stage"] in ("grad", "weights") else [None]
        for link in links:
            yield entry, link


Losses = tuple[np.ndarray, np.ndarray] | NotComparableError


def _merged_losses(
    base: RunStep, raw: RunStep, base_records: dict[str, dict[str, Any]], tolerance: Tolerance
) -> dict[str, Losses]:
    """Each loss record of both runs, merged (what merging an output gradient needs, whatever is compared)."""
    found: dict[str, Losses] = {}
    for entry in raw.records:
        name = entry["name"]  # ``loss::call:index`` on both sides
        if entry["stage"] != "loss" or name not in base_records:
            continue
        try:
            found[name] = _losses(base, raw, name, tolerance, (base_records[name]["dtype"], entry["dtype"]))
        except NotComparableError as error:
            found[name] = error
    return found


def _found(losses: Losses) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(losses, NotComparableError):
        raise losses
    return losses


def _losses(
    base: RunStep, raw: RunStep, name: str, tolerance: Tolerance, dtypes: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """Both runs' loss ``name``; where one run's ranks each computed their own, the other's says how they combine."""
    try:
        base_value = base.loss(name)
    except NotComparableError:
        raw_value = raw.loss(name)
        return base.loss(name, raw_value, lambda ours, theirs: tolerance.verdict(ours, theirs, *dtypes).ok), raw_value
    return base_value, raw.loss(name, base_value, lambda ours, theirs: tolerance.verdict(theirs, ours, *dtypes).ok)


def _base_shape(transform: Transform, raw_shape: Shape | None) -> Shape | None:
    """The base tensor's shape that becomes ``raw_shape`` (the evidence for merging an unplaced base tensor)."""
    if raw_shape is None or transform.base_index is not None or transform.raw_index is not None:
        return None
    try:
        return transform.inverse().output_shape(raw_shape)
    except ValueError:
        return None


def _raw_shape(transform: Transform, base_shape: Shape) -> Shape | None:
    """The raw tensor's shape ``transform`` makes of the base tensor, where it writes the whole raw tensor."""
    if transform.raw_index is not None:
        return None
    try:
        return transform.output_shape(base_shape)
    except ValueError:
        return None


def _fused_record(
    base: RunStep,
    raw: RunStep,
    fused: FusedPair,
    entry: dict[str, Any],
    base_records: dict[str, dict[str, Any]],
    tolerance: Tolerance,
    step: int,
    used: set[str],
) -> list[Comparison]:
    """The fused pair's comparison at ``entry``'s stage, call and position (its parts joined), if both runs hold it.

    Raises:
        NotComparableError: a record cannot be merged over its ranks.
    """
    stage, call, index = entry["stage"], entry["call"], entry["index"]
    base_names, raw_names = ([f"{stage}:{path}:{call}:{index}" for path in side] for side in (fused.base, fused.raw))
    raw_records = {record["name"] for record in raw.records}
    if not all(name in base_records for name in base_names) or not all(name in raw_records for name in raw_names):
        return []
    base_values, raw_values = [base.array(name) for name in base_names], [raw.array(name) for name in raw_names]
    if fused.base_fused:
        base_value, raw_value = base_values[0], joined(base_values[0].shape, raw_values)
    else:
        base_value, raw_value = joined(raw_values[0].shape, base_values), raw_values[0]
    used.update(base_names)
    dtypes = (base_records[base_names[0]]["dtype"], entry["dtype"])
    verdict = tolerance.verdict(base_value, raw_value, *dtypes, gradient=stage == "backward")
    return [Comparison(fused.base_name, fused.raw_name, stage, call, index, verdict, step)]
