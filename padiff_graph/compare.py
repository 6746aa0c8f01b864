"""Numeric comparison of two arrays: strict (elementwise) or mean.

The base array is the reference, as in ``numpy.allclose(raw, base)``:
``|raw - base| <= atol + rtol * |base|``. The reported relative error is
``|raw - base| / max(|base|, atol)``. NaN in the same places on both
sides is equal; NaN or Inf on one side only is a divergence, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


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


def compare_arrays(base: np.ndarray, raw: np.ndarray, atol: float, rtol: float, mode: Mode) -> Verdict:
    """Compare ``raw`` against the reference ``base``."""
    if base.shape != raw.shape:
        if base.size != raw.size or np.squeeze(base).shape != np.squeeze(raw).shape:
            return Verdict(False, float("inf"), float("inf"), f"shape {list(base.shape)} vs {list(raw.shape)}")
        base, raw = np.squeeze(base), np.squeeze(raw)
    reference = base.astype(np.float64, copy=False)
    value = raw.astype(np.float64, copy=False)
    base_bad, raw_bad = ~np.isfinite(reference), ~np.isfinite(value)
    if raw_bad.any() or base_bad.any():
        same_places = np.array_equal(base_bad, raw_bad) and np.array_equal(
            reference[base_bad], value[raw_bad], equal_nan=True
        )
        if not same_places:
            side = "raw" if raw_bad.sum() >= base_bad.sum() else "base"
            kind = "NaN" if np.isnan(value if side == "raw" else reference).any() else "Inf"
            return Verdict(False, float("inf"), float("inf"), f"{kind} in {side} only")
        reference, value = reference[~base_bad], value[~raw_bad]
    if reference.size == 0:
        return Verdict(True, 0.0, 0.0)
    difference = np.abs(value - reference)
    max_abs = float(difference.max())
    # relative to |base|, floored at atol so exact zeros do not report 1e300
    max_rel = float((difference / np.maximum(np.abs(reference), max(atol, 1e-30))).max())
    if mode is Mode.MEAN:
        base_mean, raw_mean = float(reference.mean()), float(value.mean())
        ok = abs(raw_mean - base_mean) <= atol + rtol * abs(base_mean)
    else:
        ok = bool((difference <= atol + rtol * np.abs(reference)).all())
    return Verdict(ok, max_abs, max_rel)
