"""The Python API: one function per pipeline stage, models in, records out.

Example::

    import padiff_graph as pg

    layer_map = pg.suggest_map(torch_model, paddle_model)
    for finding in pg.preflight(torch_model, paddle_model, layer_map):
        print(finding.code, finding.base, finding.raw, finding.hint)
    pg.assign_weights(torch_model, paddle_model, layer_map)
    report = pg.diff(torch_model, paddle_model, {"x": x}, layer_map)
    print(report.ok, report.first_divergence)
"""

from __future__ import annotations

from typing import Any

from padiff_graph.compare import Mode, default_tolerance
from padiff_graph.diff import (
    DiffReport,
    Divergence,
    Tolerance,
    first_divergence,
    random_layers_disabled,
    run_and_compare,
)
from padiff_graph.errors import InputError
from padiff_graph.frameworks import adapter_for
from padiff_graph.inits import expand_inits
from padiff_graph.inputs import prepare, split_inputs
from padiff_graph.knowledge.conversions import DEFAULT_REGISTRY, ConversionRegistry
from padiff_graph.layermap import LayerMap
from padiff_graph.match import MatchOptions, match_trees
from padiff_graph.preflight import Code, Finding, preflight_trees
from padiff_graph.progress import task
from padiff_graph.records import TensorKind
from padiff_graph.runtime import paused_gc
from padiff_graph.tracing import trace_call_order
from padiff_graph.tree import ModelTree, build_tree
from padiff_graph.weights import AssignReport, copy_weights, raise_for_blocking


def export_tree(model: Any, inputs: Any = None) -> ModelTree:
    """The model's layer tree; with ``inputs``, also the forward call order.

    Works on models built without memory (``torch.device("meta")``,
    ``paddle.LazyGuard()``) when no inputs are given.
    """
    return _export(model, inputs, "traced")


def _export(model: Any, inputs: Any, side: str) -> ModelTree:
    adapter = adapter_for(model)
    call_order = None
    if inputs is not None:
        with task(f"tracing the {side} model"):
            call_order = trace_call_order(adapter, model, prepare(adapter, model, inputs), side)
    with task(f"exporting the {side} model"), paused_gc():
        return build_tree(adapter.export(model), call_order, adapter.shared_layers(model))


def suggest_map(
    base: Any,
    raw: Any,
    inputs: Any = None,
    *,
    options: MatchOptions | None = None,
    registry: ConversionRegistry = DEFAULT_REGISTRY,
) -> LayerMap:
    """Propose which raw layer each base layer is, and how their tensors pair.

    Args:
        base, raw: torch or paddle models (weights flow base -> raw).
        inputs: optional inputs (see :mod:`padiff_graph.inputs`); tracing
            one forward run lets call order separate same-shaped siblings.
    """
    return match_trees(*export_pair(base, raw, inputs), options, registry)


def preflight(base: Any, raw: Any, layer_map: LayerMap | None = None, inputs: Any = None) -> list[Finding]:
    """Findings about the pair before any weight is copied.

    Raises:
        LayerMapError: ``layer_map`` names layers or tensors the models lack.
    """
    base_tree, raw_tree = export_pair(base, raw, inputs)
    if layer_map is None:
        layer_map = match_trees(base_tree, raw_tree)
    return preflight_trees(base_tree, raw_tree, expand_inits(base_tree, raw_tree, layer_map, DEFAULT_REGISTRY))


def export_pair(base: Any, raw: Any, inputs: Any = None) -> tuple[ModelTree, ModelTree]:
    """Both models' trees; ``inputs`` as for :func:`suggest_map`."""
    base_inputs, raw_inputs = split_inputs(inputs) if inputs is not None else (None, None)
    return _export(base, base_inputs, "base"), _export(raw, raw_inputs, "raw")


def assign_weights(base: Any, raw: Any, layer_map: LayerMap | None = None) -> AssignReport:
    """Copy base's weights into raw through the map, converting layouts, then verify.

    Raises:
        AssignError: a pair cannot be converted (names both layers and the
            missing conversion), or the copy did not verify.
        LayerMapError: ``layer_map`` names layers or tensors the models lack.
    """
    base_tree, raw_tree = export_pair(base, raw, None)
    if layer_map is None:
        layer_map = match_trees(base_tree, raw_tree)
    layer_map = expand_inits(base_tree, raw_tree, layer_map, DEFAULT_REGISTRY)
    raise_for_blocking(preflight_trees(base_tree, raw_tree, layer_map))
    return copy_weights(base, raw, layer_map, adapter_for(base), adapter_for(raw))


