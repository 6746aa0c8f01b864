"""The hooked numeric diff: run both models, compare matched layers in call order.

The base model runs first; each matched layer's outputs (and, in backward,
the gradients flowing into them) are kept as numpy copies. The raw model
then runs under the same hooks and every record is compared the moment the
raw side produces it, then released, so at most one model's records are held.
The first comparison that fails is the first divergence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from padiff_graph.compare import Mode, Verdict, compare_arrays
from padiff_graph.errors import ModelRunError
from padiff_graph.frameworks.base import FrameworkAdapter, iter_tensors
from padiff_graph.inputs import CallArguments
from padiff_graph.knowledge.families import is_random
from padiff_graph.layermap import LayerMap
from padiff_graph.preflight import Finding
from padiff_graph.progress import task
from padiff_graph.records import join_path
from padiff_graph.tracing import CallTracker, hooks, run_forward, track_calls
from padiff_graph.tree import ModelTree, layer_info

#: Key of one recorded tensor: (base layer path, call number, tensor index in the output).
RecordKey = tuple[str, int, int]


@dataclass(frozen=True)
class Comparison:
    """One compared tensor of one matched layer pair."""

    base: str
    raw: str
    stage: str
    call: int
    index: int
    verdict: Verdict

    @property
    def ok(self) -> bool:
        return self.verdict.ok


@dataclass(frozen=True)
class Divergence:
    """Where the models first part ways."""

    base: str
    raw: str
    stage: str
    message: str

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

    def as_dict(self) -> dict[str, Any]:
        first = self.first_divergence
        return {
            "ok": self.ok,
            "first_divergence": None
            if first is None
            else {"base": first.base, "raw": first.raw, "stage": first.stage, "message": first.message},
            "settings": self.settings,
            "comparisons": [
                {
                    "base": c.base,
                    "raw": c.raw,
                    "stage": c.stage,
                    "call": c.call,
                    "index": c.index,
                    "ok": c.ok,
                    "max_abs": _finite(c.verdict.max_abs),
                    "max_rel": _finite(c.verdict.max_rel),
                    "note": c.verdict.note,
                }
                for c in self.comparisons
            ],
            "findings": [finding.as_dict() for finding in self.findings],
            "unproduced": self.unproduced,
            "contained": [{"base": c.base, "raw": c.raw, "call": c.call} for c in self.contained],
        }


def _finite(value: float) -> float | str:
    return value if np.isfinite(value) else str(value)


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    mode: Mode


class _Side:
    """Hooks on one model's matched layers, feeding records to a sink."""

    def __init__(
        self,
        adapter: FrameworkAdapter,
        model: Any,
        layer_paths: dict[str, str],
        sink: Callable[[str, RecordKey, np.ndarray], None],
        watch_backward: bool,
    ) -> None:
        self.adapter = adapter
        self.model = model
        self.layer_paths = layer_paths  # this side's path -> base path (the record key)
        self.sink = sink
        self.watch_backward = watch_backward
        self.calls: dict[str, int] = defaultdict(int)
        self.tracker = CallTracker()

    def install(self) -> list[Any]:
        layers = self.adapter.named_layers(self.model)
        handles = track_calls(self.adapter, layers, self.tracker)
        for path, key_path in self.layer_paths.items():
            handles.append(self.adapter.add_forward_hook(layers[path], self._on_output(key_path)))
        return handles

    def _on_output(self, key_path: str) -> Callable[[Any], None]:
        def record(output: Any) -> None:
            call = self.calls[key_path]
            self.calls[key_path] += 1
            for index, tensor in enumerate(iter_tensors(output, self.adapter.is_tensor)):
                key = (key_path, call, index)
                self.sink("forward", key, self.adapter.to_numpy(tensor))
                if self.watch_backward and self.adapter.requires_grad(tensor):
                    self.adapter.watch_grad(tensor, self._on_grad(key))

        return record

    def _on_grad(self, key: RecordKey) -> Callable[[Any], None]:
        return lambda grad: self.sink("backward", key, self.adapter.to_numpy(grad))

    def run(self, arguments: CallArguments, side: str, backward: bool) -> Any:
        output = run_forward(self.adapter, self.model, arguments, self.tracker, side)
        if backward:
            try:
                loss = self.adapter.mean_loss(output)
            except ValueError as error:
                raise ModelRunError(f"cannot run backward on the {side} model: {error}; use --forward-only") from None
            self.adapter.backward(loss)
        return output


@contextmanager
def random_layers_disabled(adapter: FrameworkAdapter, model: Any, tree: ModelTree) -> Iterator[list[str]]:
    """Switch random layers (dropout in training mode) to eval for the run, then back."""
    layers = adapter.named_layers(model)
    paths = [path for path in tree.nodes if is_random(layer_info(tree, path))]
    for path in paths:
        layers[path].training = False
    try:
        yield paths
    finally:
        for path in paths:
            layers[path].training = True


