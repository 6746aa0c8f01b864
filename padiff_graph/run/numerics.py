"""Numeric comparison of two arrays: relative to magnitude (the default), strict (elementwise) or mean.

By default a record is judged by its *scaled error*, ``max|raw - base| /
max(max|base|, max|raw|)``: the error relative to the tensor's magnitude,
against the noise one layer can produce in the tensor's dtype
(:data:`NOISE_FLOORS`); whether an error over that floor is the layer's own or
inherited from the layers before it is decided over the whole run
(:func:`padiff_graph.run.results.attribute`). With ``atol``/``rtol`` given, the
base array is the reference, as in ``numpy.allclose(raw, base)``:
``|raw - base| <= atol + rtol * |base|``. The reported relative error is
``|raw - base| / max(|base|, atol, eps * max|base|)``, ``eps`` being the
resolution of the compared dtype: a value that is zero at the tensor's
precision (1e-30 beside values near 1) is no denominator, so a correct layer
never reports a relative error of 1e21. NaN in the same places on both
sides is equal; NaN or Inf on one side only is a divergence, never a crash.
Tensors whose shapes differ but broadcast to each other, or hold the same
number of elements (another view), are compared as such, and the verdict says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from padiff_graph.core.arrays import contiguous, pieces
from padiff_graph.core.transforms import TensorPair


class Mode(str, Enum):
    STRICT = "strict"
    MEAN = "mean"


#: (atol, rtol) by the lower precision of the two sides. The fp32 values
#: leave room for cross-framework kernel differences (a paddle.vision
#: ResNet-18 against torch drifts up to ~9e-5) and still catch an
#: approximate GELU (3e-4) at its layer.
DEFAULT_TOLERANCES: dict[str, tuple[float, float]] = {
    "float64": (1e-7, 1e-6),
    "float32": (1e-4, 1e-3),
    "float16": (5e-3, 5e-3),
    "bfloat16": (3e-2, 3e-2),
}
_PRECISION_ORDER = ("bfloat16", "float16", "float32", "float64")
#: The floating dtypes below float32, whose rounding can flip a discrete choice float32's would not.
LOW_PRECISION = frozenset(_PRECISION_ORDER[:2])

#: The scaled error (``max|raw - base|`` over the tensor's largest magnitude) one layer can
#: produce in each dtype from rounding and kernel differences alone. Measured on correct
#: ports (ResNet-50, Llama, BERT, 5 seeds, docs/diff.md): a layer's own error stays within
#: 6e-6 in float32 and 8e-3 with a bfloat16 base; a planted bug inside a layer shows 0.42
#: or more, a GELU where the base has a ReLU 4e-2. The floors leave a margin over the noise
#: (float16 keeps 3 more mantissa bits than bfloat16, float64 29 more than float32) and stay
#: below the faults a port makes: an approximate GELU is 1e-4 of its output's magnitude.
NOISE_FLOORS: dict[str, float] = {
    "float64": 1e-11,
    "float32": 3e-5,
    "float16": 5e-3,
    "bfloat16": 2e-2,
}

#: How many times the largest scaled error of the records before it (in the same step) a
#: record's error must be to be the layer's own rather than inherited: the error a correct
#: layer passes on grows at most 1.8x from one layer to the next on the pairs above, while
#: a bug shows at 48x or more.
GROWTH_LIMIT = 8.0

#: The scaled error below which an output or parameter gradient is never a layer's own:
#: a backward pass through an ill-conditioned layer (a softmax over large scores) amplifies
#: the forward's rounding error many times in one layer, up to 1.2e-2 of the magnitude of a
#: correct fp32 attention's query gradient (scores ~700, tests/test_conversions.py), while a
#: layer with a wrong backward shows 0.4 or more.
GRADIENT_MINIMUM = 5e-2


def least_precise(*dtypes: str) -> str:
    """The least precise floating dtype of ``dtypes`` (float32 if none is floating)."""
    floating = [d for d in dtypes if d in DEFAULT_TOLERANCES]
    return min(floating, key=_PRECISION_ORDER.index) if floating else "float32"


def default_tolerance(*dtypes: str) -> tuple[float, float]:
    """Tolerances for the least precise of ``dtypes`` (fp32 if none is floating)."""
    return DEFAULT_TOLERANCES[least_precise(*dtypes)]


@dataclass(frozen=True)
class Verdict:
    """Outcome of comparing one raw array against its base.

    ``magnitude`` is ``max|base|``; ``scaled`` is ``max_abs`` over it (or over a
    larger reference: :func:`padiff_graph.run.results.attribute`); ``floor`` the noise
    floor it was judged against (0 when ``atol``/``rtol`` decided, elementwise);
    ``inherited`` marks an error over the floor that the layers before it explain
    (accumulated noise: reported, not a divergence).
    """

    ok: bool
    max_abs: float
    max_rel: float
    note: str = ""
    scaled: float = 0.0
    floor: float = 0.0
    inherited: bool = False
    magnitude: float = 0.0
    #: no value was compared: the two tensors' shapes hold other numbers of elements that do not broadcast,
    #: or one holds complex values and the other real ones
    other_form: bool = False


@dataclass(frozen=True)
class Summary:
    """What mean mode keeps of a tensor instead of its elements."""

    mean: float
    shape: tuple[int, ...]
    finite: bool
    complex: bool = False


def summarize(array: np.ndarray) -> Summary:
    """The mean and shape of ``array`` (complex values: of their real and imaginary parts)."""
    values = real_pairs(array) if np.iscomplexobj(array) else array
    mean = float(np.mean(values)) if values.size else 0.0  # pairwise summation: accurate in float32
    return Summary(mean, tuple(values.shape), bool(np.isfinite(mean)), np.iscomplexobj(array))


def real_pairs(array: np.ndarray) -> np.ndarray:
    """Complex values as (real, imaginary) pairs along a last axis of two, so that both parts are compared."""
    return np.stack([array.real, array.imag], axis=-1)


def compare_summary(base: Summary, raw: Summary | np.ndarray, atol: float, rtol: float) -> Verdict:
    """Mean mode against a stored :class:`Summary` of the base."""
    raw_summary = raw if isinstance(raw, Summary) else summarize(raw)
    if base.complex != raw_summary.complex:
        return Verdict(False, float("inf"), float("inf"), _kinds(base.complex, raw_summary.complex), other_form=True)
    if base.shape != raw_summary.shape and not same_elements(base.shape, raw_summary.shape):
        note = f"shape {list(base.shape)} vs {list(raw_summary.shape)}"
        return Verdict(False, float("inf"), float("inf"), note, other_form=True)
    if not (base.finite and raw_summary.finite):
        same = np.isnan(base.mean) == np.isnan(raw_summary.mean) and (
            np.isnan(base.mean) or base.mean == raw_summary.mean
        )
        if same:
            return Verdict(True, 0.0, 0.0)
        side = "raw" if not raw_summary.finite else "base"
        return Verdict(False, float("inf"), float("inf"), f"non-finite mean in {side} only")
    difference = abs(raw_summary.mean - base.mean)
    ok = difference <= atol + rtol * abs(base.mean)
    return Verdict(ok, difference, difference / max(abs(base.mean), atol, 1e-30), "means compared")


def _kinds(base_complex: bool, raw_complex: bool) -> str:
    """The note of a record holding complex values on one side only."""
    return f"{'complex' if base_complex else 'real'} vs {'complex' if raw_complex else 'real'} values"


def same_elements(first: tuple[int, ...], second: tuple[int, ...]) -> bool:
    """Whether two shapes hold the same elements: another view, or one broadcast to the other."""
    if int(np.prod(first)) == int(np.prod(second)):
        return True
    try:
        return np.broadcast_shapes(first, second) in (first, second)
    except ValueError:
        return False


def _working_dtype(*arrays: np.ndarray) -> type[np.floating]:
    """float64 only where an input needs it: the difference of two close fp32 numbers is exact in fp32."""
    if any(array.dtype.itemsize > 4 or not np.issubdtype(array.dtype, np.floating) for array in arrays):
        return np.float64
    return np.float32


def compare_arrays(
    base: np.ndarray, raw: np.ndarray, atol: float, rtol: float, mode: Mode, floor: float = 0.0, gradient: bool = False
) -> Verdict:
    """Compare ``raw`` against the reference ``base``: elementwise under ``atol``/``rtol``, or,
    with a ``floor``, by scaled error. ``gradient``: a broadcast tensor's gradient is summed over
    the broadcast axes rather than broadcast."""
    if np.iscomplexobj(base) != np.iscomplexobj(raw):
        note = _kinds(np.iscomplexobj(base), np.iscomplexobj(raw))
        return Verdict(False, float("inf"), float("inf"), note, floor=floor, other_form=True)
    if np.iscomplexobj(base):
        base, raw = real_pairs(base), real_pairs(raw)
    aligned = _aligned(base, raw, gradient)
    if aligned is None:
        note = f"shape {list(base.shape)} vs {list(raw.shape)}"
        return Verdict(False, float("inf"), float("inf"), note, floor=floor, other_form=True)
    base, raw, how = aligned
    verdict = _compare_aligned(base, raw, atol, rtol, mode, floor)
    return replace(verdict, note=f"{verdict.note}; {how}" if verdict.note else how) if how else verdict


def _aligned(base: np.ndarray, raw: np.ndarray, gradient: bool) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The two arrays in one shape, and how they got there (``""`` if nothing to say); ``None`` if they cannot be.

    Shapes that differ by size-1 axes, or that hold the same elements in another view
    (HF's MoE flattens tokens to ``[64, 96]`` where a port keeps ``[2, 32, 96]``), are
    reshaped; a shape that broadcasts to the other one (a rotary table built for a batch
    of 1 against one built for the batch) is broadcast, or, for a gradient, the larger
    one summed over the broadcast axes.
    """
    if base.shape == raw.shape:
        return base, raw, ""
    if base.size == raw.size:
        if np.squeeze(base).shape == np.squeeze(raw).shape:
            return np.squeeze(base), np.squeeze(raw), ""
        how = f"the same elements in another view: {list(base.shape)} vs {list(raw.shape)}"
        return base, raw.reshape(base.shape), how
    try:
        target = np.broadcast_shapes(base.shape, raw.shape)
    except ValueError:
        return None
    if target not in (base.shape, raw.shape):
        return None
    small, large = (base, raw) if target == raw.shape else (raw, base)
    if gradient:
        axes = _broadcast_axes(small.shape, large.shape)
        summed = contiguous(large).sum(axis=axes, dtype=np.float64).reshape(small.shape)  # in C order
        pair = (base, summed) if large is raw else (summed, raw)
        return *pair, f"gradient of {list(large.shape)} summed to {list(small.shape)} (a broadcast tensor)"
    expanded = np.broadcast_to(small, target)
    pair = (expanded, raw) if small is base else (base, expanded)
    return *pair, f"compared after broadcasting {list(small.shape)} to {list(target)}"


