"""Rows in another order: an expert's tokens gathered in another order after routing.

HuggingFace's MoE gathers the tokens of an expert with ``torch.where(expert_mask[expert])``,
ordered by top-k slot, then token. When noise (a bfloat16 base) swaps the first and second
choice of a token whose two router probabilities are within rounding of each other, the
expert receives the same rows in another order. That is no fault of the expert: the input is
compared after matching its rows one to one, and the layer's outputs (and their gradients)
after the same reordering; each such comparison's note says so. Only a layer whose *input* is
reordered has its outputs reordered, so a layer that permutes rows itself is still caught.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from padiff_graph.run.hooks import RecordKey
from padiff_graph.run.numerics import Tolerance, Verdict

#: Most elements (rows² × features) of the row distances computed to look for another order.
ROW_MATCH_LIMIT = 1 << 26
#: Elements per pass of the row distances.
_CHUNK = 1 << 22
INPUT_NOTE = "the base's rows in another order (each matches one base row within the noise floor: routing)"
REORDERED_NOTE = "compared after reordering rows as in its input (rows in another order: routing)"
OTHER_TOKENS = "a routing (top-k) choice in its caller picked other tokens"


def row_order(base: np.ndarray, raw: np.ndarray, floor: float) -> np.ndarray | None:
    """Which base row each raw row is, when ``raw`` holds ``base``'s rows in another order, each
    within ``floor`` of ``max|base|``; ``None`` otherwise. Only 2-d arrays (tokens × features) small
    enough for all pairs of rows to be measured."""
    if base.shape != raw.shape:
        return None
    matched = _matched_rows(base, raw, floor)
    if matched is None or (matched == np.arange(len(raw))).all():
        return None
    return matched


def other_rows_note(base: np.ndarray, raw: np.ndarray, floor: float) -> str | None:
    """What to say of a 2-d input whose row count differs from the base's while every row of the
    smaller one is a distinct row of the other (within the noise floor): other tokens were routed
    here. ``None`` if that is not so."""
    if base.ndim != 2 or raw.ndim != 2 or base.shape[1:] != raw.shape[1:] or len(base) == len(raw):
        return None
    if _matched_rows(base, raw, floor) is None:
        return None
    return (
        f"the raw layer receives {len(raw)} rows where the base's receives {len(base)}, every one of the "
        f"{min(len(raw), len(base))} of the smaller set one of the other's: {OTHER_TOKENS}; if the router's "
        "scores agree within the noise floor, noise flipped a near tie, which no tolerance removes"
    )


def _matched_rows(base: np.ndarray, raw: np.ndarray, floor: float) -> np.ndarray | None:
    """The base row that each raw row is paired with one to one (rows of the larger side are left
    over; raw rows in order when it has no more than the base), if every pair is within ``floor``
    of ``max|base|``."""
    if not floor or base.ndim != 2 or raw.ndim != 2 or min(len(base), len(raw)) < 1:
        return None
    features = base.shape[1]
    if len(base) * len(raw) * features > ROW_MATCH_LIMIT or raw.shape[1] != features:
        return None
    work = np.float64 if base.dtype.itemsize > 4 or raw.dtype.itemsize > 4 else np.float32
    reference: np.ndarray = np.asarray(base, dtype=work)
    value: np.ndarray = np.asarray(raw, dtype=work)
    largest = float(np.abs(reference).max())
    distance = np.empty((len(raw), len(base)), work)
    step = max(1, _CHUNK // (len(base) * features))
    for start in range(0, len(raw), step):
        part = value[start : start + step, None, :] - reference[None, :, :]
        distance[start : start + step] = np.abs(part).max(axis=-1)
    if not (np.isfinite(distance).all() and largest):
        return None
    raw_rows, base_rows = linear_sum_assignment(distance)
    if distance[raw_rows, base_rows].max() > floor * largest:
        return None
    return base_rows


class RowOrders:
    """Comparisons that follow rows in another order, record by record, in record order
    (from the one comparing thread): an input is matched row by row when it fails as it is;
    a layer's outputs follow the order of its input, an output gradient that of its output."""

    def __init__(self, tolerance: Tolerance) -> None:
        self.tolerance = tolerance
        self._orders: dict[RecordKey, np.ndarray] = {}
        self._input_orders: dict[tuple[str, int], np.ndarray] = {}
        self._other_rows: dict[tuple[str, int], str] = {}  # layer calls given other tokens than the base's
        self._latest_input_order: dict[tuple[int, str], np.ndarray] = {}  # (step, layer) -> its last input's order

    def verdict(self, key: RecordKey, base: np.ndarray, raw: np.ndarray, *dtypes: str, gradient: bool) -> Verdict:
        """``tolerance.verdict``, after reordering the base's rows where they come in another order."""
        order = self._inherited(key)
        if order is not None and base.shape == raw.shape and len(base) == len(order):
            return self._reordered(key, order, base, raw, dtypes, gradient, REORDERED_NOTE)
        verdict = self.tolerance.verdict(base, raw, *dtypes, gradient=gradient)
        if verdict.ok:
            return verdict
        if key.stage != "input":
            other_rows = self._other_rows.get((key.path, key.call))
            return verdict if other_rows is None else replace(verdict, note=f"{verdict.note}: {other_rows}")
        order = self._callers_order(key, base, raw, verdict, dtypes, gradient)
        if order is None:
            order = row_order(base, raw, verdict.floor)
        if order is None:
            other_rows = other_rows_note(base, raw, self.tolerance.limits(*dtypes)[2])
            if other_rows is None:
                return verdict
            self._other_rows.setdefault((key.path, key.call), other_rows)
            return replace(verdict, note=f"{verdict.note}: {other_rows}")
        self._input_orders.setdefault((key.path, key.call), order)
        self._latest_input_order[(key.step, key.path)] = order
        return self._reordered(key, order, base, raw, dtypes, gradient, INPUT_NOTE)

    def _callers_order(
        self,
        key: RecordKey,
        base: np.ndarray,
        raw: np.ndarray,
        as_is: Verdict,
        dtypes: tuple[str, ...],
        gradient: bool,
    ) -> np.ndarray | None:
        """The order of the nearest enclosing layer's input, if the input of ``key`` (computed inside that
        layer's call from its rows: an expert's ``act(gate) * up``) is closer in it than ``as_is``. The same
        permutation carries over exactly, where matching the rows anew must tell them apart within the
        noise floor, which noise grown over a few layers can exceed; the record is then judged as any."""
        path = key.path
        while path:
            path = path.rpartition(".")[0]
            order = self._latest_input_order.get((key.step, path))
            if order is not None and base.shape == raw.shape and len(base) == len(order):
                reordered = self.tolerance.verdict(base[order], raw, *dtypes, gradient=gradient)
                return order if reordered.scaled < as_is.scaled else None
        return None

    def again(
        self, seen: RecordKey, seen_verdict: Future[Verdict], key: RecordKey, base: Any, raw: Any, *dtypes: str
    ) -> Verdict:
        """``key`` holds the same two values as ``seen`` (a container's output is its last layer's, a
        layer's input the previous one's output): ``seen``'s verdict, unless that followed an order of
        rows ``key`` may not take. An input may (its rows matched); an output only its own input's, so
        rows a layer's own code reorders are not excused by a layer inside it."""
        order = self._orders.get(seen)
        if order is None:
            return seen_verdict.result()
        inherited = self._inherited(key)
        if key.stage == "input":
            self._input_orders.setdefault((key.path, key.call), order)
            self._latest_input_order[(key.step, key.path)] = order
        elif inherited is None or not np.array_equal(inherited, order):
            return self.verdict(key, base, raw, *dtypes, gradient=key.stage == "backward")
        self._orders[key] = order
        return seen_verdict.result()

    def order(self, key: RecordKey) -> np.ndarray | None:
        """The order of the base's rows that ``key``'s raw value follows, if another."""
        return self._orders.get(key)

    def _inherited(self, key: RecordKey) -> np.ndarray | None:
        if key.stage == "forward":
            return self._input_orders.get((key.path, key.call))
        if key.stage == "backward":
            return self._orders.get(RecordKey(key.step, "forward", key.path, key.call, key.index))
        return None

    def _reordered(
        self,
        key: RecordKey,
        order: np.ndarray,
        base: np.ndarray,
        raw: np.ndarray,
        dtypes: tuple[str, ...],
        gradient: bool,
        note: str,
    ) -> Verdict:
        self._orders[key] = order
        verdict = self.tolerance.verdict(base[order], raw, *dtypes, gradient=gradient)
        return replace(verdict, note=f"{verdict.note}; {note}" if verdict.note else note)