def run_and_compare(
    base: tuple[FrameworkAdapter, Any, CallArguments],
    raw: tuple[FrameworkAdapter, Any, CallArguments],
    layer_map: LayerMap,
    tolerance: Tolerance,
    backward: bool,
) -> tuple[list[Comparison], list[str]]:
    """Run base, then raw, comparing each raw record against the base one as it appears.

    Returns the comparisons in the order the raw side produced them, then
    parameter-gradient comparisons, and the base records the raw side never produced.
    """
    base_adapter, base_model, base_arguments = base
    raw_adapter, raw_model, raw_arguments = raw
    pairs = layer_map.active_pairs()
    raw_of = {pair.base: pair.raw for pair in pairs}
    stored: dict[tuple[str, RecordKey], np.ndarray] = {}
    comparisons: list[Comparison] = []

    def keep(stage: str, key: RecordKey, value: np.ndarray) -> None:
        stored[(stage, key)] = value

    def check(stage: str, key: RecordKey, value: np.ndarray) -> None:
        reference = stored.pop((stage, key), None)
        if reference is None:
            return
        verdict = compare_arrays(reference, value, tolerance.atol, tolerance.rtol, tolerance.mode)
        comparisons.append(Comparison(key[0], raw_of[key[0]], stage, key[1], key[2], verdict))

    base_side = _Side(base_adapter, base_model, {p.base: p.base for p in pairs}, keep, backward)
    base_adapter.clear_grads(base_model)
    raw_adapter.clear_grads(raw_model)
    with hooks(base_side.install()), task("running the base model"):
        base_side.run(base_arguments, "base", backward)
    with task("running the raw model, comparing layer by layer", total=len(stored)) as advance:
        raw_side = _Side(raw_adapter, raw_model, {p.raw: p.base for p in pairs}, _advancing(check, advance), backward)
        with hooks(raw_side.install()):
            raw_side.run(raw_arguments, "raw", backward)
    if backward:
        comparisons += _compare_parameter_grads(base, raw, layer_map, tolerance, raw_side.tracker.order)
    unproduced = sorted({f"{stage} {key[0]} (call {key[1]})" for stage, key in stored})
    return comparisons, unproduced


def _advancing(sink: Callable[[str, RecordKey, np.ndarray], None], advance: Callable[[], None]) -> Callable[..., None]:
    def record(stage: str, key: RecordKey, value: np.ndarray) -> None:
        sink(stage, key, value)
        advance()

    return record


def _compare_parameter_grads(
    base: tuple[FrameworkAdapter, Any, CallArguments],
    raw: tuple[FrameworkAdapter, Any, CallArguments],
    layer_map: LayerMap,
    tolerance: Tolerance,
    raw_call_order: list[str],
) -> list[Comparison]:
    """Gradients of paired parameters, latest-called layer first (the order backward reaches them)."""
    base_adapter, base_model, _ = base
    raw_adapter, raw_model, _ = raw
    base_tensors = base_adapter.named_tensors(base_model)
    raw_tensors = raw_adapter.named_tensors(raw_model)
    rank = {path: index for index, path in enumerate(raw_call_order)}
    ordered = sorted(layer_map.active_pairs(), key=lambda pair: -rank.get(pair.raw, -1))
    comparisons = []
    for pair in ordered:
        for index, tensor in enumerate(pair.tensors):
            if tensor.has_constant:  # a tensor one side lacks: no gradient to compare
                continue
            base_grad = base_adapter.grad(base_tensors[join_path(pair.base, tensor.base)])
            raw_tensor = raw_tensors[join_path(pair.raw, tensor.raw)]
            raw_grad = raw_adapter.grad(raw_tensor)
            if base_grad is None and raw_grad is None:
                continue
            if base_grad is None or raw_grad is None:
                missing = "base" if base_grad is None else "raw"
                verdict = Verdict(False, float("inf"), float("inf"), f"no gradient on the {missing} side")
            else:
                expected = tensor.transform.apply(base_grad)
                region = raw_grad[tensor.transform.raw_index] if tensor.transform.raw_index else raw_grad
                verdict = compare_arrays(expected, region, tolerance.atol, tolerance.rtol, tolerance.mode)
            comparisons.append(Comparison(pair.base, pair.raw, f"grad:{tensor.base}", 0, index, verdict))
    return comparisons


def first_divergence(comparisons: list[Comparison]) -> tuple[Divergence | None, list[Comparison]]:
    """The earliest failing comparison, and the contained gradient differences.

    Forward outputs come first, then output gradients in backward order, then
    parameter gradients. Output-gradient differences count only when some
    parameter gradient differs too; otherwise they are *contained* (reported,
    not a divergence): typically a subgradient choice at ties, such as max
    pooling over equal values, that the next layer masks and that changes no
    update.
    """
    failing = [c for c in comparisons if not c.ok]
    if any(c.stage.startswith("grad") for c in failing):
        contained = []
    else:
        contained = [c for c in failing if c.stage == "backward"]
    for stage_prefix in ("forward", "backward", "grad"):
        for comparison in failing:
            if not comparison.stage.startswith(stage_prefix) or comparison in contained:
                continue
            verdict = comparison.verdict
            what = verdict.note or f"max abs diff {verdict.max_abs:.3g}, max rel diff {verdict.max_rel:.3g}"
            tensor = f" of {comparison.stage.partition(':')[2]}" if ":" in comparison.stage else ""
            divergence = Divergence(
                comparison.base,
                comparison.raw,
                stage_prefix,
                f"{stage_prefix}{tensor} differs at base {comparison.base!r} / raw {comparison.raw!r} "
                f"(call {comparison.call}, output {comparison.index}): {what}",
            )
            return divergence, contained
    return None, contained
