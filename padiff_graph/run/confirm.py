"""Checking the verdict by replays (:mod:`padiff_graph.run.replay`): a divergence's own error, its
caller's, or a discrete choice noise flipped.

A layer whose output differs either computes something else (its own error) or
received an input that differs, computed by code between compared layers (a
residual add left out, an activation called as a function in its caller's
forward). :func:`confirmed` replays the first divergence: if the raw layer alone
reproduces the base output (within its dtype's noise floor) the fault is in the
code that computed its input, and the divergence moves to the nearest compared
layer above it, and on up while each caller also agrees alone; otherwise the
replay's error is the layer's own, and the message says so.

A discrete choice near a tie (a router's top-k with a bfloat16 base) turns
rounding into another output. That shows two ways: the raw layer agrees alone
while its input agrees with the base's as noise does, or it differs alone but
both layers in float32 on the same inputs agree. Then the message says the tool
is not sure it is a fault of the port, an ``ambiguous-divergence`` finding names
the layer, and the diff compares again in single-step mode where it can
(:func:`rechecked`), since every layer after a flipped choice computes from other
data; single-step reports set such layers aside the same way
(:func:`settled_flips`). A pair pre-flight found of different classes
(``class-mismatch``) that agrees alone within the low precision's floor is judged
by its float32 replay instead.

Before that, the inherited records whose error grew most over the layers before
them (:func:`~padiff_graph.run.results.suspects`: a bug under a long bfloat16
base's noise) are replayed the same way; one whose raw layer alone differs over
the noise floor, while in float32 too, is the layer's own error after all
(:func:`rescued`).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np

from padiff_graph.core.findings import Code, Finding, Severity
from padiff_graph.core.records import quoted_path
from padiff_graph.core.tree import ModelTree
from padiff_graph.layermap import LayerMap
from padiff_graph.run.numerics import LOW_PRECISION, Tolerance, Verdict
from padiff_graph.run.replay import NOISE_GROWTH, Replays
from padiff_graph.run.results import (
    Comparison,
    DiffReport,
    Divergence,
    attribute,
    differing_input,
    divergence_of,
    own_by_replay,
    suspects,
)
from padiff_graph.run.rows import OTHER_TOKENS


def rescued(
    replays: Replays,
    comparisons: list[Comparison],
    unlike: frozenset[tuple[str, str]] = frozenset(),
) -> list[Comparison]:
    """``comparisons`` with each suspect inherited record (:func:`~padiff_graph.run.results.suspects`)
    failed where its raw layer, replayed alone on the base layer's inputs, differs over the noise floor,
    unless both layers run in float32 on those inputs agree (a container's own low-precision noise).
    One whose layer agrees alone while its input grew past the noise passed on keeps its verdict and
    gets the replay's (``replayed``): :func:`confirmed` says the verdict is not sure. A pair pre-flight
    found of different classes (``unlike``: ``class-mismatch``) that passed under a lower precision's
    floor fails where its two layers, run in float32 on the base layer's inputs, differ over float32's."""
    found: dict[int, Comparison] = {}
    suspected = [(c, before) for c, before in suspects(comparisons) if replays.replayable(c.raw)]
    replays.capture(comparison for comparison, _ in suspected)  # one run of each model for all of them
    for comparison, before in suspected:
        verdict = replays.replay(comparison)
        if verdict is None:
            continue
        if verdict.ok:  # the layer agrees alone; an input grown past the noise passed on leaves the verdict unsure
            if not replays.inputs_agree(comparison, before):
                found[id(comparison)] = replace(comparison, replayed=verdict)
            continue
        widened = replays.in_float32(comparison)
        if widened is None or not widened.ok:  # both layers agreeing in float32: the lower precision's noise
            found[id(comparison)] = own_by_replay(comparison, before, verdict)
    for comparison in _passed_unlike(comparisons, unlike):
        if id(comparison) in found or not replays.replayable(comparison.raw):
            continue
        exact = replays.in_float32(comparison, strict=True)
        if exact is not None and not exact.ok:
            found[id(comparison)] = _other_class(comparison, exact)
    return [found.get(id(comparison), comparison) for comparison in comparisons]


def _passed_unlike(comparisons: list[Comparison], unlike: frozenset[tuple[str, str]]) -> list[Comparison]:
    """The first step-0 forward record of each pair in ``unlike``, where it passed."""
    firsts: dict[tuple[str, str], Comparison] = {}
    for comparison in comparisons:
        if comparison.kind == "forward" and comparison.step == 0 and (comparison.base, comparison.raw) in unlike:
            firsts.setdefault((comparison.base, comparison.raw), comparison)
    return [comparison for comparison in firsts.values() if comparison.ok]


def _other_class(comparison: Comparison, exact: Verdict) -> Comparison:
    """A passing ``comparison`` of layers of different classes failed: in float32 on the base's inputs, they differ."""
    verdict = comparison.verdict
    note = (
        f"its error is {verdict.scaled:.1e} of its magnitude (max abs diff {verdict.max_abs:.3g}), within this "
        f"dtype's noise, but run in float32 on the base layer's inputs the two layers differ by {exact.scaled:.1e}, "
        f"over float32's ({exact.floor:.0e}): pre-flight found layers of different classes here (class-mismatch)"
    )
    return replace(comparison, verdict=replace(verdict, ok=False, inherited=False, note=note), replayed=exact)


def confirmed(report: DiffReport, replays: Replays) -> DiffReport:
    """``report`` with its first (forward, step 0) divergence checked by a replay of that layer alone
    (not where the raw layer would change or randomise in the replay: training-mode statistics, dropout)."""
    first = report.first_divergence
    if first is None:
        return _input_grown(report)
    if first.stage != "forward" or first.step != 0 or first.base == "":
        return report
    if not replays.replayable(first.raw):
        return report
    failing = _failing_forward(report, first.base)
    if failing is None or failing.replayed is not None:
        return report  # already replayed (:func:`rescued`): its own error
    verdict = replays.replay(failing)
    if verdict is None:
        return report
    if verdict.ok and _unlike_classes(report, first):
        exact = replays.in_float32(failing, strict=True)
        if exact is not None and not exact.ok:
            own = (
                f"; given the base layer's inputs the raw layer alone differs by {verdict.scaled:.1e} of its "
                f"magnitude, within this dtype's noise, but run in float32 on those inputs by {exact.scaled:.1e}, "
                f"over float32's ({exact.floor:.0e}): pre-flight found layers of different classes here "
                "(class-mismatch)"
            )
            return _first(report, replace(first, message=divergence_of(failing).message + own))
    before = _largest_before(report.comparisons, failing)
    flipped = _flipped(replays, failing, verdict, before)
    if flipped is not None:
        return _with_flip(report, first, first.message + flipped)
    if not verdict.ok:
        own = f"; given the base layer's inputs, the raw layer alone differs by {verdict.scaled:.1e} of its magnitude"
        return _first(report, replace(first, message=first.message + own))
    unlike = {pair.base for pair in report.not_compared}
    called = replays.raw_tree.graph.get("call_order")
    callers = partial(
        _caller, layer_map=report.layer_map, unlike=unlike, called=None if called is None else set(called)
    )
    found = callers(first, failing, _agrees_alone(verdict))
    while (caller := _forward_record(report, found.base)) is not None and replays.replayable(found.raw):
        caller_verdict = replays.replay(caller)
        if caller_verdict is None:
            break
        before = _largest_before(report.comparisons, caller)
        flipped = _flipped(replays, caller, caller_verdict, before)
        if flipped is not None:  # the caller's choice (a top-k in its forward) gave its layers other rows
            return _with_flip(report, found, found.message + f"; at the caller{flipped}")
        if not caller_verdict.ok and _routed_under_noise(failing, replays.tolerance):
            return _with_flip(report, found, found.message + _ROUTED.format(caller_verdict.scaled))
        if not caller_verdict.ok or not found.base:
            break  # the caller alone differs: the code in its forward computes the input
        found = callers(found, caller, _agrees_alone(caller_verdict))  # it agrees alone too: its input came from above
    return _first(report, found)


def _agrees_alone(verdict: Verdict) -> str:
    return f"given the base layer's inputs the raw layer agrees ({verdict.scaled:.1e} of its magnitude)"


def unreplayed(report: DiffReport, recorded: list[Comparison], raw_tree: ModelTree, tolerance: Tolerance) -> DiffReport:
    """``report`` of a run whose layers cannot be replayed (several steps or an optimizer, or a random layer in
    training mode): a first forward divergence of a layer of one input that already differed, every layer
    before it agreeing, is named at its caller, whose forward computed that input (as :func:`confirmed`
    does after a replay; the layer itself is not run alone). A layer given other tokens than the base's,
    with one side in a lower precision whose rounding can flip the routing, is not sure
    (``ambiguous-divergence``): only a replay could tell."""
    first = report.first_divergence
    if first is None or not first.base:
        return report
    failing = next(
        (c for c in report.comparisons if (c.kind, c.step, c.base, c.ok) == ("forward", first.step, first.base, False)),
        None,
    )
    if failing is None:
        return report
    inputs = _inputs(recorded, failing)
    other_tokens = _routed(failing) or any(c.verdict.other_form for c in inputs)  # rows picked otherwise
    if LOW_PRECISION.intersection(tolerance.context) and other_tokens:
        message = (
            f"{first.message}; it got other tokens than the base's layer, and with one side in a lower precision "
            "rounding may have flipped the routing that chose them: a run of several steps or an optimizer "
            "cannot replay the layer to tell"
        )
        return _with_flip(report, first, message)
    if len(inputs) != 1 or other_tokens or differing_input(first, attribute(recorded)) is None:
        return report  # of several inputs one may differ in form only (a mask); an inherited input is no cause
    unlike = {pair.base for pair in report.not_compared}
    called = raw_tree.graph.get("call_order")
    evidence = "every layer before it agrees (the layer is not run alone in a run of several steps or an optimizer)"
    found = _caller(first, failing, evidence, report.layer_map, unlike, None if called is None else set(called))
    return _first(report, found)


def after_first_step(report: DiffReport, first: DiffReport, same_inputs: bool) -> DiffReport:
    """A training run's ``report``, given ``first``: its first step checked alone as a one-step diff (replays,
    and the single-step recheck), which agreed.

    Where that check agreed only once a choice rounding flipped was set aside (its ``ambiguous-divergence``
    finding), a divergence of the training run in that step follows from the flip. And where every step runs
    ``same_inputs``, a divergence in a later step (not in the weights after it) follows from the weights,
    which agreed after every step before: the same code agreed on the first step, so what differs is
    rounding carried through a choice the steps moved to a tie. Either way the runs part there, and the
    divergence and an ``ambiguous-divergence`` finding say so.
    """
    flip = unsure(first)
    divergence = report.first_divergence
    if divergence is None:
        return report
    if flip is not None and divergence.step == 0:
        where = f"base {quoted_path(flip.base or '')} / raw {quoted_path(flip.raw or '')}"
        said = (
            f"; the first step checked alone agrees once a choice that rounding flipped at {where} is set "
            "aside, so the training runs take other paths from that choice"
        )
        parted = _first(report, replace(divergence, message=divergence.message + said))
        settings = {**report.settings, "first_step": f"agrees apart from a flipped choice at {where}"}
        return replace(parted, findings=[*report.findings, replace(flip, hint=_PARTED)], settings=settings)
    if same_inputs and divergence.stage != "weights" and divergence.step > 0 and not _weights_differ(report):
        said = (
            "; the first step checked alone agrees, the weights agreed after every step before and each step runs "
            "the same inputs: the same code gives another result only through rounding carried into a choice "
            "(a router's top-k) that the steps moved to a tie"
        )
        parted = _with_flip(report, divergence, divergence.message + said, _PARTED)
        return replace(parted, settings={**report.settings, "first_step": "agrees"})
    return report


def _weights_differ(report: DiffReport) -> bool:
    """Whether the weights after a step before the first divergence's differ (an optimizer's doing)."""
    first = report.first_divergence
    step = 0 if first is None else first.step
    return any(not c.ok and c.kind == "weights" and c.step < step for c in report.comparisons)


_PARTED = (
    "nothing if step 0 is what you check: the first step alone agrees (a one-step diff); a run of several "
    "steps follows such a choice, so its later steps cannot be compared"
)


def _inputs(recorded: list[Comparison], call: Comparison) -> list[Comparison]:
    """The input records of the layer call that ``call`` (one of its records) belongs to."""
    return [c for c in recorded if (c.kind, c.step, c.base, c.call) == ("input", call.step, call.base, call.call)]


_ROUTED = (
    "; and the caller replayed alone differs too ({:.1e} of its magnitude), so either its routing code or a "
    "layer inside it is at fault, or noise in the lower precision flipped the routing and the fault is a layer's"
)


def _routed_under_noise(failing: Comparison, tolerance: Tolerance) -> bool:
    """Whether ``failing`` received other tokens than the base's layer (:data:`~padiff_graph.run.rows.OTHER_TOKENS`)
    in a run where one side computes in a lower precision, whose noise can flip a routing choice."""
    return bool(LOW_PRECISION.intersection(tolerance.context)) and _routed(failing)


def _routed(failing: Comparison) -> bool:
    return OTHER_TOKENS in (failing.verdict.note or "")


def _input_grown(report: DiffReport) -> DiffReport:
    """``report`` (no divergence) with an ``ambiguous-divergence`` finding at the first suspect :func:`rescued`
    found agreeing alone on an input grown past the noise passed on: code between layers (a function call in
    its caller's forward) may differ, hidden under the noise before it."""
    grown = next((c for c in report.comparisons if c.replayed is not None and c.replayed.ok), None)
    if grown is None or grown.replayed is None:
        return report
    message = (
        f"base {quoted_path(grown.base)} / raw {quoted_path(grown.raw)} (call {grown.call}): its error "
        f"({grown.verdict.scaled:.1e} of its magnitude) passes as inherited, and given the base layer's inputs the "
        f"raw layer agrees ({grown.replayed.scaled:.1e}), but its input differs by more than the noise the layers "
        f"before its call pass on ({NOISE_GROWTH:g}x the largest of their errors): the code that computes that "
        "input, in its caller's forward, may differ, hidden under that noise"
    )
    unsure = Finding(Code.AMBIGUOUS_DIVERGENCE, Severity.WARNING, grown.base, grown.raw, message, _RERUN)
    return replace(report, findings=[*report.findings, unsure])


def _forward_record(report: DiffReport, base_path: str) -> Comparison | None:
    """The first failing step-0 forward record of the layer at ``base_path``, else its first (a caller whose
    output differs as its inner layer's did is inherited, and passes)."""
    records = [c for c in report.comparisons if c.kind == "forward" and c.step == 0 and c.base == base_path]
    return next((c for c in records if not c.ok), records[0] if records else None)


def _unlike_classes(report: DiffReport, divergence: Divergence) -> bool:
    """Whether pre-flight found the diverging pair's layers to be of different classes (``class-mismatch``)."""
    return any(
        f.code is Code.CLASS_MISMATCH and (f.base, f.raw) == (divergence.base, divergence.raw) for f in report.findings
    )


def _failing_forward(report: DiffReport, base_path: str) -> Comparison | None:
    """The first failing step-0 forward record of the layer at ``base_path``."""
    return next(
        (c for c in report.comparisons if c.kind == "forward" and c.step == 0 and c.base == base_path and not c.ok),
        None,
    )


def _first(report: DiffReport, found: Divergence) -> DiffReport:
    """``report`` with ``found`` in place of its first divergence."""
    first = report.first_divergence
    assert first is not None
    rest = [d for d in report.divergences if (d.base, d.raw, d.stage) != (first.base, first.raw, first.stage)]
    return replace(report, first_divergence=found, divergences=[found, *rest])


def _with_flip(report: DiffReport, divergence: Divergence, message: str, hint: str = "") -> DiffReport:
    """``report`` whose first divergence, ``divergence`` with ``message``, may be a choice noise flipped: the
    ``ambiguous-divergence`` finding names it (``hint``: the way out, by default ``--single-step``)."""
    found = replace(divergence, message=message)
    flip = Finding(Code.AMBIGUOUS_DIVERGENCE, Severity.WARNING, found.base, found.raw, message, hint or _RERUN)
    return replace(_first(report, found), findings=[*report.findings, flip])


def _flipped(replays: Replays, failing: Comparison, verdict: Verdict, before: float) -> str | None:
    """Why the failing record is rounding noise turned into another output (a discrete choice near a tie),
    given ``verdict``, its raw layer's replay; ``None`` if the evidence does not show that.

    Either the raw layer agrees given the base layer's inputs, and its own input agrees with the base's
    as noise does (within the floor, or within :data:`NOISE_GROWTH` times the errors before its call); or it
    differs given them, but both layers run in float32 on those inputs agree
    (:meth:`Replays.in_float32`): the lower precision of one side's arithmetic flips the choice.
    """
    if verdict.ok:
        if not replays.inputs_agree(failing, before):
            return None
        return (
            "; its input agrees with the base's within noise, and given the base layer's inputs the raw "
            f"layer agrees ({verdict.scaled:.1e} of its magnitude): the layer turns rounding noise into another "
            f"output {_NEAR_TIE}"
        )
    widened = replays.in_float32(failing)
    if widened is None or not widened.ok:
        return None
    alone = f"; given the base layer's inputs the raw layer alone differs by {verdict.scaled:.1e} of its magnitude"
    return alone + _agree_in_float32(widened)


def settled_flips(report: DiffReport, replays: Replays) -> DiffReport:
    """A single-step ``report`` without the layer pairs whose step-0 forward divergence is a choice one
    side's lower precision flipped: both layers run in float32 on the base layer's inputs agree
    (:meth:`Replays.in_float32`). Each becomes an ``ambiguous-divergence`` finding. The gradients that flow back
    through the flipped choice go with it: those of the layers whose forward ended before its own (the
    layers inside it and before it), which the finding counts."""
    flips: list[Finding] = []
    through: set[str] = set()  # layers whose gradients flow back through a flipped choice
    for divergence in report.divergences:
        failing = _failing_forward(report, divergence.base)
        if divergence.stage != "forward" or divergence.step != 0 or failing is None or not divergence.base:
            continue
        if not replays.replayable(divergence.raw):
            continue
        widened = replays.in_float32(failing)
        if widened is None or not widened.ok:
            continue
        before = _ended_before(report.comparisons, failing)
        set_aside = [d for d in report.divergences if d.stage in ("backward", "grad") and d.base in before]
        message = divergence.message + _agree_in_float32(widened)
        if set_aside:
            message += (
                f"; {len(set_aside)} gradient divergence(s) of the layers inside and before it, whose gradients "
                "flow back through that choice, were set aside with it"
            )
        flips.append(
            Finding(Code.AMBIGUOUS_DIVERGENCE, Severity.WARNING, divergence.base, divergence.raw, message, _FED)
        )
        through |= before
    if not flips:
        return report
    flipped = {finding.base for finding in flips}
    kept = [
        d
        for d in report.divergences
        if d.base not in flipped and not (d.step == 0 and d.stage in ("backward", "grad") and d.base in through)
    ]
    first = kept[0] if kept else None
    findings = [*report.findings, *flips]
    return replace(report, ok=first is None, first_divergence=first, divergences=kept, findings=findings)


def _agree_in_float32(widened: Verdict) -> str:
    """The evidence of a choice one side's lower precision flipped: in float32 the two layers agree."""
    return (
        f"; run in float32 on the base layer's inputs both layers agree ({widened.scaled:.1e}): one side's "
        f"lower-precision arithmetic turns rounding into another output {_NEAR_TIE}"
    )


def _largest_before(comparisons: list[Comparison], failing: Comparison) -> float:
    """The largest scaled error of the records of ``failing``'s step before its layer's call: before its
    record, but not of the layers inside it (their records come first)."""
    largest = 0.0
    inside = f"{failing.base}." if failing.base else ""
    for comparison in comparisons:
        if comparison is failing:
            break
        within = comparison.base.startswith(inside) and comparison.base != failing.base
        if comparison.step == failing.step and not within and np.isfinite(comparison.verdict.scaled):
            largest = max(largest, comparison.verdict.scaled)
    return largest


def _ended_before(comparisons: list[Comparison], failing: Comparison) -> set[str]:
    """Base paths of the layers whose step-0 forward record comes before ``failing``'s: records follow the
    end of each call, so these are the layers inside its layer and those that ran before it."""
    ended: set[str] = set()
    for comparison in comparisons:
        if comparison is failing:
            break
        if comparison.kind == "forward" and comparison.step == 0:
            ended.add(comparison.base)
    return ended


_FED = (
    "nothing if the layer's choice is meant to follow its input: in single-step mode the layers after it were "
    "given the base's data, so the flip did not carry on"
)


_NEAR_TIE = "(a discrete choice near a tie, such as a router's top-k), which may be no fault of the port"


_RERUN = (
    "compare in single-step mode (`diff --single-step`, `single_step=True`): each raw layer is given the base "
    "layer's inputs, so the flipped choice does not carry on into the layers after it"
)


def unsure(report: DiffReport) -> Finding | None:
    """The ``ambiguous-divergence`` finding :func:`confirmed` left on ``report``: where its verdict is not
    sure (a choice noise flipped, other tokens routed, an input grown under noise)."""
    return next((f for f in report.findings if f.code is Code.AMBIGUOUS_DIVERGENCE), None)


def rechecked(flip: Finding, single: DiffReport) -> DiffReport:
    """``single``, the single-step run of a diff whose verdict was not sure (``flip``, its :func:`unsure`
    finding), with ``flip`` among its findings: each layer given the base's data settles it."""
    note = replace(
        flip,
        hint="nothing: the diff compared the layers again in single-step mode, each raw layer given the base "
        "layer's inputs, and reports that run's verdict (settings: rechecked)",
    )
    settings = {**single.settings, "rechecked": f"single-step, not sure at {quoted_path(flip.base or '')}"}
    known = {(f.base, f.raw) for f in single.findings if f.code is Code.AMBIGUOUS_DIVERGENCE}
    findings = single.findings if (flip.base, flip.raw) in known else [*single.findings, note]
    return replace(single, findings=findings, settings=settings)


def _caller(
    first: Divergence,
    failing: Comparison,
    evidence: str,
    layer_map: LayerMap,
    unlike: set[str],
    called: set[str] | None,
) -> Divergence:
    """The divergence moved to the nearest paired layer above ``first`` whose contents correspond (not in
    ``unlike``, base paths) and whose raw partner runs a forward (in ``called``, raw paths, where known:
    not a ``ModuleList``): the code there computed its input. ``evidence``: why the layer itself is not
    at fault."""

    def caller(base_path: str) -> bool:
        raw_path = layer_map.raw_of(base_path)
        return raw_path is not None and base_path not in unlike and (called is None or raw_path in called)

    base_path = first.base.rpartition(".")[0]
    while base_path and not caller(base_path):
        base_path = base_path.rpartition(".")[0]
    raw_path = layer_map.raw_of(base_path) or ""
    message = (
        f"the input of base {quoted_path(first.base)} / raw {quoted_path(first.raw)} (call {failing.call}) differs, "
        f"and {evidence}: the code in the forward of base {quoted_path(base_path)} / raw {quoted_path(raw_path)} "
        f"that computes that input differs ({failing.verdict.note})"
    )
    return Divergence(base_path, raw_path, "forward", message, first.step)
