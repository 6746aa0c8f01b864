"""One matched pair of layers, and the map file's format version."""

from __future__ import annotations

from dataclasses import dataclass

from padiff_graph.core.transforms import TensorPair

FORMAT_VERSION = 1


@dataclass(frozen=True)
class LayerPair:
    """One matched pair of layers.

    Attributes:
        base, raw: dotted layer paths.
        score: matcher confidence in [0, 1] (1 for user-written pairs).
        tensors: tensor pairs, names relative to the two layers.
        conversion: the registered conversion that produced ``tensors``.
        init: ``module:function`` of a user init that copies this pair's weights.
        candidates: other raw layers that fit almost as well (an ambiguous match).
        stage: the matcher stage that proposed the pair.
        guessed_layouts: base tensors (relative names) whose transform only shapes
            suggested, where another fits too (a square weight of a class no
            conversion knows): a probe with inputs, or the user, must settle them.
        probe_cut: how many combinations of layouts a probe of this pair would have had
            to try, where that was over its limit and it tried none (0: not cut). Not
            written to the map file: it says what the last probe did.
    """

    base: str
    raw: str
    score: float = 1.0
    tensors: tuple[TensorPair, ...] = ()
    conversion: str | None = None
    init: str | None = None
    candidates: tuple[str, ...] = ()
    stage: str = "user"
    guessed_layouts: tuple[str, ...] = ()
    probe_cut: int = 0

    @property
    def ambiguous(self) -> bool:
        return bool(self.candidates)


#: The stage of numbered blocks the matcher aligned by their order under an index offset (``match/offsets.py``).
OFFSET_STAGE = "index-offset"


def is_special(pair: LayerPair) -> bool:
    """Tensor pairs that shapes and names alone would not have found: regions, constants, reordering."""
    return pair.conversion is not None and any(
        tensor.has_constant
        or tensor.transform.base_index is not None
        or tensor.transform.raw_index is not None
        or tensor.transform.op not in ("identity", "transpose")
        or bool(tensor.transform.then)
        for tensor in pair.tensors
    )
