"""Numeric comparison of two arrays: strict (elementwise) or mean.

The base array is the reference, as in ``numpy.allclose(raw, base)``:
``|raw - base| <= atol + rtol * |base|``. The reported relative error is
``|raw - base| / max(|base|, atol, eps * max|base|)``, ``eps`` being the
resolution of the compared dtype: a value that is zero at the tensor's
precision (1e-30 beside values near 1) is no denominator, so a correct layer
never reports a relative error of 1e21. NaN in the same places on both
sides is equal; NaN or Inf on one side only is a divergence, never a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

import numpy as np

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


def default_tolerance(*dtypes: str) -> tuple[float, float]:
    """Tolerances for the least precise of ``dtypes`` (fp32 if none is floating)."""
    floating = [d for d in dtypes if d in DEFAULT_TOLERANCES]
    if not floating:
        return DEFAULT_TOLERANCES["float32"]
    return DEFAULT_TOLERANCES[min(floating, key=_PRECISION_ORDER.index)]


@dataclass(frozen=True)
class Verdict:
    """Outcome of comparing one raw array against its base."""

    ok: bool
    max_abs: float
    max_rel: float
    note: str = ""


@dataclass(frozen=True)
class Summary:
    """What mean mode keeps of a tensor instead of its elements."""

    mean: float
    shape: tuple[int, ...]
    finite: bool


def summarize(array: np.ndarray) -> Summary:
    """The mean and shape of ``array``."""
    mean = float(np.mean(array)) if array.size else 0.0  # pairwise summation: accurate in float32
    return Summary(mean, tuple(array.shape), bool(np.isfinite(mean)))


def compare_summary(base: Summary, raw: Summary | np.ndarray, atol: float, rtol: float) -> Verdict:
    """Mean mode against a stored :class:`Summary` of the base."""
    raw_summary = raw if isinstance(raw, Summary) else summarize(raw)
    if base.shape != raw_summary.shape and int(np.prod(base.shape)) != int(np.prod(raw_summary.shape)):
        return Verdict(False, float("inf"), float("inf"), f"shape {list(base.shape)} vs {list(raw_summary.shape)}")
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


def _working_dtype(*arrays: np.ndarray) -> type[np.floating]:
    """float64 only where an input needs it: the difference of two close fp32 numbers is exact in fp32."""
    if any(array.dtype.itemsize > 4 or not np.issubdtype(array.dtype, np.floating) for array in arrays):
        return np.float64
    return np.float32


def compare_arrays(base: np.ndarray, raw: np.ndarray, atol: float, rtol: float, mode: Mode) -> Verdict:
    """Compare ``raw`` against the reference ``base``."""
    if base.shape != raw.shape:
        if base.size != raw.size or np.squeeze(base).shape != np.squeeze(raw).shape:
            return Verdict(False, float("inf"), float("inf"), f"shape {list(base.shape)} vs {list(raw.shape)}")
        base, raw = np.squeeze(base), np.squeeze(raw)
    work = _working_dtype(base, raw)
    reference = np.atleast_1d(base.astype(work, copy=False))
    value = np.atleast_1d(raw.astype(work, copy=False))
    if mode is Mode.MEAN:
        return _compare_means(reference, value, atol, rtol)
    verdict = _strict_in_chunks(reference.reshape(-1), value.reshape(-1), atol, rtol)
    if verdict is not None:
        return verdict
    # NaN or Inf somewhere: equal only if in the same places with the same values
    bad = _non_finite(reference, value)
    if bad is not None:
        return bad
    finite = np.isfinite(reference)
    if not finite.any():
        return Verdict(True, 0.0, 0.0)
    verdict = _strict_in_chunks(reference[finite], value[finite], atol, rtol)
    return verdict if verdict is not None else Verdict(False, float("inf"), float("inf"), "non-finite values")


#: Elements per pass of the strict comparison: the scratch buffers stay in the CPU cache,
#: so each array is read from memory once however many numpy passes a chunk takes.
CHUNK = 1 << 16


def _strict_in_chunks(reference: np.ndarray, value: np.ndarray, atol: float, rtol: float) -> Verdict | None:
    """Elementwise allclose on flat arrays, with max abs/rel differences; ``None`` on NaN/Inf."""
    size = reference.size
    if size == 0:
        return Verdict(True, 0.0, 0.0)
    difference = np.empty(min(size, CHUNK), reference.dtype)
    magnitude = np.empty_like(difference)
    floor = max(atol, 1e-30)
    resolution = float(np.finfo(reference.dtype).eps)
    max_abs = max_rel = 0.0
    ok = True
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, size, CHUNK):
            base_part, raw_part = reference[start : start + CHUNK], value[start : start + CHUNK]
            part = difference[: base_part.size]
            scale = magnitude[: base_part.size]
            np.subtract(raw_part, base_part, out=part)
            np.abs(part, out=part)
            part_max = float(part.max())
            if not np.isfinite(part_max):
                return None
            np.abs(base_part, out=scale)
            # part_max <= atol is the common case: no element can fail, skip the elementwise test
            if ok and part_max > atol:
                ok = bool((part <= atol + rtol * scale).all())
            np.maximum(scale, max(floor, resolution * float(scale.max())), out=scale)
            np.divide(part, scale, out=scale)
            max_abs = max(max_abs, part_max)
            max_rel = max(max_rel, float(scale.max()))
    return Verdict(ok, max_abs, max_rel)


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


def _compare_means(reference: np.ndarray, value: np.ndarray, atol: float, rtol: float) -> Verdict:
    bad = _non_finite(reference, value)
    if bad is not None:
        return bad
    finite = np.isfinite(reference)
    if not finite.all():
        reference, value = reference[finite], value[finite]
    if reference.size == 0:
        return Verdict(True, 0.0, 0.0)
    difference = np.abs(value - reference)
    max_abs = float(difference.max())
    magnitude = np.abs(reference)
    floor = max(atol, 1e-30, float(np.finfo(reference.dtype).eps) * float(magnitude.max()))
    max_rel = float((difference / np.maximum(magnitude, floor)).max())
    base_mean, raw_mean = float(reference.mean(dtype=np.float64)), float(value.mean(dtype=np.float64))
    return Verdict(abs(raw_mean - base_mean) <= atol + rtol * abs(base_mean), max_abs, max_rel)


@dataclass(frozen=True)
class Tolerance:
    """How close is close enough.

    ``atol``/``rtol`` are the values in force for the models' precision;
    unless ``fixed`` (the user gave them), each comparison widens them to
    the least precise dtype of its two tensors (:meth:`for_dtypes`).
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

    def for_dtypes(self, *dtypes: str) -> tuple[float, float]:
        if self.fixed:
            return self.atol, self.rtol
        return default_tolerance(*self.context, *dtypes)

    def verdict(self, base: np.ndarray, raw: np.ndarray, *dtypes: str) -> Verdict:
        """:func:`compare_arrays` under the tolerance for ``dtypes``."""
        atol, rtol = self.for_dtypes(*dtypes)
        return compare_arrays(base, raw, atol, rtol, self.mode)


def compare_tensor_pair(
    tensor: TensorPair, base_value: np.ndarray | None, raw_value: np.ndarray | None, tolerance: Tolerance, *dtypes: str
) -> Verdict:
    """A parameter gradient or weight through the map: the base value transformed against the raw region."""
    if base_value is None or raw_value is None:
        missing = "base" if base_value is None else "raw"
        return Verdict(False, float("inf"), float("inf"), f"no gradient on the {missing} side")
    expected = tensor.transform.apply(base_value)
    region = raw_value[tensor.transform.raw_index] if tensor.transform.raw_index else raw_value
    return tolerance.verdict(expected, region, *dtypes)
