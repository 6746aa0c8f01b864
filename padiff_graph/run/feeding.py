"""Single-step mode: which base input of a layer call feeds each raw input.

Two ports of one layer rarely take the same tensors in the same order: HF's decoder layer
takes ``(hidden_states, attention_mask, position_ids, ..., position_embeddings=(cos, sin))``,
paddleformers' ``(hidden_states, position_ids, attention_mask, ...)``, and one side's mask
is ``[2, 16]`` where the other's is ``[2, 1, 16, 16]``. So a raw input is fed the base input
that holds the same values (another position allowed); failing that, the base input at its
own position if its shape and kind correspond (where a fault in the caller's code shows);
failing both, it is not fed: the raw model's own value flows on, and the report says so.
"""

from __future__ import annotations

import numpy as np

from padiff_graph.run.numerics import Tolerance, fitted

#: A base input of one layer call, by position: its host array and dtype.
BaseInputs = dict[int, tuple[np.ndarray, str]]


def corresponding_input(
    raw: np.ndarray, index: int, raw_dtype: str, candidates: BaseInputs, tolerance: Tolerance
) -> int | None:
    """The position of the base input that feeds raw input ``index``, or ``None`` if none corresponds."""
    fitting = [
        position
        for position, (base, _) in candidates.items()
        if _same_kind(base, raw) and fed_value(base, tuple(raw.shape)) is not None
    ]
    fitting.sort(key=lambda position: position != index)  # its own position first
    for position in fitting:
        base, base_dtype = candidates[position]
        if same_values(base, raw, tolerance, base_dtype, raw_dtype):
            return position
    return index if index in fitting else None


def fed_value(base: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``base`` in the raw input's ``shape``: as :func:`fitted` has it, or, for a base tensor that repeats
    one slice along axes the raw one has as 1 (a rotary table or position ids built per batch row where
    the other side builds them once), that slice; ``None`` if neither."""
    value = fitted(base, shape, gradient=False)
    if value is not None or len(shape) > base.ndim:
        return value
    padded = (1,) * (base.ndim - len(shape)) + shape
    if any(size not in (1, full) for size, full in zip(padded, base.shape, strict=True)):
        return None
    first = base[tuple(slice(0, size) for size in padded)]
    return first.reshape(shape) if np.array_equal(np.broadcast_to(first, base.shape), base) else None


def not_fed(path: str, call: int, index: int, raw: np.ndarray, candidates: BaseInputs) -> str:
    """Why raw input ``index`` of ``path``'s call was left as the raw model computed it."""
    shapes = ", ".join(f"{list(base.shape)} {base.dtype}" for base, _ in candidates.values()) or "none left"
    return (
        f"{path} (call {call}): input {index} {list(raw.shape)} {raw.dtype} was not fed: no base input of that call "
        f"holds its values or fits its shape and kind (base inputs: {shapes}); the raw model's own value was used"
    )


def _same_kind(base: np.ndarray, raw: np.ndarray) -> bool:
    return np.issubdtype(base.dtype, np.floating) == np.issubdtype(raw.dtype, np.floating)


def same_values(base: np.ndarray, raw: np.ndarray, tolerance: Tolerance, *dtypes: str) -> bool:
    """Whether ``base``, in the raw input's shape (:func:`fed_value`), holds ``raw``'s values within the noise
    floor (integers: exactly)."""
    fed = fed_value(base, tuple(raw.shape))
    if fed is None:
        return False
    if not np.issubdtype(raw.dtype, np.floating):
        return bool(np.array_equal(fed, raw))
    return tolerance.verdict(fed, raw, *dtypes).ok
