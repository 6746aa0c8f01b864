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

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from padiff_graph.compare import DEFAULT_TOLERANCES, default_tolerance
from padiff_graph.diff import DiffReport, Divergence, Tolerance, all_divergences, first_divergence
from padiff_graph.engine import Plan, Side, run_diff
from padiff_graph.errors import InputError
from padiff_graph.frameworks import adapter_for
from padiff_graph.frameworks.base import FrameworkAdapter
from padiff_graph.inits import expand_inits
from padiff_graph.inputs import CallArguments, prepare, split_inputs
from padiff_graph.knowledge.apis import API_EQUIVALENTS, names_for
from padiff_graph.knowledge.conversions import DEFAULT_REGISTRY, ConversionRegistry
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.match import MatchOptions, match_trees
from padiff_graph.options import DiffOptions
from padiff_graph.preflight import Code, Finding, preflight_trees
from padiff_graph.progress import task
from padiff_graph.randomness import RandomOpFound, RandomWatch, random_layers_disabled
from padiff_graph.records import TensorKind
from padiff_graph.runtime import paused_gc
from padiff_graph.selection import selected_paths
from padiff_graph.spill import DEFAULT_BUDGET_MIB
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
    pinned: Sequence[tuple[str, str]] = (),
) -> LayerMap:
    """Propose which raw layer each base layer is, and how their tensors pair.

    Args:
        base, raw: torch or paddle models (weights flow base -> raw).
        inputs: optional inputs (see :mod:`padiff_graph.inputs`); tracing
            one forward run lets call order separate same-shaped siblings.
        pinned: ``(base path, raw path)`` pairs you know; kept as given, and
            the layers inside each are matched to each other.
    """
    return match_trees(*export_pair(base, raw, inputs), options, registry, pinned)


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
    loss_fns: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None,
    optimizers: tuple[Any, Any] | None = None,
    steps: int = 1,
    diff_phase: str = "both",
    single_step: bool = False,
    black_list: Iterable[Any] | None = None,
    white_list: Iterable[Any] | None = None,
    skip_wrap_layers: bool | None = None,
    amp: str | tuple[str | None, str | None] | None = None,
    op_level: bool = False,
    memory_budget_mib: float = DEFAULT_BUDGET_MIB,
    api_table: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
) -> DiffReport:
    """Copy weights, run both models on the same inputs and name the first diverging layer.

    Args:
        inputs: a dict of numpy arrays (or a list, or one array) used for both
            models, or a pair ``(base_inputs, raw_inputs)``; framework tensors
            work too. For several steps, an iterator (``iter(batches)``, a
            generator) gives each step's inputs; plain inputs are reused every step.
        layer_map: the map to use; proposed by :func:`suggest_map` if omitted.
        atol, rtol: tolerances; by default per dtype (:data:`padiff_graph.compare.DEFAULT_TOLERANCES`),
            the least precise of the models' weights, the inputs, ``amp`` and the two compared tensors.
        mode: ``"strict"`` (elementwise) or ``"mean"`` (compare means; keeps only means in memory).
        assign: copy base weights into raw first.
        backward: ``False`` is ``diff_phase="forward"``.
        random_ops: ``"error"`` stops at random layers in training mode and
            random calls (functional dropout, ``torch.rand``); ``"disable"``
            switches dropout off for the run and back after.
        loss_fns: ``(base_loss, raw_loss)``, each taking its model's output
            (default: the sum of the means of the floating outputs).
        optimizers: ``(base_optimizer, raw_optimizer)``: framework optimizers,
            or callables that step and clear the gradients.
        steps: training steps to run; each compares outputs, gradients and
            (with optimizers) the weights after the step.
        diff_phase: ``"forward"``, ``"backward"`` (gradients and weights only) or ``"both"``.
        single_step: feed each raw layer the base layer's inputs (and, in
            backward, the base's output gradients) so errors do not
            accumulate; every diverging layer is reported in ``report.divergences``.
        black_list, white_list: layers not to compare / the only layers to
            compare: instances or classes, bare or as ``(target, scope)`` with
            scope ``"self"``, ``"sublayers"`` or ``"all"`` (PaDiff's semantics).
        skip_wrap_layers: skip parameter-less wrapper layers (default: PaDiff's
            ``PADIFF_SIKP_WRAP_LAYER`` / ``PADIFF_SKIP_WRAP_LAYER`` variable).
        amp: run under automatic mixed precision (``"float16"``, ``"bfloat16"``),
            for both models or as ``(base_amp, raw_amp)``.
        op_level: also record framework API calls inside the compared layers
            and name the first differing one in each diverging layer.
        api_table: equivalent API names for ``op_level`` (default
            :data:`padiff_graph.knowledge.apis.API_EQUIVALENTS`).
        memory_budget_mib: base records held in memory up to this size while
            the raw model runs (strict mode holds about one model's activations);
            past it they wait in a spool file in ``TMPDIR``, written and read
            back beside the run (``padiff_graph.spill``). ``inf``: all in memory.

    Raises:
        InputError: inputs that do not fit ``forward``, or a bad option.
        AssignError, LayerMapError: see :func:`assign_weights`.
        ModelRunError: a model's forward raised (names the last layer entered).
    """
    options = DiffOptions.parse(
        mode=mode,
        random_ops=random_ops,
        steps=steps,
        diff_phase=diff_phase if backward else "forward",
        loss_fns=loss_fns,
        optimizers=optimizers,
        amp=amp,
        black_list=black_list,
        white_list=white_list,
        skip_wrap_layers=skip_wrap_layers,
    )
    base_adapter, raw_adapter = adapter_for(base), adapter_for(raw)
    later = inputs if isinstance(inputs, Iterator) else None
    if later is not None:
        inputs = _next_inputs(later, 0)

    def prepare_pair(step_inputs: Any) -> tuple[CallArguments, CallArguments]:
        base_inputs, raw_inputs = split_inputs(step_inputs)
        return prepare(base_adapter, base, base_inputs), prepare(raw_adapter, raw, raw_inputs)

    first = prepare_pair(inputs)
    with task("tracing both models"):
        base_order = trace_call_order(base_adapter, base, first[0], "base")
        raw_order = trace_call_order(raw_adapter, raw, first[1], "raw")
        base_tree = build_tree(base_adapter.export(base), base_order, base_adapter.shared_layers(base))
        raw_tree = build_tree(raw_adapter.export(raw), raw_order, raw_adapter.shared_layers(raw))
    if layer_map is None:
        layer_map = match_trees(base_tree, raw_tree)
    layer_map = expand_inits(base_tree, raw_tree, layer_map, DEFAULT_REGISTRY)
    findings = preflight_trees(base_tree, raw_tree, layer_map)
    context = {*_float_dtypes(base_tree), *_float_dtypes(raw_tree), *options.amp_dtypes()}
    context |= {
        adapter.dtype_name(t)
        for adapter, arguments in zip((base_adapter, raw_adapter), first, strict=True)
        for t in _tensors(adapter, arguments)
    }
    default_atol, default_rtol = default_tolerance(*context)
    tolerance = Tolerance(
        atol if atol is not None else default_atol,
        rtol if rtol is not None else default_rtol,
        options.mode,
        fixed=atol is not None or rtol is not None,
        context=tuple(sorted(d for d in context if d in DEFAULT_TOLERANCES)),
    )
    if options.diff_phase != "forward" and not (_trainable(base_tree) or _trainable(raw_tree)):
        # without a trainable tensor on either side there is no gradient to compare (and no loss to take)
        options = replace(options, diff_phase="forward")
    settings = options.settings(tolerance)
    settings["single_step"] = single_step
    random = [f for f in findings if f.code is Code.RANDOM_OP]
    if random and options.random_ops == "error":
        return _stopped(random[0], findings, layer_map, settings)
    if assign:
        raise_for_blocking(findings)
        with task("copying weights base -> raw"):
            copy_weights(base, raw, layer_map, base_adapter, raw_adapter)
    pairs = _compared_pairs(layer_map, options, (base_adapter, base, base_tree), (raw_adapter, raw, raw_tree))
    watch = RandomWatch(disable=options.random_ops == "disable")
    base_amp, raw_amp = options.amp
    base_side = Side(base_adapter, base, "base", options.loss_fns[0], options.optimizers[0], base_amp, watch)
    raw_side = Side(raw_adapter, raw, "raw", options.loss_fns[1], options.optimizers[1], raw_amp, watch)
    plan = Plan(
        forward=options.diff_phase != "backward",
        backward=options.diff_phase != "forward",
        single_step=single_step,
        memory_budget_mib=memory_budget_mib,
    )
    op_names = None
    if not memory_budget_mib >= 0:
        raise InputError(f"memory_budget_mib must be 0 or more, not {memory_budget_mib!r}")
    if op_level:
        table = API_EQUIVALENTS if api_table is None else api_table
        op_names = (names_for(base_adapter.name, table), names_for(raw_adapter.name, table))

    def batches() -> Iterator[tuple[CallArguments, CallArguments]]:
        yield first
        for step in range(1, options.steps):
            yield first if later is None else prepare_pair(_next_inputs(later, step))

    try:
        with random_layers_disabled(base_adapter, base, base_tree), random_layers_disabled(raw_adapter, raw, raw_tree):
            outcome = run_diff(base_side, raw_side, batches(), layer_map, pairs, tolerance, plan, op_names)
    except RandomOpFound:
        found = watch.findings()
        return _stopped(found[0], findings + found, layer_map, settings)
    findings += watch.findings()
    divergence, contained = first_divergence(outcome.comparisons, contain=not single_step)
    divergences = all_divergences(outcome.comparisons, _descendants(base_tree), contain=not single_step)
    if outcome.ops is not None:
        divergences = [outcome.ops.explain(d) for d in divergences]
        divergence = None if divergence is None else outcome.ops.explain(divergence)
    return DiffReport(
        divergence is None,
        divergence,
        outcome.comparisons,
        findings,
        layer_map,
        settings,
        outcome.unproduced,
        contained,
        divergences,
    )


