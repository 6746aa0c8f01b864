"""Running both models step by step, comparing every record the moment the raw side produces it.

Each step runs the base model first under a :class:`~padiff_graph.run.hooks.Recorder`
whose sink keeps what the comparison needs: host copies of layer outputs and
output gradients in strict mode (past a memory budget, in a spool file:
:mod:`padiff_graph.run.spill`), only their means in mean mode (full copies of
layer inputs and gradients as well in single-step mode, where they are fed
into the raw model). The raw model then runs under the same hooks, keyed by
the base paths it is matched to; every raw record is copied as soon as it
appears and compared with its base record on a helper thread while the raw
model runs on (a small one on the spot, when nothing waits on the helper thread), and
both are released. Where the traces showed it pays (a torch model on the CPU beside a paddle one,
whose CPU kernels run on one thread: :func:`padiff_graph.frameworks.side_beside`), the two steps
run at once (:func:`padiff_graph.core.runtime.run_sides`): each raw record then waits for its base
record to come. A fused layer and its parts in the other model
(:mod:`padiff_graph.run.fused_pairs`) are compared as one record: the parts'
records joined as the fused layer's. Parameter gradients (before the optimizer
step) and weights (after it) are compared through the layer map's tensor pairs,
transforms included; each gradient on the helper thread the moment the raw
backward has accumulated it, while the backward goes on.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import cache, partial
from threading import Condition, Lock
from typing import Any

import numpy as np

from padiff_graph.core.findings import Code, Finding
from padiff_graph.core.progress import task
from padiff_graph.core.records import Severity, join_path
from padiff_graph.core.runtime import in_background, run_sides
from padiff_graph.core.transforms import TensorPair
from padiff_graph.errors import ModelRunError, describe
from padiff_graph.frameworks.base import FrameworkAdapter, RemovableHandle
from padiff_graph.frameworks.inputs import CallArguments
from padiff_graph.frameworks.tracing import hooks, run_forward
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.run.activations import BuiltinActivation
from padiff_graph.run.containers import NotCompared
from padiff_graph.run.feeding import BaseInputs, corresponding_input, fed_value, not_fed
from padiff_graph.run.fused_pairs import FusedPair, TensorPlaces, joined
from padiff_graph.run.gradient_feed import feed_base_gradients
from padiff_graph.run.hooks import HostCache, OpSink, Recorder, RecordKey, Sink
from padiff_graph.run.kept_calls import KeptCalls
from padiff_graph.run.numerics import (
    CHUNK,
    Mode,
    Summary,
    Tolerance,
    Verdict,
    compare_tensor_pair,
    fitted,
    same_elements,
    summarize,
)
from padiff_graph.run.oplevel import OpComparer, OpStore
from padiff_graph.run.randomness import RandomWatch
from padiff_graph.run.results import Comparison
from padiff_graph.run.rows import RowOrders
from padiff_graph.run.spill import DEFAULT_BUDGET_MIB, Held, Spill
from padiff_graph.run.statistics import compare_running_variance
from padiff_graph.run.tied import TiedCopies


@dataclass
class Side:
    """One model and what drives its training step."""

    adapter: FrameworkAdapter
    model: Any
    name: str
    loss_fn: Callable[[Any], Any] | None = None
    optimizer: Any = None
    amp: str | None = None
    random: RandomWatch | None = None


@dataclass(frozen=True)
class Plan:
    """What each step runs and compares.

    Attributes:
        forward: compare layer outputs and inputs (outside single-step mode
            the inputs only explain a divergence: an input that already
            differs puts the cause in the caller's code).
        backward: run backward; compare the loss, output and parameter
            gradients, and weights after the optimizer step.
        single_step: feed the base's layer inputs (forward) and output
            gradients (backward) into the raw model, so errors do not accumulate.
        memory_budget_mib: base records kept in memory up to this size;
            past it they wait in a spool file (``padiff_graph.run.spill``). ``inf``: no limit.
        activations: pairs (by base path) whose one layer applies an activation inside
            (:mod:`padiff_graph.run.activations`).
        containers: base paths of the containers below the root: where their outputs have
            another number of elements than their partners', the two return different tensors
            (paddle's DenseNet layer concatenates its input inside, torchvision's block does it
            outside): not compared, listed in ``DiffOutcome.other_outputs``.
        variances: (base layer, base tensor) of BatchNorm running variances a training step updates
            otherwise on the raw side (:mod:`padiff_graph.run.statistics`).
        beside: the side whose step runs on a worker thread while the other's runs
            (:func:`padiff_graph.frameworks.side_beside`), or ``None``: one after the other.
    """

    forward: bool = True
    backward: bool = True
    single_step: bool = False
    memory_budget_mib: float = DEFAULT_BUDGET_MIB
    activations: Mapping[str, BuiltinActivation] = field(default_factory=dict)
    containers: frozenset[str] = frozenset()
    variances: frozenset[tuple[str, str]] = frozenset()
    beside: str | None = None


def run_step(
    side: Side,
    arguments: CallArguments,
    recorder: Recorder,
    sink: Sink,
    *,
    backward: bool,
    ops: Mapping[str, str] | None = None,
    after_backward: Callable[[], None] | None = None,
    after_optimizer: Callable[[], None] | None = None,
) -> None:
    """One training step of one model under ``recorder``: forward, loss, backward, optimizer.

    ``ops`` (qualified API name -> canonical name) turns on op-level recording.
    Gradients are cleared first on the first step, and on every step without an
    optimizer; after that, clearing them is the optimizer's job (so a callable
    optimizer may accumulate over steps).
    """
    adapter, model = side.adapter, side.model
    if backward and (recorder.step == 0 or side.optimizer is None):
        adapter.clear_grads(model)
    with ExitStack() as stack:
        stack.enter_context(hooks(recorder.install()))
        if side.random is not None:
            stack.enter_context(adapter.op_overrides(side.random.overrides(side.name, adapter, recorder)))
        if ops:
            stack.enter_context(adapter.record_ops(ops, recorder.on_op))
        with adapter.autocast(model, side.amp):
            output = run_forward(adapter, model, arguments, recorder.tracker, side.name)
            loss = _loss(side, output) if backward else None
        if loss is None:
            return
        sink(RecordKey(recorder.step, "loss", ""), loss, adapter.dtype_name(loss))
        try:
            adapter.backward(loss)
        except Exception as error:  # the user's backward may raise anything
            raise ModelRunError(f"the {side.name} model's backward failed: {describe(error)}") from error
    if after_backward is not None:
        after_backward()
    if side.optimizer is not None:
        adapter.step_optimizer(side.optimizer)
        if after_optimizer is not None:
            after_optimizer()


def _loss(side: Side, output: Any) -> Any:
    if side.loss_fn is None:
        try:
            return side.adapter.mean_loss(output)
        except ValueError as error:
            raise ModelRunError(f"cannot run backward on the {side.name} model: {error}; use --forward-only") from None
    try:
        return side.loss_fn(output)
    except Exception as error:  # a user's loss function may raise anything
        raise ModelRunError(f"the {side.name} loss function failed: {describe(error)}") from error


@dataclass
class DiffOutcome:
    """What :func:`run_diff` found, before it becomes a report."""

    comparisons: list[Comparison] = field(default_factory=list)
    unproduced: list[str] = field(default_factory=list)
    ops: OpComparer | None = None
    amp_inactive: list[str] = field(default_factory=list)  # sides whose autocast changed no layer's output dtype
    not_fed: list[str] = field(default_factory=list)  # single-step: raw layer inputs no base input corresponds to
    other_outputs: dict[tuple[str, str], NotCompared] = field(default_factory=dict)  # Plan.containers

    def note_autocast(self, side: Side, recorder: Recorder) -> None:
        """Whether ``side``'s ``amp`` request took effect: some recorded layer output is in its dtype.
        (Paddle 3.3.1 has no bfloat16/float16 CPU kernels: on CPU its autocast runs float32.)"""
        inactive = side.amp is not None and bool(recorder.output_dtypes) and side.amp not in recorder.output_dtypes
        if inactive and side.name not in self.amp_inactive:
            self.amp_inactive.append(side.name)


def run_diff(
    base: Side,
    raw: Side,
    batches: Iterable[tuple[CallArguments, ...]],
    layer_map: LayerMap,
    pairs: list[LayerPair],
    tolerance: Tolerance,
    plan: Plan,
    op_names: tuple[Mapping[str, str], Mapping[str, str]] | None = None,
    fused: Sequence[FusedPair] = (),
    kept: KeptCalls | None = None,
) -> DiffOutcome:
    """Run every step on both models and compare; ``pairs`` are the layer pairs to hook,
    ``fused`` the fused layers to compare against their parts. ``kept`` keeps the first step's calls its
    replays will ask for (not in single-step mode, whose raw layers run on the base's inputs)."""
    outcome = DiffOutcome()
    base_layers, raw_layers, raw_of = _record_keys(pairs, fused)
    whole_parts = {path for group in fused if not group.base_fused for path in group.base}
    if op_names is not None:
        outcome.ops = OpComparer(tolerance, op_names[1])
    beside = None if plan.single_step or op_names else plan.beside  # they need the whole base step first
    kept = None if plan.single_step or tolerance.mode is not Mode.STRICT else kept
    for step, (base_arguments, raw_arguments) in enumerate(batches):
        keeping = kept if step == 0 else None
        with Spill(plan.memory_budget_mib * 2**20) as spill:
            store = BaseStore(
                base.adapter,
                tolerance.mode,
                plan,
                keep_grads=base.optimizer is not None,
                spill=spill,
                whole=whole_parts,
            )
            op_store = OpStore(base.adapter, tolerance.mode, op_names[0]) if op_names is not None else None
            checker = RawChecker(store, base, raw, layer_map, raw_of, tolerance, plan, step, fused, keeping)
            base_ops, raw_ops = op_names or (None, None)
            started = None if keeping is None else keeping.started("base")
            record_base = _recorder(base, base_layers, store.keep, step, plan, op_store, started)
            run_base = partial(_base_step, base, base_arguments, record_base, store, plan, base_ops, beside is not None)
            compare = FusedChecker(fused, store, checker)
            started = None if keeping is None else keeping.started("raw")
            run_raw = partial(
                _raw_step, raw, raw_arguments, raw_layers, compare, plan, raw_ops, outcome.ops, op_store, started
            )
            base_recorder, raw_recorder = run_sides(run_base, run_raw, beside)
            outcome.note_autocast(base, base_recorder)
            outcome.note_autocast(raw, raw_recorder)
            outcome.comparisons += checker.comparisons
            outcome.not_fed += checker.not_fed
            outcome.other_outputs |= checker.other_outputs
            outcome.unproduced += store.leftovers(step, inputs=plan.single_step)
    return outcome


def _base_step(
    base: Side,
    arguments: CallArguments,
    recorder: Recorder,
    store: BaseStore,
    plan: Plan,
    ops: Mapping[str, str] | None,
    beside: bool,
) -> Recorder:
    """The base model's step, its records kept in ``store``, which learns when the step is over, also when it
    failed (the raw side waits for no more records). ``beside``: the raw step runs meanwhile, and ``store``
    holds each gradient as it accumulates (one after the other, the step is over before the raw side asks
    for any)."""
    with ExitStack() as stack:
        stack.callback(store.base_done)
        stack.enter_context(hooks(store.watch_gradients(base.model) if beside else []))
        with task("running the base model"):
            after_backward = partial(store.snapshot_grads, base.model)
            run_step(
                base, arguments, recorder, store.keep, backward=plan.backward, ops=ops, after_backward=after_backward
            )
    return recorder


def _raw_step(
    raw: Side,
    arguments: CallArguments,
    layers: dict[str, str],
    fused: FusedChecker,
    plan: Plan,
    ops: Mapping[str, str] | None,
    comparer: OpComparer | None,
    op_store: OpStore | None,
    started: Callable[[str, int, tuple[Any, ...], dict[str, Any]], None] | None,
) -> Recorder:
    """The raw model's step, each record compared with its base one as it comes (op-level: ``comparer``
    against the base's ``op_store``; ``started``: :class:`~padiff_graph.run.hooks.Recorder`'s)."""
    checker, store = fused.checker, fused.store
    if comparer is not None and op_store is not None:
        comparer.begin(op_store, raw.adapter)
    total = len(store.records) if store.done else None  # a base step still running: more records to come
    cleared = plan.backward and (checker.step == 0 or raw.optimizer is None)  # as run_step clears them
    with task("running the raw model, comparing layer by layer", total=total) as advance, ExitStack() as stack:
        stack.enter_context(hooks(checker.watch_gradients() if cleared else []))
        sink = _advancing(fused.check, advance)
        recorder = _recorder(raw, layers, sink, checker.step, plan, comparer, started)
        run_step(
            raw,
            arguments,
            recorder,
            sink,
            backward=plan.backward,
            ops=ops,
            after_backward=partial(checker.gradients_done, recorder.tracker.order),
            after_optimizer=partial(checker.compare_tensors, "weights", recorder.tracker.order),
        )
    checker.settle()
    return recorder


def _recorder(
    side: Side,
    layers: dict[str, str],
    sink: Sink,
    step: int,
    plan: Plan,
    ops: OpSink | None,
    started: Callable[[str, int, tuple[Any, ...], dict[str, Any]], None] | None = None,
) -> Recorder:
    """The recorder of one side's step: what ``plan`` compares, of the ``layers`` hooked."""
    inputs, outputs, grads = plan.forward or plan.single_step, plan.forward, plan.backward
    return Recorder(
        side.adapter,
        side.model,
        layers,
        sink,
        step=step,
        inputs=inputs,
        outputs=outputs,
        grads=grads,
        ops=ops,
        started=started,
    )


def _record_keys(
    pairs: list[LayerPair], fused: Sequence[FusedPair]
) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """What each side hooks, keyed by what: base layer -> its path, raw layer -> its partner's
    path (a raw part -> its own key until the parts are joined), and base name -> raw name."""
    base_layers = {pair.base: pair.base for pair in pairs}
    raw_layers = {pair.raw: pair.base for pair in pairs}
    raw_of = {pair.base: pair.raw for pair in pairs}
    for group in fused:
        base_layers.update({path: path for path in group.base})  # a fused base layer's path is its name
        raw_of[group.base_name] = group.raw_name
        if group.base_fused:
            raw_layers.update({path: group.part_key(index) for index, path in enumerate(group.raw)})
        else:
            raw_layers[group.raw[0]] = group.base_name
    return base_layers, raw_layers, raw_of


def autocast_findings(inactive: Iterable[str], amp: tuple[str | None, str | None]) -> list[Finding]:
    """One ``amp-inactive`` warning per side whose autocast request changed nothing."""
    requested = dict(zip(("base", "raw"), amp, strict=True))
    return [
        Finding(
            Code.AMP_INACTIVE,
            Severity.WARNING,
            None,
            None,
            f"amp={requested[side]!r} was asked for the {side} model, but none of its layer outputs came out in "
            f"{requested[side]}: its framework's autocast did nothing (paddle 3.3.1 has no bfloat16/float16 CPU "
            "kernels), so it ran in its weights' precision",
            "run it on a device whose kernels support the amp dtype, or cast its weights, to compare in low precision",
        )
        for side in inactive
    ]


def _advancing(sink: Sink, advance: Callable[[], None]) -> Sink:
    """``sink`` that also moves the progress bar one record on."""

    def record(key: RecordKey, value: Any, dtype: str) -> np.ndarray | None:
        advance()
        return sink(key, value, dtype)

    return record


#: ``(atol, rtol, floor)`` of one comparison (:meth:`Tolerance.limits`).
Limits = tuple[float, float, float]

#: A stored base record: the held host array (or its summary in mean mode) and the tensor's dtype.
Stored = tuple["Held | Summary", str]


class BaseStore:
    """The base side's sink: keeps what the raw side will be compared against.

    The raw side may run while the base side still does (``Plan.beside``): until :meth:`base_done`,
    asking for a record that is not there yet waits for it.
    """

    def __init__(
        self,
        adapter: FrameworkAdapter,
        mode: Mode,
        plan: Plan,
        keep_grads: bool,
        spill: Spill,
        whole: Collection[str] = (),
    ) -> None:
        """``whole``: layer paths kept whole in mean mode too (a fused layer's parts, joined later)."""
        self.adapter = adapter
        self.mode = mode
        self.plan = plan
        self.keep_grads = keep_grads
        self.spill = spill
        self.whole = whole
        self.records: dict[RecordKey, Stored] = {}
        self.grads: dict[str, np.ndarray] | None = None
        self._accumulated: dict[str, np.ndarray | None] = {}  # tensor name -> its gradient, final (a view)
        self.done = False  # the base step is over (or failed): no record is coming any more
        self._arrival = Condition()
        self._keeping = Lock()
        self._input_positions: dict[tuple[str, int], list[int]] = {}  # (path, call) -> its inputs' positions
        # few entries: a cached array may hold a tensor's memory (a view)
        self._views = HostCache(adapter, copy=False, size=3)
        self._summaries = HostCache(adapter, copy=False, convert=summarize)

    def keep(self, key: RecordKey, value: Any, dtype: str) -> None:
        full = (
            self.mode is Mode.STRICT
            or (self.plan.single_step and key.stage in ("input", "backward"))
            or key.path in self.whole
        )
        with self._keeping:  # a fused layer's joined parts are kept from the raw side's thread
            held = self.spill.hold(self._views.array(value)) if full else self._summaries.array(value)
        with self._arrival:
            self.records[key] = (held, dtype)
            self._arrival.notify_all()
        if key.stage == "input":
            self._input_positions.setdefault((key.path, key.call), []).append(key.index)

    def arrived(self, key: RecordKey) -> bool:
        """Whether the base side kept a record under ``key``: once it has, or once it is done."""
        with self._arrival:
            self._arrival.wait_for(lambda: self.done or key in self.records)
            return key in self.records

    def watch_gradients(self, model: Any) -> list[RemovableHandle]:
        """Hooks that hold each trainable tensor's gradient once the base backward has accumulated it, for
        :meth:`accumulated_gradient`: only tensors in host memory, whose gradient is read as a view, not a copy
        held to the step's end (a GPU model's); none where gradients are kept past an optimizer step
        (``keep_grads``)."""
        if self.keep_grads or not self.plan.backward:
            return []
        tensors = self.adapter.named_tensors(model)
        return [
            self.adapter.watch_accumulated_grad(tensor, partial(self._accumulated_now, name))
            for name, tensor in tensors.items()
            if self.adapter.requires_grad(tensor) and self.adapter.host_memory(tensor) is not None
        ]

    def _accumulated_now(self, name: str, grad: Any) -> None:
        value = None if grad is None else self.adapter.to_numpy(grad, copy=False)
        with self._arrival:
            self._accumulated[name] = value
            self._arrival.notify_all()

    def accumulated_gradient(self, name: str) -> np.ndarray | None:
        """Base tensor ``name``'s gradient once its backward has accumulated it (:meth:`watch_gradients`);
        ``None`` once the step is over without it (not watched, or no gradient came)."""
        with self._arrival:
            self._arrival.wait_for(lambda: self.done or name in self._accumulated)
            return self._accumulated.get(name)

    def wait_done(self) -> None:
        """Return once the base step is over (its gradients and weights are final)."""
        with self._arrival:
            self._arrival.wait_for(lambda: self.done)

    def pop_inputs(self, step: int, path: str, call: int) -> BaseInputs:
        """The inputs of one base layer call still kept, by position, popped: every one in single-step mode,
        whose raw step starts once the base step is over; those the raw side did not take (its layer takes
        fewer tensors), asked for at the call's first output, once all its inputs came."""
        inputs: BaseInputs = {}
        for index in self._input_positions.pop((path, call), []):
            key = RecordKey(step, "input", path, call, index)
            stored = self.pop(key) if key in self.records else None
            if stored is not None and isinstance(stored[0], np.ndarray):
                inputs[index] = (stored[0], stored[1])
        return inputs

    def pop(self, key: RecordKey) -> tuple[np.ndarray | Summary, str] | None:
        if not self.arrived(key):
            return None
        stored = self.records.pop(key)
        value, dtype = stored
        return (value if isinstance(value, Summary) else self.spill.take(value)), dtype

    def base_done(self) -> None:
        """The base run is over: let go of the views into its tensors (their values are held),
        and start reading back the first spilled records."""
        with self._arrival:
            self.done = True
            self._arrival.notify_all()
        self._views.clear()
        self.spill.read_ahead()

    def snapshot_grads(self, model: Any) -> None:
        """Copy parameter gradients before an optimizer step clears them."""
        if not self.keep_grads:
            return
        self.grads = {}
        for name, tensor in self.adapter.named_tensors(model).items():
            grad = self.adapter.grad(tensor)
            if grad is not None:
                self.grads[name] = grad

    def leftovers(self, step: int, inputs: bool) -> list[str]:
        """Base records the raw side never produced (then released); layer inputs only if ``inputs``."""
        when = f"step {step}, " if step else ""
        keys = [key for key in self.records if inputs or key.stage != "input"]
        found = sorted({f"{key.stage} {key.path} ({when}call {key.call})" for key in keys})
        self.records.clear()
        return found


#: Bytes of raw copies whose comparison may still be running while the raw model goes on.
COMPARING_AHEAD = 32 << 20

#: Elements up to which a comparison runs inline: one pass of the chunked comparison costs
#: less than handing it to the helper thread (a wake-up, and the GIL passed back and forth
#: beside the model's own Python code).
COMPARED_INLINE = CHUNK


@cache
def _comparer() -> ThreadPoolExecutor:
    """One thread comparing arrays beside the models (numpy lets go of the GIL in its loops), behind them."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="padiff_graph_compare", initializer=in_background)


def _now(compare: Callable[[], Verdict]) -> Future[Verdict]:
    """``compare`` run here, as a future like the helper thread's (a failure is raised where its result is
    collected, as the thread's would be, not inside the model's forward)."""
    verdict: Future[Verdict] = Future()
    try:
        verdict.set_result(compare())
    except Exception as error:  # handed on whole, as ThreadPoolExecutor does
        verdict.set_exception(error)
    return verdict


class RawChecker:
    """The raw side's sink: copies each record, compares it with the stored base one in the
    background (inline up to :data:`COMPARED_INLINE` elements), then releases both; :meth:`settle`
    collects the verdicts in record order.
    """

    def __init__(
        self,
        store: BaseStore,
        base: Side,
        raw: Side,
        layer_map: LayerMap,
        raw_of: Mapping[str, str],
        tolerance: Tolerance,
        plan: Plan,
        step: int,
        fused: Sequence[FusedPair] = (),
        kept: KeptCalls | None = None,
    ) -> None:
        """``kept``: told each input and output compared, and each verdict (the first step's)."""
        self.store = store
        self.base = base
        self.raw = raw
        self.layer_map = layer_map
        self.raw_of = raw_of
        self.tolerance = tolerance
        self.plan = plan
        self.step = step
        self.comparisons: list[Comparison] = []
        self.places = TensorPlaces(fused)
        # one entry (a copy): a tensor recorded under several keys comes one key after the other
        self._snapshots = HostCache(raw.adapter, copy=True, size=1)
        self._summaries = HostCache(raw.adapter, copy=False, convert=summarize)
        # weak: a verdict must not keep its arrays alive, only know them while they live
        self._recent_verdicts: deque[tuple[weakref.ref[Any], weakref.ref[Any], Limits, RecordKey, Future[Verdict]]]
        self._recent_verdicts = deque(maxlen=2)
        self._queued: Future[Verdict] | None = None  # the last comparison handed to the helper thread
        self._rows = RowOrders(tolerance)  # used on the comparing thread only
        self._call: tuple[str, int] | None = None  # the layer call whose inputs are being fed (single-step)
        self._call_inputs: BaseInputs = {}  # its base inputs not fed yet
        self.not_fed: list[str] = []  # raw layer inputs no base input corresponds to (single-step)
        self.other_outputs: dict[tuple[str, str], NotCompared] = {}  # containers returning other tensors
        # (base path, raw path, stage, call, index), its verdict to come, bytes of the raw copy
        self._pending: deque[tuple[tuple[str, str, str, int, int], Future[Verdict], int]] = deque()
        self._pending_bytes = 0
        self._normalized = {path for path, _ in plan.variances}
        self.sizes: dict[str, int] = {}  # base path -> elements of its last output (layers in plan.variances)
        self.kept = kept
        # (base path, raw path, tensor index) -> the verdict on a parameter gradient compared during the backward,
        # and the comparison
        self._early: dict[tuple[str, str, int], tuple[Future[Verdict], Callable[[], Verdict]]] = {}
        self._base_tensors: dict[str, Any] | None = None  # looked up once, by the first gradient compared early

    def check(self, key: RecordKey, value: Any, dtype: str) -> np.ndarray | None:
        stored = self._fed_input(key, value, dtype) if self.plan.single_step else self.store.pop(key)
        if stored is None:
            if self.kept is not None and key.stage == "input":  # the base layer takes fewer tensors
                self.kept.unpaired_input(key, "raw", self._snapshots.array(value))
            return None
        base_value, base_dtype = stored
        activation = self.plan.activations.get(key.path) if key.stage in ("forward", "backward") else None
        if activation is not None and (key.stage == "backward" or isinstance(base_value, Summary)):
            return None  # not the same quantity (padiff_graph.run.activations): neither compared nor fed
        if key.stage == "forward" and key.index == 0 and key.path in self._normalized:
            self.sizes[key.path] = int(np.prod(value.shape))  # the batch the layer's statistics come from
        compared = self.plan.forward if key.stage in ("input", "forward") else self.plan.backward
        if compared:
            raw_value = (self._summaries if isinstance(base_value, Summary) else self._snapshots).array(value)
            other_form = key.path in self.plan.containers and not same_elements(base_value.shape, raw_value.shape)
            judged = not (other_form and key.stage == "forward")  # an input of another form still feeds a replay
            if self.kept is not None and isinstance(base_value, np.ndarray) and judged:
                _keep_for_replays(self.kept, self.store, key, base_value, raw_value, base_dtype)
            if other_form:
                raw_path = self.raw_of.get(key.path, key.path)
                why = f"the containers return other tensors ({key.stage} shape {list(base_value.shape)} vs "
                why += f"{list(raw_value.shape)}): code around their layers sits inside one, outside the other"
                self.other_outputs.setdefault((key.path, raw_path), NotCompared(key.path, raw_path, why))
                return None
            if activation is not None:
                base_value, raw_value = _activated(activation, base_value, raw_value)
            verdict = self._verdict(key, base_value, raw_value, base_dtype, dtype)
            raw_path = self.raw_of.get(key.path, key.path)
            nbytes = raw_value.nbytes if isinstance(raw_value, np.ndarray) else 0
            self._pending.append(((key.path, raw_path, key.stage, key.call, key.index), verdict, nbytes))
            self._pending_bytes += nbytes
            self.settle(COMPARING_AHEAD)
        if self.plan.single_step and key.stage in ("input", "backward") and isinstance(base_value, np.ndarray):
            if compared and base_value.ndim == 2:  # rows in another order (padiff_graph.run.rows): only 2-d
                _comparer().submit(int).result()  # every comparison so far is done: is the order another?
            order = self._rows.order(key)
            fed = base_value if order is None else base_value[order]
            shape = tuple(value.shape)
            return fed_value(fed, shape) if key.stage == "input" else fitted(fed, shape, gradient=True)
        return None

    def _fed_input(self, key: RecordKey, value: Any, dtype: str) -> tuple[np.ndarray | Summary, str] | None:
        """The base record for ``key``; for a layer input (single-step mode), the base input of
        that call that corresponds to it (:mod:`padiff_graph.run.feeding`), or ``None``: not fed."""
        if key.stage != "input":
            return self.store.pop(key)
        if self._call != (key.path, key.call):  # a call's inputs come one after the other
            self._call = (key.path, key.call)
            self._call_inputs = self.store.pop_inputs(key.step, key.path, key.call)
        raw_value = self._snapshots.array(value)
        position = corresponding_input(raw_value, key.index, dtype, self._call_inputs, self.tolerance)
        if position is None:
            raw_path = self.raw_of.get(key.path, key.path)
            self.not_fed.append(not_fed(raw_path, key.call, key.index, raw_value, self._call_inputs))
            return None
        return self._call_inputs.pop(position)

    def settle(self, ahead: int | None = None) -> None:
        """Collect the verdicts of the background comparisons, in record order: all of them, or
        until at most ``ahead`` bytes of raw copies wait for theirs."""
        while self._pending and (ahead is None or self._pending_bytes > ahead):
            (base_path, raw_path, stage, call, index), verdict, nbytes = self._pending.popleft()
            self._pending_bytes -= nbytes
            result = verdict.result()
            activation = self.plan.activations.get(base_path) if stage == "forward" else None
            if activation is not None:
                result = replace(result, note="; ".join(filter(None, (result.note, activation.note))))
            self.comparisons.append(Comparison(base_path, raw_path, stage, call, index, result, self.step))
            if self.kept is not None:
                self.kept.settled(self.comparisons[-1])

    def _verdict(
        self, key: RecordKey, base_value: np.ndarray | Summary, raw_value: Any, *dtypes: str
    ) -> Future[Verdict]:
        limits = self.tolerance.limits(*dtypes)
        for seen_base, seen_raw, seen_limits, seen_key, verdict in self._recent_verdicts:
            if seen_base() is base_value and seen_raw() is raw_value and seen_limits == limits:
                # the same two values under another key (a container and its last layer): compared once
                return self._in_order(partial(self._rows.again, seen_key, verdict, key, base_value, raw_value, *dtypes))
        if isinstance(base_value, Summary):
            verdict = _now(partial(self.tolerance.verdict, base_value, raw_value, *dtypes))
        else:
            gradient = key.stage == "backward"
            compare = partial(self._rows.verdict, key, base_value, raw_value, *dtypes, gradient=gradient)
            verdict = self._in_order(compare, inline=base_value.size <= COMPARED_INLINE)
        self._recent_verdicts.append((weakref.ref(base_value), weakref.ref(raw_value), limits, key, verdict))
        return verdict

    def _in_order(self, compare: Callable[[], Verdict], inline: bool = True) -> Future[Verdict]:
        """``compare`` here if ``inline`` and nothing waits on the helper thread, else queued after what
        waits: records are compared in record order (rows in another order follow from earlier records)."""
        if inline and (self._queued is None or self._queued.done()):
            return _now(compare)
        self._queued = _comparer().submit(compare)
        return self._queued

    def watch_gradients(self) -> list[RemovableHandle]:
        """Hooks that hand each parameter gradient to the helper thread as soon as the raw backward has
        accumulated it, to be compared beside the rest of the backward once the base step is over
        (:meth:`compare_tensors` takes the verdicts); gradients are cleared before this step, so the accumulated
        one is the step's.
        A tied tensor's untied raw copies are compared at the end, as a whole."""
        tied = TiedCopies(self.layer_map.active_pairs())
        by_raw: dict[str, list[tuple[LayerPair, int, TensorPair]]] = {}
        for pair in self.layer_map.active_pairs():
            for index, tensor in enumerate(pair.tensors):
                if not tensor.has_constant and join_path(pair.base, tensor.base) not in tied.copies:
                    by_raw.setdefault(join_path(pair.raw, tensor.raw), []).append((pair, index, tensor))
        adapter, raw_tensors = self.raw.adapter, self.raw.adapter.named_tensors(self.raw.model)
        return [
            adapter.watch_accumulated_grad(raw_tensors[name], partial(self._compare_early, raw_tensors[name], entries))
            for name, entries in by_raw.items()
            if name in raw_tensors and adapter.requires_grad(raw_tensors[name])
        ]

    def _compare_early(self, raw_tensor: Any, entries: list[tuple[LayerPair, int, TensorPair]], grad: Any) -> None:
        if grad is None:
            return
        raw_value = self.raw.adapter.to_numpy(grad, copy=False)  # here: a framework is used on its model's thread
        raw_dtype = self.raw.adapter.dtype_name(raw_tensor)
        for pair, index, tensor in entries:
            compare = partial(self._gradient_verdict, tensor, join_path(pair.base, tensor.base), raw_value, raw_dtype)
            self._early[(pair.base, pair.raw, index)] = _comparer().submit(compare), compare

    def _take_queued_gradients(self) -> None:
        """Compare here the gradients queued early (:meth:`watch_gradients`) that the helper thread has not
        started, the last queued first: the raw step is over, and the helper works from the other end."""
        for key, (verdict, compare) in reversed(list(self._early.items())):
            if not verdict.cancel():
                return  # queued before are started or done
            self._early[key] = _now(compare), compare

    def _gradient_verdict(self, tensor: TensorPair, base_name: str, raw_value: np.ndarray, raw_dtype: str) -> Verdict:
        """A parameter gradient's verdict, once the base backward has accumulated its own (the base step may
        still run beside), else once the base step is over."""
        base_value = self.store.accumulated_gradient(base_name)
        if self._base_tensors is None:
            self._base_tensors = self.base.adapter.named_tensors(self.base.model)
        base_tensor = self._base_tensors[base_name]
        if base_value is None:  # not watched, or none came: what the step left
            self.store.wait_done()
            base_value = self._base_grad(base_name, base_tensor)
        dtypes = self.base.adapter.dtype_name(base_tensor), raw_dtype
        return compare_tensor_pair(tensor, base_value, raw_value, self.tolerance, *dtypes)

    def gradients_done(self, raw_call_order: list[str]) -> None:
        """Compare the parameter gradients; then, before the raw optimizer steps, give it the base's
        (:mod:`padiff_graph.run.gradient_feed`): the weights after the step compare the optimizers."""
        self.compare_tensors("grad", raw_call_order)
        if self.raw.optimizer is not None and self.store.grads is not None:
            feed_base_gradients(self.layer_map, self.store.grads, self.raw.adapter, self.raw.model)

    def compare_tensors(self, stage: str, raw_call_order: list[str]) -> None:
        """Parameter gradients (``grad``) or weights after the step (``weights``), last-called layer first."""
        if stage == "grad":
            self._take_queued_gradients()
        self.settle()
        if not self.plan.backward:
            return
        self.store.wait_done()
        base_adapter, raw_adapter = self.base.adapter, self.raw.adapter
        base_tensors = base_adapter.named_tensors(self.base.model)
        raw_tensors = raw_adapter.named_tensors(self.raw.model)
        rank = {path: index for index, path in enumerate(raw_call_order)}
        tied = TiedCopies(self.layer_map.active_pairs())
        verdicts: list[tuple[LayerPair, TensorPair, int, Future[Verdict]]] = []
        large = 0  # large comparisons alternate between the helper thread and this one: both models are idle
        for pair in sorted(self.layer_map.active_pairs(), key=lambda pair: -rank.get(pair.raw, -1)):
            for index, tensor in enumerate(pair.tensors):
                if tensor.has_constant:
                    continue  # a tensor one layer lacks (torch InstanceNorm2d() against paddle's scale)
                early = self._early.pop((pair.base, pair.raw, index), None) if stage == "grad" else None
                if early is not None:  # compared as the backward went on (watch_gradients)
                    verdicts.append((pair, tensor, index, early[0]))
                    continue
                base_name = join_path(pair.base, tensor.base)
                base_tensor, raw_tensor = base_tensors[base_name], raw_tensors[join_path(pair.raw, tensor.raw)]
                # views, not copies: each pair is compared here and now, before either model moves on
                if stage == "grad":
                    base_value = self._base_grad(base_name, base_tensor)
                    raw_value = raw_adapter.grad(raw_tensor, copy=False)
                    if base_value is None and raw_value is None:
                        continue
                else:
                    base_value = base_adapter.to_numpy(base_tensor, copy=False)
                    raw_value = raw_adapter.to_numpy(raw_tensor, copy=False)
                dtypes = (base_adapter.dtype_name(base_tensor), raw_adapter.dtype_name(raw_tensor))
                compare = partial(compare_tensor_pair, tensor, base_value, raw_value, self.tolerance, *dtypes)
                variance = (pair.base, tensor.base) in self.plan.variances and pair.base in self.sizes
                if variance and base_value is not None and raw_value is not None:  # weights after the step
                    per_channel = self.sizes[pair.base] // max(base_value.size, 1)
                    compare = partial(
                        compare_running_variance, tensor, base_value, raw_value, per_channel, self.tolerance, *dtypes
                    )
                place = pair, tensor
                if base_name in tied.copies:  # one tensor held as untied raw copies: compared once, as a whole
                    if not tied.first(stage, base_name):
                        continue
                    if stage == "grad":
                        raw_values = partial(_raw_value, raw_adapter.grad, raw_tensors)
                        compare = partial(tied.gradient_verdict, base_name, base_value, raw_values, self.tolerance)
                    else:
                        raw_values = partial(_raw_value, raw_adapter.to_numpy, raw_tensors)
                        compare = partial(tied.weights_verdict, base_name, base_value, raw_values, self.tolerance)
                        place = tied.weights_place(base_name) or place
                    compare = partial(compare, *dtypes)
                big = base_value is not None and base_value.size > COMPARED_INLINE
                large += big
                beside = big and large % 2 == 1
                verdicts.append((*place, index, _comparer().submit(compare) if beside else _now(compare)))
        for pair, tensor, index, verdict in verdicts:
            base_path, raw_path, label = self.places.place(pair, tensor)  # a fused tensor: its fused pair's
            self.comparisons.append(
                Comparison(base_path, raw_path, f"{stage}:{label}", 0, index, verdict.result(), self.step)
            )

    def _base_grad(self, name: str, tensor: Any) -> np.ndarray | None:
        if self.store.grads is not None:
            return self.store.grads.get(name)
        return self.base.adapter.grad(tensor, copy=False)


def _keep_for_replays(
    kept: KeptCalls, store: BaseStore, key: RecordKey, base: np.ndarray, raw: np.ndarray, base_dtype: str
) -> None:
    """Hand ``kept`` a layer input or output as the raw side compares it (an input also where the containers'
    shapes differ: a replay feeds it by value); at a call's first output, the base layer's inputs the raw one
    has none for (it takes fewer tensors)."""
    if key.stage == "forward" and key.index == 0:
        for index, (array, _) in store.pop_inputs(key.step, key.path, key.call).items():
            kept.unpaired_input(replace(key, stage="input", index=index), "base", array)
    kept.compared(key, base, raw, base_dtype)


def _activated(activation: BuiltinActivation, base: Any, raw: np.ndarray) -> tuple[Any, np.ndarray]:
    """The pair's outputs with ``activation`` applied to the side whose layer does not apply it."""
    if activation.inside == "base":
        return base, activation.apply(raw)
    return activation.apply(base), raw


def _raw_value(value: Callable[[Any], np.ndarray | None], tensors: Mapping[str, Any], name: str) -> np.ndarray | None:
    """``value`` (the adapter's ``grad`` or ``to_numpy``) of the raw tensor ``name``, a copy."""
    return value(tensors[name])


class FusedChecker:
    """The raw side's sink where fused layers meet their parts: the parts' records are joined as
    the fused layer's, and the two compared as one record of the fused pair; other records go
    straight to the :class:`RawChecker`.

    Base parts are kept whole by the :class:`BaseStore` and joined when the raw fused layer's
    record comes; raw parts are copied until the last of them comes, then joined and compared
    with the stored base record. A layer input is the first part's to run (single-step mode
    feeds the base's input to every raw part; a raw part's output gradient is not replaced).
    """

    def __init__(self, fused: Sequence[FusedPair], store: BaseStore, checker: RawChecker) -> None:
        self.store = store
        self.checker = checker
        self._fused = {group.base_name: group for group in fused if not group.base_fused}
        self._parts = {
            group.part_key(i): (group, i) for group in fused if group.base_fused for i in range(len(group.raw))
        }
        self._waiting: dict[RecordKey, dict[int, np.ndarray]] = {}
        self._inputs: dict[RecordKey, tuple[np.ndarray | None, set[int]]] = {}  # and the parts served

    def check(self, key: RecordKey, value: Any, dtype: str) -> np.ndarray | None:
        if key.path in self._fused:
            self._join_base_parts(key, self._fused[key.path], tuple(value.shape))
        elif key.path in self._parts:
            return self._raw_part(key, *self._parts[key.path], value, dtype)
        return self.checker.check(key, value, dtype)

    def _join_base_parts(self, key: RecordKey, group: FusedPair, shape: tuple[int, ...]) -> None:
        """Store the base parts' records, joined, as the base record of ``key`` (left alone unless all are there)."""
        part_keys = [replace(key, path=path) for path in group.base]
        if not all(self.store.arrived(part) for part in part_keys):
            return
        values, dtypes = [], []
        for part in part_keys:
            popped = self.store.pop(part)
            if popped is not None and isinstance(popped[0], np.ndarray):  # parts are kept whole
                values.append(popped[0])
                dtypes.append(popped[1])
        if len(values) == len(part_keys):
            self.store.keep(key, values[0] if key.stage == "input" else joined(shape, values), dtypes[0])

    def _raw_part(self, key: RecordKey, group: FusedPair, index: int, value: Any, dtype: str) -> np.ndarray | None:
        """A raw part's record: compared once every part's record of the same call and position has come."""
        fused_key = replace(key, path=group.base_name)
        if key.stage == "input":  # compared at the first part to run; its replacement serves every part
            if fused_key not in self._inputs:
                self._inputs[fused_key] = (self.checker.check(fused_key, value, dtype), set())
            replacement, served = self._inputs[fused_key]
            served.add(index)
            if len(served) == len(group.raw):
                del self._inputs[fused_key]
            return replacement if replacement is not None and replacement.shape == tuple(value.shape) else None
        waiting = self._waiting.setdefault(fused_key, {})
        waiting[index] = self.checker.raw.adapter.to_numpy(value, copy=True)
        if len(waiting) < len(group.raw):
            return None
        del self._waiting[fused_key]
        stored = self.store.records.get(fused_key) if self.store.arrived(fused_key) else None
        if stored is not None:
            self.checker.check(fused_key, joined(stored[0].shape, [waiting[i] for i in range(len(group.raw))]), dtype)
        return None
