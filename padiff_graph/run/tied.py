"""A base tensor the raw model holds as untied copies: an output head tied to the embedding.

HF transformers ties ``lm_head.weight`` to the input embedding (``tie_word_embeddings``);
a port with a head of its own gets that head written from the base's one tensor
(:mod:`padiff_graph.match.ties`), so both forward passes agree. Their gradients do not,
copy by copy: the base's tensor collects the gradient of every use (the embedding's and
the head's), each raw copy only its own. So the base tensor's gradient is compared once,
with the sum of the copies' gradients, each mapped back into the base's layout through
its transform. After an optimizer step the base's tensor has moved by that sum and each
copy by its own gradient: they differ. The weights are then compared once too, at the
tied layer (the head: its base partner holds the tensor under another layer's name),
and the note says that this is what untied copies do, not a fault in either layer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np

from padiff_graph.core.records import quoted_path
from padiff_graph.core.transforms import TensorPair
from padiff_graph.layermap import LayerPair
from padiff_graph.run.numerics import Tolerance, Verdict, compare_tensor_pair

#: A raw tensor's value by its full name (``None``: it has no gradient).
RawValue = Callable[[str], "np.ndarray | None"]


class TiedCopies:
    """Base tensors written whole into more than one raw tensor (``copies``, by full base name)."""

    def __init__(self, pairs: Iterable[LayerPair]) -> None:
        pairs = list(pairs)
        found: dict[str, dict[str, TensorPair]] = {}
        for pair in pairs:
            for tensor in pair.tensors:
                whole = tensor.transform.base_index is None and tensor.transform.raw_index is None
                if whole and not tensor.has_constant:
                    full = tensor.prefixed(pair.base, pair.raw)
                    found.setdefault(full.base, {})[full.raw] = full
        self.copies = {base: tuple(by_raw.values()) for base, by_raw in found.items() if len(by_raw) > 1}
        self._tied_layers = {base: _tied_layer(base, copies, pairs) for base, copies in self.copies.items()}
        self._compared: set[tuple[str, str]] = set()

    def first(self, stage: str, base_name: str) -> bool:
        """Whether tied ``base_name`` is still to be compared in ``stage`` (it is compared once per stage)."""
        if (stage, base_name) in self._compared:
            return False
        self._compared.add((stage, base_name))
        return True

    def weights_place(self, base_name: str) -> tuple[LayerPair, TensorPair] | None:
        """Where the weights of tied ``base_name`` are compared: the tied layer's pair and tensor."""
        return self._tied_layers[base_name]

    def gradient_verdict(
        self, base_name: str, base_value: np.ndarray | None, grad: RawValue, tolerance: Tolerance, *dtypes: str
    ) -> Verdict:
        """The base tensor's gradient against the sum of its copies' (``grad`` of a raw name), in its layout."""
        if base_value is None:
            return Verdict(False, float("inf"), float("inf"), "no gradient on the base side")
        grads = [(copy, grad(copy.raw)) for copy in self.copies[base_name]]
        terms = [
            copy.inverse(base_value.shape).transform.apply(value).astype(np.float64)
            for copy, value in grads
            if value is not None
        ]
        if not terms:
            return Verdict(False, float("inf"), float("inf"), "no gradient on the raw side")
        verdict = tolerance.verdict(base_value, np.sum(terms, axis=0).astype(base_value.dtype), *dtypes)
        note = f"{self._tie(base_name)}: its gradient sums every use, so it is compared with the sum of the copies'"
        return replace(verdict, note=f"{note}; {verdict.note}" if verdict.note else note)

    def weights_verdict(
        self, base_name: str, base_value: np.ndarray | None, weights: RawValue, tolerance: Tolerance, *dtypes: str
    ) -> Verdict:
        """The base tensor against each raw copy after the optimizer step: the largest difference, and why."""
        verdicts = [
            (compare_tensor_pair(copy, base_value, weights(copy.raw), tolerance, *dtypes), copy.raw)
            for copy in self.copies[base_name]
        ]
        worst, _ = max(verdicts, key=lambda found: (not found[0].ok, found[0].scaled, found[0].max_abs))
        if worst.ok:
            return worst
        each = ", ".join(f"raw {quoted_path(raw)} by {verdict.max_abs:.3g}" for verdict, raw in verdicts)
        note = (
            f"{self._tie(base_name)}; after the step they differ from it ({each}): an optimizer step moves the "
            "base's tensor by the sum of the copies' gradients and each raw copy by its own, so untied copies "
            "drift apart (the tie, not a fault in the layers; tie the raw copies to train alike)"
        )
        return replace(worst, note=f"{note}; {worst.note}" if worst.note else note)

    def _tie(self, base_name: str) -> str:
        copies = " and ".join(
            f"raw {quoted_path(copy.raw)}" + ("" if copy.transform.is_identity else f" ({copy.transform.op_text})")
            for copy in self.copies[base_name]
        )
        return f"base {quoted_path(base_name)} is one tensor (tied weights) that the raw model holds as {copies}"


def _tied_layer(
    base_name: str, copies: tuple[TensorPair, ...], pairs: list[LayerPair]
) -> tuple[LayerPair, TensorPair] | None:
    """The pair of a raw layer holding a copy whose base partner is not the layer that owns the base tensor
    (the head, where the embedding owns the tensor), and that copy by local names; ``None`` if none is."""
    owner = base_name.rpartition(".")[0]
    by_raw = {pair.raw: pair for pair in pairs}
    for copy in copies:
        raw_layer, _, local = copy.raw.rpartition(".")
        pair = by_raw.get(raw_layer)
        if pair is not None and pair.base != owner:
            return pair, TensorPair(local, local, copy.transform)
    return None
