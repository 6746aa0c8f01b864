"""The Python API: one function per pipeline stage, models in, records out.

Each function reads as the pipeline it runs: export both models as trees,
match them into a layer map, check the map, copy weights through it, run
both models side by side and report. The stages live in their own packages
(:mod:`padiff_graph.frameworks`, :mod:`~padiff_graph.match`,
:mod:`~padiff_graph.checks`, :mod:`~padiff_graph.assign`,
:mod:`~padiff_graph.run`); this module only chains them.

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

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from padiff_graph.assign.inits import expand_inits
from padiff_graph.assign.probe import probe_layouts, probe_with_inputs
from padiff_graph.assign.verify import compare_outputs
from padiff_graph.assign.weights import AssignReport, copy_weights, raise_for_blocking
from padiff_graph.checks import preflight_trees
from padiff_graph.core.findings import Code, Finding
from padiff_graph.core.progress import task
from padiff_graph.core.runtime import run_sides
from padiff_graph.core.tree import ModelTree, descendants_of, has_trainable, tensor_dtypes
from padiff_graph.frameworks import adapter_for, side_beside, worker_side
from padiff_graph.frameworks.export import export_model, export_pair, export_prepared
from padiff_graph.frameworks.inputs import InputPair, StepInputs
from padiff_graph.knowledge.apis import API_EQUIVALENTS, names_for
from padiff_graph.knowledge.conversions import ConversionRegistry
from padiff_graph.knowledge.families import random_in_training
from padiff_graph.knowledge.registry import DEFAULT_REGISTRY
from padiff_graph.layermap import LayerMap
from padiff_graph.match import MatchOptions, match_trees
from padiff_graph.run.activations import builtin_activations, records_skipped
from padiff_graph.run.confirm import (
    after_first_step,
    confirmed,
    rechecked,
    rescued,
    settled_flips,
    unreplayed,
    unsure,
)
from padiff_graph.run.containers import unlike_containers, with_corresponding_containers
from padiff_graph.run.engine import Plan, Side, autocast_findings, run_diff
from padiff_graph.run.fused_pairs import fused_pairs, with_fused
from padiff_graph.run.kept_calls import KeptCalls
from padiff_graph.run.numerics import LOW_PRECISION, Mode, least_precise
from padiff_graph.run.options import DiffOptions
from padiff_graph.run.randomness import RandomOpFound, RandomWatch, random_layers_disabled
from padiff_graph.run.recurrent import RecurrentPlan
from padiff_graph.run.replay import Replays, statistics_kept
from padiff_graph.run.results import DiffReport, build_report, stopped_report
from padiff_graph.run.selection import compared_fused, compared_pairs
from padiff_graph.run.spill import DEFAULT_BUDGET_MIB
from padiff_graph.run.statistics import unlike_running_variances


def export_tree(model: Any, inputs: Any = None) -> ModelTree:
    """The model's layer tree; with ``inputs``, also the forward call order.

    Works on models built without memory (``torch.device("meta")``,
    ``paddle.LazyGuard()``) when no inputs are given.
    """
    return export_model(model, inputs)


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
        inputs: optional inputs (see :mod:`padiff_graph.frameworks.inputs`); tracing
            one forward run lets call order separate same-shaped siblings, and
            layouts shapes leave open are probed (:mod:`padiff_graph.assign.probe`).
        pinned: ``(base path, raw path)`` pairs you know; kept as given, and
            the layers inside each are matched to each other.
    """
    trees = export_pair(base, raw, inputs)
    return probe_with_inputs(base, raw, match_trees(*trees, options, registry, pinned), inputs, trees)


def preflight(base: Any, raw: Any, layer_map: LayerMap | None = None, inputs: Any = None) -> list[Finding]:
    """Findings about the pair before any weight is copied.

    Raises:
        LayerMapError: ``layer_map`` names layers or tensors the models lack.
    """
    return preflight_trees(*_mapped(base, raw, inputs, layer_map))


