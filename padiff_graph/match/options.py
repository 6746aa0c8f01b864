"""Named thresholds and weights of the matcher, with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass

#: Weight of local-name dissimilarity in a pair's cost.
NAME_WEIGHT = 0.4
#: Weight of the difference in forward call order (when inputs were traced).
CALL_ORDER_WEIGHT = 0.6
#: Weight of the difference in definition position. Kept below
#: ``AMBIGUITY_MARGIN`` on purpose: definition order alone never decides a
#: match confidently, it only breaks ties (and the tie is reported).
POSITION_WEIGHT = 0.04
#: Cost added when the two layers are of different families.
FAMILY_WEIGHT = 0.3
#: Cost added when two layers hold tensors of other shapes but as many
#: elements in all: a layout a conversion must translate (fused vs split).
LAYOUT_WEIGHT = 0.5
#: Weight of content dissimilarity between two containers.
CONTENT_WEIGHT = 1.0
#: Two candidates within this cost of each other make a match ambiguous.
AMBIGUITY_MARGIN = 0.05
#: Least Jaccard similarity of contents for two containers to match.
MIN_CONTAINER_SIMILARITY = 0.6
#: Least Jaccard similarity of matched descendants for a bottom-up match.
MIN_BOTTOM_UP_SIMILARITY = 0.6
#: The exact tree edit distance runs only on leftovers up to this many layers a side.
TED_MAX_LAYERS = 40


@dataclass(frozen=True)
class MatchOptions:
    """Settings of one matcher run; every field defaults to the constant above."""

    name_weight: float = NAME_WEIGHT
    call_order_weight: float = CALL_ORDER_WEIGHT
    position_weight: float = POSITION_WEIGHT
    family_weight: float = FAMILY_WEIGHT
    layout_weight: float = LAYOUT_WEIGHT
    content_weight: float = CONTENT_WEIGHT
    ambiguity_margin: float = AMBIGUITY_MARGIN
    min_container_similarity: float = MIN_CONTAINER_SIMILARITY
    min_bottom_up_similarity: float = MIN_BOTTOM_UP_SIMILARITY
    ted_max_layers: int = TED_MAX_LAYERS
