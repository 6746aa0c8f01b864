"""A BatchNorm's running variance after a training step: torch's and paddle's are updated differently.

A training step blends the batch's variance into the running one. torch blends
in the unbiased variance (divided by ``n - 1``, ``n`` the values per channel in
the batch), paddle the biased one (divided by ``n``): correct ports move their
running variances apart by the difference, ``v / (n - 1)`` of a batch
variance ``v`` weighed by the momentum, which is at most ``1 / (n - 1)`` of
the running variance after the step (it holds at least that weight of ``v``),
step after step. A running variance within that of its partner agrees; the
running mean, blended the same way on both sides, still shows a momentum
given the other framework's way.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from padiff_graph.core.transforms import TensorPair
from padiff_graph.layermap import LayerMap
from padiff_graph.run.numerics import Tolerance, Verdict, compare_tensor_pair, through_map

#: A BatchNorm's running-variance buffer, as each framework names it, and whether a training step blends in
#: the unbiased batch variance (torch) rather than the biased one (paddle).
UNBIASED_RUNNING_VARIANCE = {"running_var": True, "_variance": False}


def unlike_running_variances(layer_map: LayerMap) -> frozenset[tuple[str, str]]:
    """(base layer, base tensor) of each paired running variance that a step updates the other way on the
    other side."""
    found = set()
    for pair in layer_map.active_pairs():
        for tensor in pair.tensors:
            base = UNBIASED_RUNNING_VARIANCE.get(tensor.base.rpartition(".")[2])
            raw = UNBIASED_RUNNING_VARIANCE.get(tensor.raw.rpartition(".")[2])
            if base is not None and raw is not None and base != raw:
                found.add((pair.base, tensor.base))
    return frozenset(found)


def compare_running_variance(
    tensor: TensorPair, base: np.ndarray, raw: np.ndarray, per_channel: int, tolerance: Tolerance, *dtypes: str
) -> Verdict:
    """:func:`compare_tensor_pair`, passing differences up to ``1 / (per_channel - 1)`` of the running variance
    (``per_channel``: values per channel in the step's batch)."""
    verdict = compare_tensor_pair(tensor, base, raw, tolerance, *dtypes)
    if verdict.ok or per_channel < 2:
        return verdict
    expected, region = (value.astype(np.float64) for value in through_map(tensor, base, raw))
    share = 1.0 / (per_channel - 1)
    excess = np.abs(region - expected) - share * np.abs(expected)
    why = (
        f"torch blends the unbiased batch variance into its running variance, paddle the biased one: "
        f"they may differ by 1/(n-1) = {share:.1e} of it (n = {per_channel} values per channel)"
    )
    atol, rtol, floor = tolerance.limits(*dtypes)
    limit = floor * float(np.abs(expected).max()) if floor else atol + rtol * np.abs(expected)
    if bool((excess <= limit).all()):
        return replace(verdict, ok=True, note=f"within what {why}")
    return replace(verdict, note=f"{verdict.note}; more than {why} explains")