def fitted(base: np.ndarray, shape: tuple[int, ...], gradient: bool) -> np.ndarray | None:
    """``base`` in the raw tensor's ``shape``, to feed into the raw model (single-step mode): as is,
    in another view, broadcast, or (a gradient) summed over the broadcast axes; ``None`` if it cannot be."""
    if base.shape == shape:
        return base
    if base.size == int(np.prod(shape)):
        return base.reshape(shape)
    try:
        target = np.broadcast_shapes(base.shape, shape)
    except ValueError:
        return None
    if not gradient and target == shape:
        return np.ascontiguousarray(np.broadcast_to(base, shape))
    if gradient and target == base.shape:
        return base.sum(axis=_broadcast_axes(shape, base.shape), dtype=base.dtype).reshape(shape)
    return None


def _broadcast_axes(small: tuple[int, ...], large: tuple[int, ...]) -> tuple[int, ...]:
    """The axes of ``large`` that broadcasting ``small`` to it repeats."""
    offset = len(large) - len(small)
    return tuple(
        axis for axis in range(len(large)) if axis < offset or (small[axis - offset] == 1 and large[axis] != 1)
    )


def _compare_aligned(base: np.ndarray, raw: np.ndarray, atol: float, rtol: float, mode: Mode, floor: float) -> Verdict:
    work = _working_dtype(base, raw)
    reference = np.atleast_1d(base.astype(work, copy=False))
    value = np.atleast_1d(raw.astype(work, copy=False))
    if mode is not Mode.MEAN:
        return _measured(reference, value, atol, rtol, floor)[0]
    # mean mode: the largest differences measured as strict mode measures them, the means judged (summed in
    # C order, as laid out in memory: a transposed gradient is copied in tiles, numpy's passes over it are slow)
    reference, value = contiguous(reference).reshape(-1), contiguous(value).reshape(-1)
    spread, reference, value = _measured(reference, value, atol, rtol, 0.0)
    if reference.size == 0:
        return spread
    base_mean, raw_mean = float(reference.mean(dtype=np.float64)), float(value.mean(dtype=np.float64))
    return replace(spread, ok=abs(raw_mean - base_mean) <= atol + rtol * abs(base_mean))