def diff(
    base: Any,
    raw: Any,
    inputs: Any,
    layer_map: LayerMap | None = None,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    mode: str = "strict",
    assign: bool = True,
    backward: bool = True,
    random_ops: str = "error",
) -> DiffReport:
    """Copy weights, run both models on the same inputs and name the first diverging layer.

    Args:
        inputs: a dict of numpy arrays (or a list, or one array) used for both
            models, or a pair ``(base_inputs, raw_inputs)``.
        layer_map: the map to use; proposed by :func:`suggest_map` if omitted.
        atol, rtol: tolerances; default by the models' precision (fp32: 1e-5, 1e-4).
        mode: ``"strict"`` (elementwise) or ``"mean"`` (compare means).
        assign: copy base weights into raw first.
        backward: also compare gradients (loss: the mean of the outputs).
        random_ops: ``"error"`` stops at random layers in training mode,
            ``"disable"`` switches them off for the run and back after.

    Raises:
        InputError: inputs that do not fit ``forward``, or a bad option.
        AssignError, LayerMapError: see :func:`assign_weights`.
        ModelRunError: a model's forward raised (names the last layer entered).
    """
    try:
        compare_mode = Mode(mode)
    except ValueError:
        raise InputError(f"mode must be 'strict' or 'mean', not {mode!r}") from None
    if random_ops not in ("error", "disable"):
        raise InputError(f"random_ops must be 'error' or 'disable', not {random_ops!r}")
    base_adapter, raw_adapter = adapter_for(base), adapter_for(raw)
    base_inputs, raw_inputs = split_inputs(inputs)
    base_arguments = prepare(base_adapter, base, base_inputs)
    raw_arguments = prepare(raw_adapter, raw, raw_inputs)
    with task("tracing both models"):
        base_order = trace_call_order(base_adapter, base, base_arguments, "base")
        raw_order = trace_call_order(raw_adapter, raw, raw_arguments, "raw")
        base_tree = build_tree(base_adapter.export(base), base_order, base_adapter.shared_layers(base))
        raw_tree = build_tree(raw_adapter.export(raw), raw_order, raw_adapter.shared_layers(raw))
    if layer_map is None:
        layer_map = match_trees(base_tree, raw_tree)
    layer_map = expand_inits(base_tree, raw_tree, layer_map, DEFAULT_REGISTRY)
    findings = preflight_trees(base_tree, raw_tree, layer_map)
    default_atol, default_rtol = default_tolerance(*_float_dtypes(base_tree), *_float_dtypes(raw_tree))
    tolerance = Tolerance(
        atol if atol is not None else default_atol, rtol if rtol is not None else default_rtol, compare_mode
    )
    # without a trainable tensor on either side there is no gradient to compare (and no loss to take)
    backward = backward and (_trainable(base_tree) or _trainable(raw_tree))
    settings = {"atol": tolerance.atol, "rtol": tolerance.rtol, "mode": compare_mode.value, "backward": backward}
    random = [f for f in findings if f.code is Code.RANDOM_OP]
    if random and random_ops == "error":
        first = random[0]
        stopped = Divergence(first.base or "", first.raw or "", "preflight", f"{first.message}; {first.hint}")
        return DiffReport(False, stopped, [], findings, layer_map, settings)
    if assign:
        raise_for_blocking(findings)
        with task("copying weights base -> raw"):
            copy_weights(base, raw, layer_map, base_adapter, raw_adapter)
    with random_layers_disabled(base_adapter, base, base_tree), random_layers_disabled(raw_adapter, raw, raw_tree):
        comparisons, unproduced = run_and_compare(
            (base_adapter, base, base_arguments), (raw_adapter, raw, raw_arguments), layer_map, tolerance, backward
        )
    divergence, contained = first_divergence(comparisons)
    return DiffReport(divergence is None, divergence, comparisons, findings, layer_map, settings, unproduced, contained)


def _float_dtypes(tree: ModelTree) -> set[str]:
    return {tensor.dtype for path in tree.nodes for tensor in tree.nodes[path]["tensors"]}


def _trainable(tree: ModelTree) -> bool:
    kinds = (TensorKind.PARAMETER, TensorKind.EMBEDDING)
    return any(tensor.kind in kinds for path in tree.nodes for tensor in tree.nodes[path]["tensors"])
