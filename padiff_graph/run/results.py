"""What a numeric diff finds: comparisons, divergences and the report.

The runs themselves live in :mod:`padiff_graph.run.engine`; this module holds
the records every surface (terminal, JSON, HTML) reads, and the rules that
turn a list of comparisons into the first divergence and the list of all
diverging layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from padiff_graph.core.findings import Code, Finding
from padiff_graph.core.records import quoted_path
from padiff_graph.layermap import LayerMap
from padiff_graph.run.containers import NotCompared
from padiff_graph.run.numerics import GRADIENT_MINIMUM, GROWTH_LIMIT, Verdict

#: Stages in the order a step produces them; ``grad:<tensor>`` and ``weights:<tensor>`` carry the tensor name.
STAGES = ("input", "forward", "loss", "backward", "grad", "weights")


@dataclass(frozen=True)
class Comparison:
    """One compared tensor of one matched layer pair.

    ``stage`` is one of :data:`STAGES` (``grad:`` and ``weights:`` followed
    by the base tensor's name relative to the layer); ``step`` counts
    training steps from 0.
    """

    base: str
    raw: str
    stage: str
    call: int
    index: int
    verdict: Verdict
    step: int = 0
    #: The raw layer run alone on the base layer's inputs (:mod:`padiff_graph.run.replay`), where it was.
    replayed: Verdict | None = None

    @property
    def ok(self) -> bool:
        return self.verdict.ok

    @property
    def kind(self) -> str:
        """The stage without its tensor name: ``grad:weight`` -> ``grad``."""
        return self.stage.partition(":")[0]


@dataclass(frozen=True)
class OpDivergence:
    """The first framework API call that differs inside a diverging layer (op-level mode)."""

    base_api: str
    raw_api: str
    position: int
    verdict: Verdict


@dataclass(frozen=True)
class Divergence:
    """Where the models part ways; unpacks to ``(base, raw, stage)``."""

    base: str
    raw: str
    stage: str
    message: str
    step: int = 0
    op: OpDivergence | None = None

    def __iter__(self) -> Iterator[str]:
        return iter((self.base, self.raw, self.stage))


@dataclass
class DiffReport:
    """The outcome of :func:`padiff_graph.diff`."""

    ok: bool
    first_divergence: Divergence | None
    comparisons: list[Comparison]
    findings: list[Finding]
    layer_map: LayerMap
    settings: dict[str, Any] = field(default_factory=dict)
    unproduced: list[str] = field(default_factory=list)
    contained: list[Comparison] = field(default_factory=list)
    #: Errors over their dtype's noise floor that the layers before them explain (accumulated noise).
    accumulated: list[Comparison] = field(default_factory=list)
    #: Every diverging layer pair (single-step mode finds them all), first divergence first.
    divergences: list[Divergence] = field(default_factory=list)
    #: Records of a sharded run whose ranks could not be merged without guessing (offline compare), and why.
    not_comparable: list[str] = field(default_factory=list)
    #: Matched layer pairs whose contents do not correspond (:mod:`padiff_graph.run.containers`): not compared.
    not_compared: list[NotCompared] = field(default_factory=list)
    #: Single-step mode: raw layer inputs no base input corresponds to, left as the raw model computed them.
    not_fed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        first = self.first_divergence
        return {
            "ok": self.ok,
            "first_divergence": None if first is None else _divergence_dict(first),
            "divergences": [_divergence_dict(d) for d in self.divergences],
            "settings": self.settings,
            "comparisons": [
                {
                    "base": c.base,
                    "raw": c.raw,
                    "stage": c.stage,
                    "step": c.step,
                    "call": c.call,
                    "index": c.index,
                    "ok": c.ok,
                    "max_abs": _finite(c.verdict.max_abs),
                    "max_rel": _finite(c.verdict.max_rel),
                    "scaled": _finite(c.verdict.scaled),
                    "inherited": c.verdict.inherited,
                    "note": c.verdict.note,
                }
                for c in self.comparisons
            ],
            "findings": [finding.as_dict() for finding in self.findings],
            "unproduced": self.unproduced,
            "not_comparable": self.not_comparable,
            "not_compared": [{"base": n.base, "raw": n.raw, "why": n.why} for n in self.not_compared],
            "not_fed": self.not_fed,
            "contained": [{"base": c.base, "raw": c.raw, "call": c.call, "step": c.step} for c in self.contained],
            "accumulated": [
                {"base": c.base, "raw": c.raw, "stage": c.stage, "call": c.call, "step": c.step}
                for c in self.accumulated
            ],
        }


def _divergence_dict(divergence: Divergence) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "base": divergence.base,
        "raw": divergence.raw,
        "stage": divergence.stage,
        "step": divergence.step,
        "message": divergence.message,
    }
    if divergence.op is not None:
        entry["op"] = {
            "base_api": divergence.op.base_api,
            "raw_api": divergence.op.raw_api,
            "position": divergence.op.position,
            "max_abs": _finite(divergence.op.verdict.max_abs),
        }
    return entry


def _finite(value: float) -> float | str:
    return value if np.isfinite(value) else str(value)


def attribute(
    comparisons: list[Comparison], mismatched: set[str] | None = None, inherit: bool = True
) -> list[Comparison]:
    """Tell a layer's own error from the error it inherits: ``comparisons`` with inherited ones passed.

    A comparison judged by scaled error (``verdict.floor`` set) that is over its
    dtype's noise floor is the layer's own only if its error is more than
    :data:`~padiff_graph.run.numerics.GROWTH_LIMIT` times the largest scaled
    error of the records before it in the same step (forward records in call
    order, then the loss, output gradients in backward order, parameter
    gradients, weights: each depends on all before it). Otherwise it passes,
    marked ``inherited``: the accumulated noise of the layers before it. A
    comparison that failed for another reason (NaN, shapes) keeps its verdict.
    Single-step runs (``inherit=False``) need none of this, since every layer there runs on
    the base's data: only their sums are scaled by their terms, as below.
    Layers in ``mismatched`` (base paths pre-flight found computing something else:
    ``class-mismatch``) inherit nothing: an error over their floor is their own.

    A gradient's own error must also exceed :data:`~padiff_graph.run.numerics.GRADIENT_MINIMUM`
    (backward passes amplify rounding error). Sums whose terms cancel are scaled by their terms (:func:`_references`): a
    loss by the model's outputs, a parameter gradient by its layer's output
    gradient (the gradient of a key projection's bias is zero up to rounding).
    """
    references = _references(comparisons)
    attributed = []
    largest: dict[int, float] = {}
    for comparison in comparisons:
        verdict = comparison.verdict
        before = largest.get(comparison.step, 0.0)
        if not verdict.ok and verdict.floor and np.isfinite(verdict.max_abs):
            reference = references.get((comparison.step, comparison.kind, comparison.base), 0.0)
            if reference > verdict.magnitude:
                verdict = replace(verdict, scaled=verdict.max_abs / reference)
            if inherit:
                inherits = 0.0 if comparison.base in (mismatched or set()) else before
                verdict = _judged(verdict, inherits, comparison.kind in ("backward", "grad"))
            else:
                verdict = _fed(verdict)
            comparison = replace(comparison, verdict=verdict)
        if np.isfinite(verdict.scaled):
            largest[comparison.step] = max(before, verdict.scaled)
        attributed.append(comparison)
    return attributed


#: How many inherited forward records of a one-step run are replayed alone on the base's inputs
#: (:func:`suspects`): each replay runs the base model once more without gradients.
REPLAY_SUSPECTS = 4


def suspects(comparisons: list[Comparison], limit: int = REPLAY_SUSPECTS) -> list[tuple[Comparison, float]]:
    """The step-0 forward records marked inherited whose error grew most over the largest before them
    (a bug under a long low-precision run's noise grows 5x or more, a correct layer's at most 1.8x),
    at most ``limit`` of them, each with that largest error before it, in record order."""
    grown: list[tuple[float, int, Comparison, float]] = []
    largest = 0.0
    for position, comparison in enumerate(c for c in comparisons if c.step == 0):
        verdict = comparison.verdict
        if comparison.kind == "forward" and comparison.base and verdict.inherited and largest:
            grown.append((verdict.scaled / largest, position, comparison, largest))
        if np.isfinite(verdict.scaled):
            largest = max(largest, verdict.scaled)
    chosen = sorted(grown, key=lambda entry: -entry[0])[:limit]
    return [(comparison, before) for _, _, comparison, before in sorted(chosen, key=lambda entry: entry[1])]


def own_by_replay(comparison: Comparison, before: float, replayed: Verdict) -> Comparison:
    """An inherited ``comparison`` failed: replayed alone on the base's inputs, the raw layer differs."""
    verdict = comparison.verdict
    note = (
        f"its own error is {verdict.scaled:.1e} of its magnitude (max abs diff {verdict.max_abs:.3g}), which the "
        f"layers before it (reaching {before:.1e}) could explain, but given the base layer's inputs the raw layer "
        f"alone differs by {replayed.scaled:.1e} of its magnitude; one layer's noise in this dtype stays under "
        f"{verdict.floor:.0e}"
    )
    failed = replace(verdict, ok=False, inherited=False, note=note)
    return replace(comparison, verdict=failed, replayed=replayed)


def _references(comparisons: list[Comparison]) -> dict[tuple[int, str, str], float]:
    """(step, stage kind, base path) -> the magnitude of the terms a loss or parameter gradient sums."""
    found: dict[tuple[int, str, str], float] = {}
    for comparison in comparisons:
        if comparison.kind == "forward" and comparison.base == "":
            key = (comparison.step, "loss", "")
        elif comparison.kind == "backward":
            key = (comparison.step, "grad", comparison.base)
        else:
            continue
        found[key] = max(found.get(key, 0.0), comparison.verdict.magnitude)
    return found


def _judged(verdict: Verdict, before: float, gradient: bool) -> Verdict:
    """``verdict`` (judged by scaled error) passed, failed or marked inherited, with the evidence in its note."""
    tail = f"; {verdict.note}" if verdict.note else ""
    if verdict.scaled <= verdict.floor:
        return replace(verdict, ok=True)
    if verdict.scaled <= max(GROWTH_LIMIT * before, GRADIENT_MINIMUM if gradient else 0.0):
        note = f"{verdict.scaled:.1e} of its magnitude, inherited (the layers before it reach {before:.1e}){tail}"
        return replace(verdict, ok=True, inherited=True, note=note)
    growth = (
        f"{verdict.scaled / before:.0f}x the largest error before it ({before:.1e})"
        if before
        else "where the layers before it agree exactly"
    )
    note = (
        f"its own error is {verdict.scaled:.1e} of its magnitude (max abs diff {verdict.max_abs:.3g}), "
        f"{growth}; one layer's noise in this dtype stays under {verdict.floor:.0e}{tail}"
    )
    return replace(verdict, note=note)


def _fed(verdict: Verdict) -> Verdict:
    """``verdict`` of a single-step record (each layer ran on the base's data) passed or failed by its scaled
    error alone, with the evidence in its note."""
    if verdict.scaled <= verdict.floor:
        return replace(verdict, ok=True)
    tail = f"; {verdict.note}" if verdict.note else ""
    note = (
        f"it differs by {verdict.scaled:.1e} of its magnitude (max abs diff {verdict.max_abs:.3g}) with every layer "
        f"fed the base's data; one layer's noise in this dtype stays under {verdict.floor:.0e}{tail}"
    )
    return replace(verdict, ok=False, note=note)


def all_divergences(
    comparisons: list[Comparison], descendants: dict[str, set[str]], contain: bool = True
) -> list[Divergence]:
    """One divergence per diverging layer pair, the first divergence first.

    Steps in order; within a step, layer inputs and forward outputs come
    first (in call order), then the loss, output gradients in backward
    order, parameter gradients, and weights after the optimizer step.
    Output-gradient differences count only when some parameter gradient of
    the same step differs too; otherwise they are *contained* (:func:`_failing`).
    A container whose forward output differs only because a layer inside it
    does (in the same step) is not listed again. A layer input that differs
    (single-step mode) is named at its caller (:func:`_between`), unless
    an earlier difference in the caller's call explains it (:meth:`_Records.inherited_input`).
    ``descendants`` maps a base path to the base paths below it.
    """
    failing, _ = _failing(comparisons, contain)
    failed_forward: dict[int, set[str]] = {}
    for comparison in failing:
        if comparison.kind == "forward":
            failed_forward.setdefault(comparison.step, set()).add(comparison.base)
    records = _Records(comparisons, descendants)
    seen: set[tuple[str, str, str]] = set()
    found = []
    for comparison in failing:
        if comparison.kind == "forward" and descendants.get(comparison.base, set()) & failed_forward.get(
            comparison.step, set()
        ):
            continue
        if comparison.kind == "input":
            caller = records.caller(comparison)
            if caller is not None and records.inherited_input(comparison, caller):
                continue
            divergence = _between(comparison, caller, records)
        else:
            divergence = divergence_of(comparison)
        if (divergence.base, divergence.raw, divergence.stage) not in seen:
            seen.add((divergence.base, divergence.raw, divergence.stage))
            found.append(divergence)
    return found


def _failing(comparisons: list[Comparison], contain: bool) -> tuple[list[Comparison], list[Comparison]]:
    """Failing comparisons in divergence order, and the contained ones left out.

    Contained: output-gradient differences in a step where no parameter gradient differs,
    typically a subgradient choice at ties (max pooling over equal values) that the next
    layer masks and that changes no update. Single-step runs pass ``contain=False``: the raw
    model's parameter gradients are computed from the base's output gradients there, so
    they cannot show a backward difference.
    """
    failing = [c for c in comparisons if not c.ok]
    steps_with_grad_failures = {c.step for c in failing if c.kind == "grad"}
    contained = [c for c in failing if contain and c.kind == "backward" and c.step not in steps_with_grad_failures]
    contained_ids = {id(c) for c in contained}
    rank = {"input": 0, "forward": 0, "loss": 1, "backward": 2, "grad": 3, "weights": 4}
    ordered = sorted(
        (c for c in failing if id(c) not in contained_ids), key=lambda c: (c.step, rank.get(c.kind, 5))
    )  # sorted() is stable: call order is kept within a stage
    return ordered, contained


class _Records:
    """A run's comparisons in record order, and the layer calls they make up."""

    def __init__(self, comparisons: list[Comparison], descendants: dict[str, set[str]]) -> None:
        self.comparisons = comparisons
        self.descendants = descendants
        self.position = {id(comparison): index for index, comparison in enumerate(comparisons)}
        self.raw_of: dict[tuple[int, str], str] = {}  # (step, base path) -> raw path, of the layers compared
        for comparison in comparisons:
            self.raw_of.setdefault((comparison.step, comparison.base), comparison.raw)

    def caller(self, comparison: Comparison) -> str | None:
        """The base path of the innermost layer compared in ``comparison``'s step that holds its layer."""
        holders = [
            path
            for step, path in self.raw_of
            if step == comparison.step and comparison.base in self.descendants.get(path, set())
        ]
        return min(holders, key=lambda path: len(self.descendants[path]), default=None)

    def caller_call(self, comparison: Comparison, caller: str) -> list[Comparison]:
        """The records of ``caller``'s call that ``comparison`` (a layer input) is part of, up to it:
        those after the caller's last forward output before it."""
        position = self.position[id(comparison)]
        start = position
        while start > 0:
            earlier = self.comparisons[start - 1]
            if earlier.step != comparison.step or (earlier.base == caller and earlier.kind == "forward"):
                break
            start -= 1
        return self.comparisons[start:position]

    def inherited_input(self, comparison: Comparison, caller: str) -> bool:
        """Whether a differing layer input is explained within its caller's call: an output of a layer
        in the caller differed before it, or the caller's own input did (and came in with it)."""
        inside = self.descendants.get(caller, set())
        return any(
            not earlier.ok
            and (
                (earlier.kind == "forward" and earlier.base in inside)
                or (earlier.kind == "input" and earlier.base == caller)
            )
            for earlier in self.caller_call(comparison, caller)
        )


def _between(comparison: Comparison, caller: str | None, records: _Records) -> Divergence:
    """A differing layer input that the layers before it in its caller's call do not explain, named at the
    caller: the code of the caller's forward that computes it differs (at the input where no caller is compared)."""
    verdict = comparison.verdict
    what = verdict.note or f"max abs diff {verdict.max_abs:.3g}, max rel diff {verdict.max_rel:.3g}"
    where = f"base {quoted_path(comparison.base)} / raw {quoted_path(comparison.raw)}"
    step = f"step {comparison.step}, " if comparison.step else ""
    call = f"({step}call {comparison.call}, input {comparison.index})"
    if not comparison.base:
        message = f"the model input differs {call}: {what}; the two runs were given different data"
        return Divergence("", comparison.raw, "input", message, comparison.step)
    if caller is None:
        message = (
            f"the input differs at {where} {call}: {what}; the layers before it agree, so look at the code "
            "in its caller's forward that computes this input (the caller is not compared)"
        )
        return Divergence(comparison.base, comparison.raw, "input", message, comparison.step)
    before = [c for c in records.caller_call(comparison, caller) if c.kind == "forward"]
    caller_raw = records.raw_of[(comparison.step, caller)]
    holder = f"base {quoted_path(caller)} / raw {quoted_path(caller_raw)}"
    after = (
        f"right after base {quoted_path(before[-1].base)} / raw {quoted_path(before[-1].raw)} agreed"
        if before
        else "though no layer ran before it in that call"
    )
    message = (
        f"forward differs at {holder}: the layers inside it agree given the base's inputs, but the input of "
        f"{where} {call} differs {after} ({what}): the code between them in the forward of {holder} differs"
    )
    return Divergence(caller, caller_raw, "forward", message, comparison.step)


def divergence_of(comparison: Comparison) -> Divergence:
    """The divergence a failing ``comparison`` is, its message naming the record and the evidence."""
    verdict = comparison.verdict
    what = verdict.note or f"max abs diff {verdict.max_abs:.3g}, max rel diff {verdict.max_rel:.3g}"
    kind = comparison.kind
    tensor = comparison.stage.partition(":")[2]
    where = f"base {quoted_path(comparison.base)} / raw {quoted_path(comparison.raw)}"
    step = f"step {comparison.step}, " if comparison.step else ""
    call = f"({step}call {comparison.call}, output {comparison.index})"
    if kind == "grad":
        message = f"the gradient of {tensor!r} differs at {where} ({step.rstrip(', ') or 'step 0'}): {what}"
    elif kind == "weights":
        message = f"{tensor!r} differs after the optimizer step at {where} ({step.rstrip(', ') or 'step 0'}): {what}"
    elif kind == "loss":
        message = f"the loss differs ({step.rstrip(', ') or 'step 0'}): {what}"
    else:
        message = f"{kind} differs at {where} {call}: {what}"
    return Divergence(comparison.base, comparison.raw, kind, message, comparison.step)


def input_explained(divergence: Divergence, recorded: list[Comparison]) -> Divergence:
    """``divergence`` with a note when the diverging layer's input already differed.

    ``recorded`` holds the run's comparisons of layer inputs and outputs in
    the order the raw model produced them. If an input of the layer differs
    before its output does, every layer that finished before it agrees: the
    cause is in the code of its caller's forward that runs between the last
    of those layers and this one (a missing residual add, a wrong reshape).
    """
    found = differing_input(divergence, recorded)
    if found is None:
        return divergence
    comparison, previous = found
    verdict = comparison.verdict
    what = verdict.note or f"max abs diff {verdict.max_abs:.3g}"
    caller = quoted_path(divergence.base.rpartition(".")[0]) if divergence.base else "the caller"
    between = f"between {quoted_path(previous)} and" if previous is not None else "before"
    note = (
        f"; its input {comparison.index} already differs ({what}) and every layer before it agrees, "
        f"so the cause is in the forward of its caller {caller}, {between} {quoted_path(divergence.base)}"
    )
    return replace(divergence, message=divergence.message + note)


def differing_input(divergence: Divergence, recorded: list[Comparison]) -> tuple[Comparison, str | None] | None:
    """The input record of a forward divergence's layer that differed before its output did (every layer
    that finished before it agreeing), and the last of those layers; ``None`` if there is none."""
    if divergence.stage != "forward":
        return None
    previous: str | None = None
    for comparison in recorded:
        if comparison.step != divergence.step:
            continue
        if comparison.kind == "forward":
            if comparison.base == divergence.base and not comparison.ok:
                return None
            previous = comparison.base
        elif comparison.kind == "input" and comparison.base == divergence.base and not comparison.ok:
            return comparison, previous
    return None


def build_report(
    comparisons: list[Comparison],
    findings: list[Finding],
    layer_map: LayerMap,
    settings: dict[str, Any],
    descendants: dict[str, set[str]],
    *,
    unproduced: Iterable[str] = (),
    not_comparable: Iterable[str] = (),
    not_compared: Iterable[NotCompared] = (),
    not_fed: Iterable[str] = (),
    contain: bool = True,
    inherit: bool = True,
    explain: Callable[[Divergence], Divergence] | None = None,
    recorded: list[Comparison] | None = None,
    replayed: Callable[[list[Comparison]], list[Comparison]] | None = None,
) -> DiffReport:
    """The report of a finished run (live or offline): first divergence, all diverging layers, the rest as given.

    ``descendants`` maps a base path to the base paths below it; ``explain``
    attaches what op-level comparison found to a divergence; ``recorded``
    (inputs and outputs in record order) says when a diverging layer's input
    already differed (:func:`input_explained`, unless a replay told its own error); ``inherit``: errors the layers
    before explain are not divergences (:func:`attribute`; off in single-step runs); ``replayed``
    fails the inherited records whose layer, replayed alone, shows an error of its own.
    """
    comparisons, other_form = in_other_forms(comparisons)
    mismatched = {finding.base for finding in findings if finding.code is Code.CLASS_MISMATCH and finding.base}
    comparisons = attribute(comparisons, mismatched, inherit)
    if replayed is not None:
        comparisons = replayed(comparisons)
    failing, contained = _failing(comparisons, contain)
    divergences = other_form_named(all_divergences(comparisons, descendants, contain), failing)
    divergence = divergences[0] if divergences else None
    replayed_layers = {(c.step, c.base) for c in comparisons if c.replayed is not None}
    if divergence is not None and recorded is not None and (divergence.step, divergence.base) not in replayed_layers:
        explained = input_explained(divergence, recorded)  # a replay already told the layer's own error
        divergences = [explained if found == divergence else found for found in divergences]
        divergence = explained
    if explain is not None:
        divergences = [explain(found) for found in divergences]
        divergence = None if divergence is None else explain(divergence)
    return DiffReport(
        divergence is None,
        divergence,
        comparisons,
        findings,
        layer_map,
        settings,
        list(unproduced),
        contained,
        [c for c in comparisons if c.verdict.inherited],
        divergences,
        list(not_comparable),
        [*not_compared, *other_form],
        list(not_fed),
    )


def other_form_named(divergences: list[Divergence], failing: list[Comparison]) -> list[Divergence]:
    """``divergences``, the first one's message naming the first record whose values differ when the first
    differs in form alone (shape, complex against real): another form of the same values, on purpose,
    would put the divergence there. ``failing``: the failing records in divergence order (:func:`_failing`)."""
    if not divergences or not failing or not failing[0].verdict.other_form:
        return divergences
    later = next((c for c in failing if not c.verdict.other_form), None)
    if later is None:
        return divergences
    first = divergences[0]
    where = f"base {quoted_path(later.base)} / raw {quoted_path(later.raw)} ({later.stage})"
    message = (
        f"{first.message}; only the form differs there: if the two sides return these values in other "
        f"forms on purpose, the first record whose values differ is at {where}"
    )
    return [replace(first, message=message), *divergences[1:]]


def in_other_forms(comparisons: list[Comparison]) -> tuple[list[Comparison], list[NotCompared]]:
    """``comparisons`` less the records that differ in form alone when nothing else fails, and their pairs.

    Two ports may return one quantity in other forms: a rotary table as complex
    factors against cos and sin. Their records differ in form alone (shapes, or
    complex against real values: :attr:`Verdict.other_form`); when
    every other record agrees, the models compute the same thing, and the pair
    is not compared (listed as such). When anything else fails, a difference
    in form stays a divergence: a convolution padded otherwise is where the
    models part.
    """
    failing = [c for c in comparisons if not c.ok]
    if not failing or not all(c.verdict.other_form for c in failing):
        return comparisons, []
    pairs: dict[tuple[str, str], NotCompared] = {}
    for c in failing:
        why = f"the layers return their values in other forms ({c.stage} {c.verdict.note}), "
        why += "and every other record agrees"
        pairs.setdefault((c.base, c.raw), NotCompared(c.base, c.raw, why))
    return [c for c in comparisons if c.ok], list(pairs.values())


def stopped_report(
    finding: Finding, findings: list[Finding], layer_map: LayerMap, settings: dict[str, Any]
) -> DiffReport:
    """The report of a run stopped before it compared anything (a random op): the finding is the divergence."""
    stopped = Divergence(finding.base or "", finding.raw or "", "preflight", f"{finding.message}; {finding.hint}")
    return DiffReport(False, stopped, [], findings, layer_map, settings, divergences=[stopped])