def _measured(
    reference: np.ndarray, value: np.ndarray, atol: float, rtol: float, floor: float
) -> tuple[Verdict, np.ndarray, np.ndarray]:
    """:func:`_strict_in_chunks` over ``reference`` and ``value`` (one shape), and the elements it was taken over:
    all of them; where NaN or Inf is somewhere, the finite ones (flat) if the others sit in the same places with
    the same values on both sides, else none, under a failing verdict."""
    verdict = _strict_in_chunks(reference, value, atol, rtol, floor)
    if verdict is not None:
        return verdict, reference, value
    none = reference[:0], value[:0]
    bad = _non_finite(reference, value)
    if bad is not None:
        return replace(bad, floor=floor), *none
    finite = np.isfinite(reference)
    reference, value = reference[finite], value[finite]
    verdict = _strict_in_chunks(reference, value, atol, rtol, floor)
    if verdict is None:
        return Verdict(False, float("inf"), float("inf"), "non-finite values"), *none
    return verdict, reference, value


#: Elements per pass of the strict comparison: the scratch buffers stay in the CPU cache,
#: so each array is read from memory once however many numpy passes a chunk takes.
CHUNK = 1 << 16


def _strict_in_chunks(
    reference: np.ndarray, value: np.ndarray, atol: float, rtol: float, floor: float
) -> Verdict | None:
    """Max abs/rel differences and the scaled error of two arrays of one shape, judged elementwise
    (no ``floor``) or by scaled error; ``None`` on NaN/Inf. Taken :data:`CHUNK` elements at a time in C order
    (:func:`~padiff_graph.core.arrays.pieces`: a transposed gradient is read once, in tiles)."""
    size = reference.size
    if size == 0:
        return Verdict(True, 0.0, 0.0, floor=floor)
    difference = np.empty(min(size, CHUNK), reference.dtype)
    magnitude = np.empty_like(difference)
    smallest = max(atol, 1e-30)  # relative to |base|, floored at atol so exact zeros do not report 1e300
    resolution = float(np.finfo(reference.dtype).eps)  # values zero at the tensor's precision are no denominator
    max_abs = max_rel = largest = 0.0
    ok = True
    with np.errstate(invalid="ignore", over="ignore"):
        for base_part, raw_part in zip(pieces(reference, CHUNK), pieces(value, CHUNK), strict=True):
            part = difference[: base_part.size]
            scale = magnitude[: base_part.size]
            np.subtract(raw_part, base_part, out=part)
            np.abs(part, out=part)
            part_max = float(part.max())
            if not np.isfinite(part_max):
                return None
            np.abs(base_part, out=scale)
            largest = max(largest, float(scale.max()))
            # part_max <= atol is the common case: no element can fail, skip the elementwise test
            if not floor and ok and part_max > atol:
                ok = bool((part <= atol + rtol * scale).all())
            np.maximum(scale, max(smallest, resolution * float(scale.max())), out=scale)
            np.divide(part, scale, out=scale)
            max_abs = max(max_abs, part_max)
            max_rel = max(max_rel, float(scale.max()))
    scaled = max_abs / largest if largest else float(max_abs > 0)
    if floor:
        ok = scaled <= floor
    return Verdict(ok, max_abs, max_rel, scaled=scaled, floor=floor, magnitude=largest)