def _next_inputs(batches: Iterator[Any], step: int) -> Any:
    try:
        return next(batches)
    except StopIteration:
        raise InputError(f"the inputs iterator ran out at step {step}; give one input set per step") from None


def _tensors(adapter: FrameworkAdapter, arguments: CallArguments) -> list[Any]:
    values = [*arguments.args, *arguments.kwargs.values()]
    return [value for value in values if adapter.is_tensor(value)]


def _stopped(finding: Finding, findings: list[Finding], layer_map: LayerMap, settings: dict[str, Any]) -> DiffReport:
    """The report of a run stopped by a random op: the finding is the divergence."""
    stopped = Divergence(finding.base or "", finding.raw or "", "preflight", f"{finding.message}; {finding.hint}")
    return DiffReport(False, stopped, [], findings, layer_map, settings, divergences=[stopped])


def _compared_pairs(
    layer_map: LayerMap,
    options: DiffOptions,
    base: tuple[FrameworkAdapter, Any, ModelTree],
    raw: tuple[FrameworkAdapter, Any, ModelTree],
) -> list[LayerPair]:
    """The map's pairs that the ignore lists, black/white lists and wrapper setting leave in."""
    selected = []
    for adapter, model, tree in (base, raw):
        layers = adapter.named_layers(model)
        selected.append(selected_paths(layers, tree, options.black_list, options.white_list, options.skip_wrap_layers))
    return [pair for pair in layer_map.active_pairs() if pair.base in selected[0] and pair.raw in selected[1]]


def _descendants(tree: ModelTree) -> dict[str, set[str]]:
    import networkx as nx

    return {path: set(nx.descendants(tree, path)) for path in tree.nodes}


def _float_dtypes(tree: ModelTree) -> set[str]:
    return {tensor.dtype for path in tree.nodes for tensor in tree.nodes[path]["tensors"]}


def _trainable(tree: ModelTree) -> bool:
    kinds = (TensorKind.PARAMETER, TensorKind.EMBEDDING)
    return any(tensor.kind in kinds for path in tree.nodes for tensor in tree.nodes[path]["tensors"])