def assign_weights(
    base: Any, raw: Any, layer_map: LayerMap | None = None, inputs: Any = None, *, accept_guesses: bool = False
) -> AssignReport:
    """Copy base's weights into raw through the map, converting layouts, then verify.

    Args:
        inputs: optional inputs; one traced run of each model lets call order
            pair same-shaped layers that definition order alone cannot, and
            layouts shapes leave open are probed (:mod:`padiff_graph.assign.probe`).
        accept_guesses: copy through pairs and layouts the tool could only
            guess (``ambiguous-match``, ``ambiguous-transform``) instead of stopping.

    Returns:
        What was copied; with ``inputs``, ``report.outputs`` says whether both
        models, run once after the copy, agree.

    Raises:
        AssignError: a pair cannot be converted (names both layers and the
            missing conversion), only a guess pairs it, or the copy did not verify.
        LayerMapError: ``layer_map`` names layers or tensors the models lack.
    """
    base_tree, raw_tree, layer_map = _mapped(base, raw, inputs, layer_map)
    raise_for_blocking(preflight_trees(base_tree, raw_tree, layer_map), accept_guesses)
    report = copy_weights(base, raw, layer_map, adapter_for(base), adapter_for(raw))
    if inputs is not None:
        report.outputs = compare_outputs(base, raw, inputs)
    return report


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

    Every option is checked before either model is touched.

    Args:
        inputs: a dict of numpy arrays (or a list, or one array) used for both
            models, or inputs per model: :class:`~padiff_graph.InputPair` (any form
            each) or a tuple ``(base_inputs, raw_inputs)`` of two dicts; framework tensors
            work too. For several steps, an iterator (``iter(batches)``, a
            generator) gives each step's inputs; plain inputs are reused every step.
        layer_map: the map to use; proposed by :func:`suggest_map` if omitted.
        atol, rtol: elementwise tolerances. By default strict mode judges each layer's own error
            relative to its tensors' magnitude against the noise floor of the least precise of the
            models' weights, the inputs, ``amp`` and the two compared tensors
            (:data:`padiff_graph.run.numerics.NOISE_FLOORS`, docs/diff.md); mean mode uses
            :data:`padiff_graph.run.numerics.DEFAULT_TOLERANCES`.
        mode: ``"strict"`` (every element) or ``"mean"`` (compare means; keeps only means in memory).
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
            back beside the run (``padiff_graph.run.spill``). ``inf``: all in memory.

    Raises:
        InputError: inputs that do not fit ``forward``, or a bad option.
        AssignError, LayerMapError: see :func:`assign_weights`.
        ModelRunError: a model's forward raised (names the last layer entered).
    """
    options = DiffOptions.parse(
        mode=mode,
        atol=atol,
        rtol=rtol,
        random_ops=random_ops,
        steps=steps,
        diff_phase=diff_phase if backward else "forward",
        loss_fns=loss_fns,
        optimizers=optimizers,
        amp=amp,
        black_list=black_list,
        white_list=white_list,
        skip_wrap_layers=skip_wrap_layers,
        single_step=single_step,
        op_level=op_level,
        memory_budget_mib=memory_budget_mib,
        api_table=api_table,
    )
    return _diff(base, raw, inputs, layer_map, options, assign)


def _diff(
    base: Any, raw: Any, inputs: Any, layer_map: LayerMap | None, options: DiffOptions, assign: bool
) -> DiffReport:
    """:func:`diff` once its options are checked: trees, map, findings, copy, the hooked run, the report."""
    base_adapter, raw_adapter = adapter_for(base), adapter_for(raw)
    step_inputs = StepInputs([(base_adapter, base), (raw_adapter, raw)], inputs)
    worker = worker_side(base_adapter, base, raw_adapter, raw)
    with task("tracing both models"):  # beside each other where the frameworks allow it
        base_tree, raw_tree = run_sides(  # the worker side's activations decide whether the steps run beside
            partial(export_prepared, base, step_inputs.first[0], "base", measure=worker == "base"),
            partial(export_prepared, raw, step_inputs.first[1], "raw", measure=worker == "raw"),
            worker,
        )
    layer_map = _complete_map(base_tree, raw_tree, layer_map)
    trees = (base_tree, raw_tree)
    layer_map = probe_layouts((base_adapter, base), (raw_adapter, raw), layer_map, step_inputs.first[0], trees)
    findings = preflight_trees(base_tree, raw_tree, layer_map)
    input_dtypes = {base_adapter.dtype_name(t) for t in step_inputs.first[0].tensors(base_adapter)}
    input_dtypes |= {raw_adapter.dtype_name(t) for t in step_inputs.first[1].tensors(raw_adapter)}
    tolerance = options.tolerance(tensor_dtypes(base_tree) | tensor_dtypes(raw_tree) | input_dtypes)
    if options.backward and not (has_trainable(base_tree) or has_trainable(raw_tree)):
        options = options.forward_only()  # no trainable tensor on either side: no gradient, no loss to take
    recurrent = RecurrentPlan.of(base_tree, raw_tree) if options.backward else RecurrentPlan()
    if recurrent.blocked:
        options = options.forward_only()
    precision = {"base": least_precise(*tensor_dtypes(base_tree)), "raw": least_precise(*tensor_dtypes(raw_tree))}
    settings = {**options.settings(tolerance), **recurrent.settings(), "precision": precision}
    random = [finding for finding in findings if finding.code is Code.RANDOM_OP]
    if random and options.random_ops == "error":
        return stopped_report(random[0], findings, layer_map, settings)
    training = options.steps > 1 or options.optimizers != (None, None)
    if assign:
        raise_for_blocking(findings)
        with task("copying weights base -> raw"):
            copy_weights(base, raw, layer_map, base_adapter, raw_adapter)
    run_map = with_corresponding_containers(layer_map, base_tree, raw_tree)
    findings = [finding for finding in findings if not _paired_wrapper(finding, run_map)]
    activations, unapplied = builtin_activations(run_map, base_tree, raw_tree)
    not_compared = unlike_containers(run_map, base_tree, raw_tree) + unapplied
    layers = (base_adapter.named_layers(base), base_tree), (raw_adapter.named_layers(raw), raw_tree)
    pairs = compared_pairs(run_map, options.selection, *layers, not_compared)
    fused = compared_fused(fused_pairs(layer_map), options.selection, *layers)
    watch = RandomWatch(disable=options.random_ops == "disable")
    (base_loss, raw_loss), (base_optimizer, raw_optimizer) = options.loss_fns, options.optimizers
    base_side = Side(base_adapter, base, "base", base_loss, base_optimizer, options.amp[0], watch)
    raw_side = Side(raw_adapter, raw, "raw", raw_loss, raw_optimizer, options.amp[1], watch)
    containers = frozenset(path for path, below in descendants_of(base_tree).items() if path and below)
    plan = Plan(
        options.forward,
        options.backward,
        options.single_step,
        options.memory_budget_mib,
        activations,
        containers,
        unlike_running_variances(run_map),
        side_beside(base_adapter, base, base_tree, raw_adapter, raw, raw_tree),
    )
    rerun_differs = random_in_training(base_tree) or random_in_training(raw_tree)  # dropout in training mode
    sides = ((base_adapter, base, base_tree), (raw_adapter, raw, raw_tree))
    first: DiffReport | None = None
    if training and not options.single_step and not rerun_differs:
        with statistics_kept(*sides):  # the training run starts from the models as they were
            first = _first_step(base, raw, InputPair(*step_inputs.first), layer_map, options)
        if not first.ok:  # decided with replays and, where unsure, in single-step mode
            said = "the first step already differs: the optimizers did not step"
            return replace(first, settings={**first.settings, "first_step_only": said})
    replayable = not training and not rerun_differs  # a replay needs the weights and the outputs of the run
    kept = KeptCalls(base_adapter, raw_adapter) if replayable and not options.single_step else None
    table = API_EQUIVALENTS if options.api_table is None else options.api_table
    op_names = (names_for(base_adapter.name, table), names_for(raw_adapter.name, table)) if options.op_level else None
    try:
        with (
            random_layers_disabled(base_adapter, base, base_tree),
            random_layers_disabled(raw_adapter, raw, raw_tree),
            recurrent.applied((base_adapter, base), (raw_adapter, raw)),
        ):
            batches = step_inputs.batches(options.steps)
            outcome = run_diff(
                base_side,
                raw_side,
                batches,
                run_map,
                pairs,
                tolerance,
                plan,
                op_names,
                fused,
                kept=kept,
            )
    except RandomOpFound:
        found = watch.findings()
        return stopped_report(found[0], findings + found, layer_map, settings)
    settings["amp_inactive"] = outcome.amp_inactive
    recorded = outcome.comparisons
    if not options.single_step:  # layer inputs were recorded only to explain a divergence
        outcome.comparisons = [comparison for comparison in recorded if comparison.kind != "input"]
    skipped = records_skipped(activations, run_map, options.backward, tolerance.mode is Mode.MEAN)
    replays = Replays(base_side, raw_side, step_inputs.first, tolerance, raw_tree, activations, plan.beside, kept)
    rescuing = replayable and not options.single_step
    with statistics_kept(*sides):  # replays and the recheck run the models again, and leave no trace of it
        report = build_report(
            outcome.comparisons,
            findings + watch.findings() + autocast_findings(outcome.amp_inactive, options.amp),
            run_map,
            settings,
            with_fused(descendants_of(base_tree), fused),
            unproduced=outcome.unproduced,
            not_compared=not_compared + skipped + list(outcome.other_outputs.values()),
            not_fed=outcome.not_fed,
            contain=not options.single_step,
            inherit=not options.single_step,
            explain=None if outcome.ops is None else outcome.ops.explain,
            recorded=recorded,
            replayed=partial(rescued, replays, unlike=_unlike_classes(findings)) if rescuing else None,
        )
        if not replayable:
            if options.single_step:
                return report
            report = unreplayed(report, recorded, raw_tree, tolerance)
            return report if first is None else after_first_step(report, first, step_inputs.reused)
        if options.single_step:
            lower = LOW_PRECISION.intersection({*precision.values(), *options.amp_dtypes()})
            return settled_flips(report, replays) if lower else report
        report = confirmed(report, replays)  # a replay runs the base model again
        flip = unsure(report)
        if flip is None:
            return report
        single_step = replace(options, single_step=True)
        return rechecked(flip, _diff(base, raw, InputPair(*step_inputs.first), layer_map, single_step, assign=False))


def _first_step(base: Any, raw: Any, inputs: InputPair, layer_map: LayerMap, options: DiffOptions) -> DiffReport:
    """The first step alone, without optimizers, where its layers can be replayed: a training run's step 0
    judged as a one-step diff is (:func:`padiff_graph.run.confirm.after_first_step`)."""
    one_step = replace(options, steps=1, optimizers=(None, None))
    with task("checking the first step alone"):
        return _diff(base, raw, inputs, layer_map, one_step, assign=False)


def _unlike_classes(findings: list[Finding]) -> frozenset[tuple[str, str]]:
    """The layer pairs pre-flight found to be of different classes (``class-mismatch``)."""
    return frozenset((f.base, f.raw) for f in findings if f.code is Code.CLASS_MISMATCH and f.base and f.raw)


def _paired_wrapper(finding: Finding, layer_map: LayerMap) -> bool:
    """A ``wrap-layer`` finding about a layer ``layer_map`` pairs (a container paired by its contents)."""
    return finding.code is Code.WRAP_LAYER and (
        (finding.base is not None and layer_map.raw_of(finding.base) is not None)
        or (finding.raw is not None and layer_map.base_of(finding.raw) is not None)
    )


def _complete_map(base_tree: ModelTree, raw_tree: ModelTree, layer_map: LayerMap | None) -> LayerMap:
    """``layer_map`` (proposed by the matcher when ``None``) with every ``init`` naming a conversion expanded."""
    if layer_map is None:
        layer_map = match_trees(base_tree, raw_tree)
    return expand_inits(base_tree, raw_tree, layer_map, DEFAULT_REGISTRY)


def _mapped(base: Any, raw: Any, inputs: Any, layer_map: LayerMap | None) -> tuple[ModelTree, ModelTree, LayerMap]:
    """Both trees and the complete map, with the layouts ``inputs`` (if any) settle probed."""
    trees = export_pair(base, raw, inputs)
    return (*trees, probe_with_inputs(base, raw, _complete_map(*trees, layer_map), inputs, trees))