def _non_finite(reference: np.ndarray, value: np.ndarray) -> Verdict | None:
    """A failing verdict if NaN/Inf differ in place or value between the sides, else ``None``."""
    base_bad, raw_bad = ~np.isfinite(reference), ~np.isfinite(value)
    same_places = np.array_equal(base_bad, raw_bad) and np.array_equal(
        reference[base_bad], value[raw_bad], equal_nan=True
    )
    if same_places:
        return None
    side = "raw" if raw_bad.sum() >= base_bad.sum() else "base"
    kind = "NaN" if np.isnan(value if side == "raw" else reference).any() else "Inf"
    return Verdict(False, float("inf"), float("inf"), f"{kind} in {side} only")


@dataclass(frozen=True)
class Tolerance:
    """How close is close enough.

    ``atol``/``rtol`` are the values in force for the models' precision.
    ``fixed`` (the user gave them): every comparison is elementwise under them.
    Otherwise each comparison follows the least precise dtype of the models and
    its two tensors (:meth:`limits`): strict mode judges the scaled error against
    that dtype's noise floor, mean mode the means under its default tolerances.
    """

    atol: float
    rtol: float
    mode: Mode
    fixed: bool = True
    context: tuple[str, ...] = ()

    @classmethod
    def chosen(cls, atol: float | None, rtol: float | None, mode: Mode, dtypes: Iterable[str]) -> Tolerance:
        """The user's ``atol``/``rtol`` if either is given (fixed), else the defaults for ``dtypes``."""
        context = {dtype for dtype in dtypes if dtype in DEFAULT_TOLERANCES}
        default_atol, default_rtol = default_tolerance(*context)
        return cls(
            default_atol if atol is None else atol,
            default_rtol if rtol is None else rtol,
            mode,
            fixed=atol is not None or rtol is not None,
            context=tuple(sorted(context)),
        )

    def limits(self, *dtypes: str) -> tuple[float, float, float]:
        """``(atol, rtol, floor)`` for two tensors of ``dtypes``; a floor of 0: judged elementwise."""
        if self.fixed:
            return self.atol, self.rtol, 0.0
        precision = least_precise(*self.context, *dtypes)
        atol, rtol = DEFAULT_TOLERANCES[precision]
        return atol, rtol, NOISE_FLOORS[precision] if self.mode is Mode.STRICT else 0.0

    def verdict(self, base: np.ndarray | Summary, raw: np.ndarray, *dtypes: str, gradient: bool = False) -> Verdict:
        """:func:`compare_arrays` (or :func:`compare_summary`) under the limits for ``dtypes``."""
        atol, rtol, floor = self.limits(*dtypes)
        if isinstance(base, Summary):
            return compare_summary(base, raw, atol, rtol)
        return compare_arrays(base, raw, atol, rtol, self.mode, floor, gradient)


def compare_tensor_pair(
    tensor: TensorPair, base_value: np.ndarray | None, raw_value: np.ndarray | None, tolerance: Tolerance, *dtypes: str
) -> Verdict:
    """A parameter gradient or weight through the map: the base value transformed against the raw region."""
    if base_value is None or raw_value is None:
        missing = "base" if base_value is None else "raw"
        present = raw_value if base_value is None else base_value
        if present is not None and not np.any(present):
            # an expert no token was routed to: one framework leaves it out of the graph, the other runs it empty
            note = f"no gradient on the {missing} side, and a zero one on the other: nothing reached the loss"
            return Verdict(True, 0.0, 0.0, note)
        return Verdict(False, float("inf"), float("inf"), f"no gradient on the {missing} side")
    return tolerance.verdict(*through_map(tensor, base_value, raw_value), *dtypes)


def through_map(tensor: TensorPair, base_value: np.ndarray, raw_value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The base value transformed as the map writes it (a view where the transform allows: a transposed
    weight is compared in tiles, :func:`_strict_in_chunks`), and the raw region it is written into."""
    region = raw_value[tensor.transform.raw_index] if tensor.transform.raw_index else raw_value
    return tensor.transform.view(base_value), region
