"""How well one base layer fits one raw layer, and optimal assignment.

Every signal the matcher uses lives here: tensor-shape compatibility (under
the registered conversions), class family, local names, forward call order
and definition position. Candidates are compared within a set, so call
order and position are ranks inside that set: two siblings called one after
the other are as distinct as the first and the last layer of a model.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import lru_cache

import numpy as np
from scipy.optimize import linear_sum_assignment

from padiff_graph.knowledge.conversions import Conversion, ConversionRegistry, LayerSide
from padiff_graph.knowledge.families import CONTAINER
from padiff_graph.match.features import TreeFeatures
from padiff_graph.match.options import MatchOptions
from padiff_graph.tree import relative_path

#: Cost standing for "these two can never be a pair".
INCOMPATIBLE = 1e6
#: Above this many candidates a side, pairs are made by order, not by LSA.
LSA_MAX_CANDIDATES = 1500

_TOKEN = re.compile(r"[a-z]+|\d+")


@lru_cache(maxsize=65536)
def name_similarity(left: str, right: str) -> float:
    """Similarity of two names in [0, 1]; numbers must agree exactly.

    Different names score at most ``0.75``, so an exact name always stands
    clear of a near one (``proj_a`` is not ``proj_b``).

    >>> name_similarity("layer1", "stage1") > name_similarity("layer1", "stage2")
    True
    """
    if left == right:
        return 1.0
    return 0.75 * _token_similarity(left, right)


def _token_similarity(left: str, right: str) -> float:
    left_tokens, right_tokens = _TOKEN.findall(left.lower()), _TOKEN.findall(right.lower())
    left_alpha = "".join(t for t in left_tokens if not t.isdigit())
    right_alpha = "".join(t for t in right_tokens if not t.isdigit())
    alpha = SequenceMatcher(None, left_alpha, right_alpha).ratio() if (left_alpha or right_alpha) else 1.0
    left_digits = [int(t) for t in left_tokens if t.isdigit()]
    right_digits = [int(t) for t in right_tokens if t.isdigit()]
    if not left_digits and not right_digits:
        return alpha
    return 0.6 * alpha + 0.4 * float(left_digits == right_digits)


def jaccard(left: Counter[object], right: Counter[object]) -> float:
    """Multiset Jaccard similarity; two empty sets are identical."""
    union = sum((left | right).values())
    return 1.0 if union == 0 else sum((left & right).values()) / union


@dataclass(frozen=True)
class Assignment:
    """One pair chosen by :meth:`Scorer.assign`."""

    base: str
    raw: str
    cost: float
    candidates: tuple[str, ...]

    @property
    def score(self) -> float:
        return round(max(0.0, 1.0 - self.cost), 3)


def layer_side(features: TreeFeatures, path: str) -> LayerSide:
    """What a conversion sees of ``path``: own and subtree tensors by relative name."""
    node = features.tree.nodes[path]
    subtree = {}
    stack = [path]
    while stack:
        current = stack.pop()
        prefix = relative_path(path, current)
        for tensor in features.own[current]:
            subtree[f"{prefix}.{tensor.name}" if prefix else tensor.name] = tensor
        stack.extend(features.children[current])
    return LayerSide(
        framework=features.framework,
        class_name=node["class_name"],
        builtin=node["builtin"],
        tensors={tensor.name: tensor for tensor in features.own[path]},
        subtree_tensors=subtree,
        config=node["config"],
    )


class Scorer:
    """Cost of pairing base and raw layers, for one pair of trees."""

    def __init__(
        self, base: TreeFeatures, raw: TreeFeatures, registry: ConversionRegistry, options: MatchOptions
    ) -> None:
        self.base = base
        self.raw = raw
        self.registry = registry
        self.options = options
        self._conversions: dict[tuple[str, str], Conversion | None] = {}
        self._fit: dict[tuple[object, ...], bool] = {}

    def conversion(self, base_path: str, raw_path: str) -> Conversion | None:
        """The registered conversion between the two layers' classes, if any."""
        base_node, raw_node = self.base.tree.nodes[base_path], self.raw.tree.nodes[raw_path]
        key = (base_node["class_name"], raw_node["class_name"])
        if key not in self._conversions:
            self._conversions[key] = self.registry.find(
                layer_side(self.base, base_path), layer_side(self.raw, raw_path)
            )
        return self._conversions[key]

    def covers_subtree(self, base_path: str, raw_path: str) -> bool:
        """Whether the pair's conversion maps their descendants' tensors too."""
        conversion = self.conversion(base_path, raw_path)
        return conversion is not None and conversion.covers_subtree

    def covers_everything(self, base_path: str, raw_path: str) -> bool:
        """Whether the pair's conversion maps every tensor of both subtrees (nothing inside is left to match)."""
        conversion = self.conversion(base_path, raw_path)
        if conversion is None or not conversion.covers_subtree:
            return False
        if conversion.init is not None:
            return True
        base_side, raw_side = layer_side(self.base, base_path), layer_side(self.raw, raw_path)
        pairs = conversion.tensor_pairs(base_side, raw_side)
        return {p.base for p in pairs} >= set(base_side.subtree_tensors) and {p.raw for p in pairs} >= set(
            raw_side.subtree_tensors
        )

    def content_similarity(self, base_path: str, raw_path: str) -> float:
        """Jaccard similarity of two subtrees' contents, the better of reading atomic layers whole or by parts."""
        similarity = jaccard(self.base.content(base_path), self.raw.content(raw_path))  # type: ignore[arg-type]
        if self.base.holds_atomic[base_path] or self.raw.holds_atomic[raw_path]:
            whole = jaccard(self.base.atomic_content(base_path), self.raw.atomic_content(raw_path))  # type: ignore[arg-type]
            similarity = max(similarity, whole)
        return similarity

    def compatible(self, base_path: str, raw_path: str) -> bool:
        """Whether the two layers could be the same layer at all."""
        base, raw = self.base, self.raw
        conversion = self.conversion(base_path, raw_path)
        if conversion is not None and conversion.covers_subtree:
            return True
        base_owns, raw_owns = bool(base.own[base_path]), bool(raw.own[raw_path])
        if (base_owns or raw_owns) and conversion is not None and self._fits(base_path, raw_path, conversion):
            return True  # including a side without tensors: torch InstanceNorm2d() against paddle's scale/bias
        if base_owns and raw_owns:
            if base.signature[base_path] == raw.signature[raw_path]:
                return True
            if base.own_numel[base_path] == raw.own_numel[raw_path]:
                return True  # another layout of the same numbers
        base_leaf, raw_leaf = base.is_leaf(base_path), raw.is_leaf(raw_path)
        if not base_leaf and not raw_leaf:
            similarity = self.content_similarity(base_path, raw_path)
            return similarity >= self.options.min_container_similarity
        if base_leaf and raw_leaf and not base_owns and not raw_owns:
            return base.family[base_path] == raw.family[raw_path]
        return False

    def _fits(self, base_path: str, raw_path: str, conversion: Conversion) -> bool:
        """Whether the conversion pairs the two layers' tensors with consistent shapes.

        Cached by class and own tensors: a model's many same-shaped layers are checked once.
        """
        key = (
            self.base.tree.nodes[base_path]["class_name"],
            self.raw.tree.nodes[raw_path]["class_name"],
            tuple((t.name, t.shape) for t in self.base.own[base_path]),
            tuple((t.name, t.shape) for t in self.raw.own[raw_path]),
        )
        if key not in self._fit:
            self._fit[key] = self._pairs_fit(base_path, raw_path, conversion)
        return self._fit[key]

    def _pairs_fit(self, base_path: str, raw_path: str, conversion: Conversion) -> bool:
        base_side, raw_side = layer_side(self.base, base_path), layer_side(self.raw, raw_path)
        pairs = conversion.tensor_pairs(base_side, raw_side)
        for pair in pairs:
            if pair.has_constant:
                continue
            base_tensor = base_side.subtree_tensors.get(pair.base)
            raw_tensor = raw_side.subtree_tensors.get(pair.raw)
            if base_tensor is None or raw_tensor is None:
                return False
            if pair.transform.output_shape(base_tensor.shape) != pair.transform.region_shape(raw_tensor.shape):
                return False
        return bool(pairs)

    def cost_matrix(
        self, base_paths: Sequence[str], raw_paths: Sequence[str], base_anchor: str, raw_anchor: str
    ) -> np.ndarray:
        """Pair costs; :data:`INCOMPATIBLE` where two layers can never pair."""
        options = self.options
        base_call = _ranks([self.base.call_rank.get(p) for p in base_paths])
        raw_call = _ranks([self.raw.call_rank.get(p) for p in raw_paths])
        base_position = _ranks([self.base.relative_position(p, base_anchor) for p in base_paths])
        raw_position = _ranks([self.raw.relative_position(p, raw_anchor) for p in raw_paths])
        costs = np.full((len(base_paths), len(raw_paths)), INCOMPATIBLE)
        for i, base_path in enumerate(base_paths):
            base_node = self.base.tree.nodes[base_path]
            for j, raw_path in enumerate(raw_paths):
                if not self.compatible(base_path, raw_path):
                    continue
                raw_node = self.raw.tree.nodes[raw_path]
                cost = options.name_weight * (
                    1.0 - name_similarity(self.base.local_name[base_path], self.raw.local_name[raw_path])
                )
                base_family, raw_family = self.base.family[base_path], self.raw.family[raw_path]
                if base_family != raw_family:
                    cost += options.family_weight
                elif base_family == CONTAINER:
                    class_similarity = name_similarity(base_node["class_name"], raw_node["class_name"])
                    cost += options.family_weight * (1.0 - class_similarity)
                if (
                    self.base.own[base_path]
                    and self.base.signature[base_path] != self.raw.signature[raw_path]
                    and self.conversion(base_path, raw_path) is None
                ):
                    cost += options.layout_weight
                if not self.base.is_leaf(base_path) and not self.raw.is_leaf(raw_path):
                    similarity = self.content_similarity(base_path, raw_path)
                    cost += options.content_weight * (1.0 - similarity)
                if base_call[i] is not None and raw_call[j] is not None:
                    cost += options.call_order_weight * abs(base_call[i] - raw_call[j])  # type: ignore[operator]
                elif (base_call[i] is None) != (raw_call[j] is None):
                    cost += options.call_order_weight * 0.5
                cost += options.position_weight * abs(base_position[i] - raw_position[j])  # type: ignore[operator]
                costs[i, j] = cost
        return costs

    def assign(
        self, base_paths: Sequence[str], raw_paths: Sequence[str], base_anchor: str, raw_anchor: str
    ) -> list[Assignment]:
        """Optimal one-to-one pairs (``linear_sum_assignment``), near ties reported."""
        if not base_paths or not raw_paths:
            return []
        if max(len(base_paths), len(raw_paths)) > LSA_MAX_CANDIDATES:
            return self._assign_by_order(base_paths, raw_paths)
        costs = self.cost_matrix(base_paths, raw_paths, base_anchor, raw_anchor)
        rows, cols = linear_sum_assignment(costs)
        chosen = {int(i): int(j) for i, j in zip(rows, cols, strict=True) if costs[i, j] < INCOMPATIBLE}
        margin = self.options.ambiguity_margin
        result = []
        for i, j in chosen.items():
            cost = float(costs[i, j])
            rivals = {raw_paths[int(k)] for k in np.flatnonzero(costs[i] <= cost + margin) if k != j}
            for k in np.flatnonzero(costs[:, j] <= cost + margin):
                if k != i and int(k) in chosen:
                    rivals.add(raw_paths[chosen[int(k)]])
            holds_tensors = self.base.tensor_layers.get(base_paths[i], 1) > 0
            candidates = tuple(sorted(rivals)) if holds_tensors else ()
            result.append(Assignment(base_paths[i], raw_paths[j], cost, candidates))
        return result

    def _assign_by_order(self, base_paths: Sequence[str], raw_paths: Sequence[str]) -> list[Assignment]:
        """Pairs for very large candidate sets: equal names first, then call/definition order."""
        raw_by_name = {self.raw.local_name[path]: path for path in raw_paths}
        result, used = [], set()
        leftover_base = []
        for base_path in base_paths:
            raw_path = raw_by_name.get(self.base.local_name[base_path])
            if raw_path is not None and raw_path not in used and self.compatible(base_path, raw_path):
                result.append(Assignment(base_path, raw_path, 0.0, ()))
                used.add(raw_path)
            else:
                leftover_base.append(base_path)
        leftover_raw = [path for path in raw_paths if path not in used]
        key_base = lambda p: (self.base.call_rank.get(p, 2.0), self.base.position[p])  # noqa: E731
        key_raw = lambda p: (self.raw.call_rank.get(p, 2.0), self.raw.position[p])  # noqa: E731
        for base_path, raw_path in zip(
            sorted(leftover_base, key=key_base), sorted(leftover_raw, key=key_raw), strict=False
        ):
            if self.compatible(base_path, raw_path):
                result.append(Assignment(base_path, raw_path, self.options.position_weight, ()))
        return result


def _ranks(values: Sequence[float | None]) -> list[float | None]:
    """Each value's rank among the present ones, scaled to [0, 1]."""
    present = sorted((value, index) for index, value in enumerate(values) if value is not None)
    ranks: list[float | None] = [None] * len(values)
    span = max(len(present) - 1, 1)
    for rank, (_, index) in enumerate(present):
        ranks[index] = rank / span
    return ranks
