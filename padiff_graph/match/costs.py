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

from padiff_graph.core.tree import relative_path
from padiff_graph.knowledge.conversions import Conversion, ConversionRegistry, layer_side
from padiff_graph.knowledge.families import CONTAINER, NAME_SYNONYMS
from padiff_graph.match.features import TreeFeatures, shape_key
from padiff_graph.match.offsets import index_offsets, renumber, renumbering
from padiff_graph.match.options import MatchOptions

#: Cost standing for "these two can never be a pair".
INCOMPATIBLE = 1e6
#: Above this many candidates a side, pairs are made by order, not by LSA.
LSA_MAX_CANDIDATES = 1500
#: The call-order alignment runs up to this many candidate pairs (it is quadratic in Python).
ALIGN_MAX_CELLS = 40_000
#: What one more aligned pair is worth against any cost: count first, cost second.
_PAIR_BONUS = 100.0

#: words of a name: CamelCase parts, lower-case runs and numbers
_TOKEN = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
#: words that name a framework, not a layer (``TorchMLP`` ~ ``PaddleMLP``)
_FRAMEWORK_WORDS = frozenset({"torch", "paddle", "pt", "pd", "nn"})


@lru_cache(maxsize=65536)
def name_similarity(left: str, right: str) -> float:
    """Similarity of two dotted names in [0, 1].

    Half the last components', half the whole paths' (``attention.output.dense``
    shares ``out`` with ``self_attn.out_proj``). Tokens are compared after
    known synonyms (``query``~``q``, ``dense``~``proj``) with plurals folded;
    numbers must agree. Different names score at most ``0.75``, so an exact
    name always stands clear of a near one (``proj_a`` is not ``proj_b``).

    >>> name_similarity("layer1", "stage1") > name_similarity("layer1", "stage2")
    True
    """
    if left == right:
        return 1.0
    left_prefix, _, left_last = left.rpartition(".")
    right_prefix, _, right_last = right.rpartition(".")
    similarity = _token_similarity(left_last, right_last)
    if left_prefix or right_prefix:
        similarity = 0.5 * similarity + 0.5 * _token_similarity(left, right)
    return 0.75 * similarity


def _tokens(name: str) -> tuple[list[str], list[int]]:
    words, numbers = [], []
    for token in (word.lower() for word in _TOKEN.findall(name)):
        if token.isdigit():
            numbers.append(int(token))
            continue
        if token in _FRAMEWORK_WORDS:
            continue
        if len(token) > 3 and token.endswith("s"):
            token = token[:-1]
        words.append(NAME_SYNONYMS.get(token, token))
    return words, numbers


@lru_cache(maxsize=65536)
def _token_similarity(left: str, right: str) -> float:
    if left == right:
        return 1.0
    left_words, left_numbers = _tokens(left)
    right_words, right_numbers = _tokens(right)
    if left_words or right_words:
        by_token = SequenceMatcher(None, left_words, right_words).ratio()
        by_letter = SequenceMatcher(None, "".join(left_words), "".join(right_words)).ratio()
        words = max(by_token, by_letter)
    else:
        words = 1.0
    if not left_numbers and not right_numbers:
        return words
    return 0.6 * words + 0.4 * SequenceMatcher(None, left_numbers, right_numbers).ratio()


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
        self._compatible: dict[tuple[str, str], bool] = {}
        self._fit: dict[tuple[object, ...], bool] = {}
        #: numbered runs the raw model numbers off by a constant (``features.N`` ~ ``blocks.N-1``)
        self.offsets = index_offsets(base, raw)
        self._renamed = renumbering(self.offsets, raw)

    def renumbered(self, raw_path: str) -> bool:
        """Whether the raw path's name is compared under an index offset."""
        return renumber(raw_path, self._renamed) != raw_path

    def conversion(self, base_path: str, raw_path: str) -> Conversion | None:
        """The registered conversion between the two layers' classes, if any."""
        base_node, raw_node = self.base.tree.nodes[base_path], self.raw.tree.nodes[raw_path]
        key = (base_node["class_name"], raw_node["class_name"])
        if key not in self._conversions:
            self._conversions[key] = self.registry.find(
                layer_side(self.base.tree, base_path), layer_side(self.raw.tree, raw_path)
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
        base_side, raw_side = layer_side(self.base.tree, base_path), layer_side(self.raw.tree, raw_path)
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
        """Whether the two layers could be the same layer at all (cached)."""
        key = (base_path, raw_path)
        if key not in self._compatible:
            self._compatible[key] = self._compatible_uncached(base_path, raw_path)
        return self._compatible[key]

    def _compatible_uncached(self, base_path: str, raw_path: str) -> bool:
        base, raw = self.base, self.raw
        base_owns, raw_owns = bool(base.own[base_path]), bool(raw.own[raw_path])
        conversion = self.conversion(base_path, raw_path)
        if conversion is not None and (base_owns or raw_owns or conversion.covers_subtree):
            # a known pair of classes decides: its conversion must fit these shapes
            # (a side may hold no tensors: torch InstanceNorm2d() against paddle's scale and bias)
            return self._fits(base_path, raw_path, conversion)
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
        return base_leaf and raw_leaf and self._same_tensors_held(base_path, raw_path)

    def _same_tensors_held(self, base_path: str, raw_path: str) -> bool:
        """Whether two leaves hold the same tensors by name and shape, counting those kept out of the state.

        A constant derived from the config (a rotary table's ``inv_freq``) is a
        non-persistent buffer on one side and a frozen parameter on the other:
        only one side counts it as state, yet the two are the same layer.
        """
        base_nodes, raw_nodes = self.base.tree.nodes, self.raw.tree.nodes
        base_held = sorted((t.name, shape_key(t.shape)) for t in base_nodes[base_path]["tensors"])
        raw_held = sorted((t.name, shape_key(t.shape)) for t in raw_nodes[raw_path]["tensors"])
        return bool(base_held) and base_held == raw_held

    def _fits(self, base_path: str, raw_path: str, conversion: Conversion) -> bool:
        """Whether the conversion pairs the two layers' tensors with consistent shapes.

        Cached by class and tensors (the subtree's, for conversions covering
        one): a model's many same-shaped layers are checked once.
        """
        key = (
            self.base.tree.nodes[base_path]["class_name"],
            self.raw.tree.nodes[raw_path]["class_name"],
            self._tensor_key(self.base, base_path, conversion.covers_subtree),
            self._tensor_key(self.raw, raw_path, conversion.covers_subtree),
        )
        if key not in self._fit:
            self._fit[key] = conversion.fits(layer_side(self.base.tree, base_path), layer_side(self.raw.tree, raw_path))
        return self._fit[key]

    @staticmethod
    def _tensor_key(features: TreeFeatures, path: str, whole_subtree: bool) -> object:
        own = tuple((t.name, t.shape) for t in features.own[path])
        return (own, features.subtree_hash.get(path)) if whole_subtree else own

    def cost_matrix(
        self,
        base_paths: Sequence[str],
        raw_paths: Sequence[str],
        base_anchor: str,
        raw_anchor: str,
        same_structure: bool = False,
        order_terms: bool = True,
    ) -> np.ndarray:
        """Pair costs; :data:`INCOMPATIBLE` where two layers can never pair.

        ``same_structure`` says every candidate has the same structural hash
        (siblings inside an identical subtree): only names, call order and
        position can then differ, and the structural terms are skipped.
        ``order_terms=False`` leaves out call order and position (the caller
        enforces order itself).
        """
        options = self.options
        # names as the matched ancestors see them: wrapper and opened-container names kept
        base_names = [relative_path(base_anchor, p) for p in base_paths]
        renamed_anchor = renumber(raw_anchor, self._renamed)
        raw_names = [relative_path(renamed_anchor, renumber(p, self._renamed)) for p in raw_paths]
        costs = options.name_weight * (
            1.0
            - np.array([[name_similarity(b, r) for r in raw_names] for b in base_names]).reshape(
                len(base_paths), len(raw_paths)
            )
        )
        if order_terms:
            costs += options.call_order_weight * _rank_distance(
                [self.base.call_rank.get(p) for p in base_paths], [self.raw.call_rank.get(p) for p in raw_paths]
            )
            costs += options.position_weight * _rank_distance(
                [self.base.relative_position(p, base_anchor) for p in base_paths],
                [self.raw.relative_position(p, raw_anchor) for p in raw_paths],
            )
        if same_structure:
            return costs
        for i, base_path in enumerate(base_paths):
            for j, raw_path in enumerate(raw_paths):
                if self.compatible(base_path, raw_path):
                    costs[i, j] += self._structure_cost(base_path, raw_path)
                else:
                    costs[i, j] = INCOMPATIBLE
        return costs

    def _structure_cost(self, base_path: str, raw_path: str) -> float:
        """Family, layout and content terms of one compatible pair."""
        options = self.options
        cost = 0.0
        base_family, raw_family = self.base.family[base_path], self.raw.family[raw_path]
        if base_family != raw_family:
            cost += options.family_weight
        elif base_family == CONTAINER:
            class_similarity = name_similarity(
                self.base.tree.nodes[base_path]["class_name"], self.raw.tree.nodes[raw_path]["class_name"]
            )
            cost += options.family_weight * (1.0 - class_similarity)
        if (
            self.base.own[base_path]
            and self.base.signature[base_path] != self.raw.signature[raw_path]
            and self.conversion(base_path, raw_path) is None
        ):
            cost += options.layout_weight
        if not self.base.is_leaf(base_path) and not self.raw.is_leaf(raw_path):
            cost += options.content_weight * (1.0 - self.content_similarity(base_path, raw_path))
        return cost

    def assign(
        self,
        base_paths: Sequence[str],
        raw_paths: Sequence[str],
        base_anchor: str,
        raw_anchor: str,
        same_structure: bool = False,
    ) -> list[Assignment]:
        """One-to-one pairs, near ties reported as candidates.

        Layers both models ran are aligned in call order first (an
        order-preserving alignment: a port computes in the same order, so
        call order separates same-shaped siblings however many there are);
        the rest are paired by ``linear_sum_assignment``.
        """
        if not base_paths or not raw_paths:
            return []
        if max(len(base_paths), len(raw_paths)) > LSA_MAX_CANDIDATES:
            return self._assign_by_order(base_paths, raw_paths)
        base_called = sorted((p for p in base_paths if p in self.base.call_rank), key=self.base.call_rank.__getitem__)
        raw_called = sorted((p for p in raw_paths if p in self.raw.call_rank), key=self.raw.call_rank.__getitem__)
        result: list[Assignment] = []
        if base_called and raw_called and len(base_called) * len(raw_called) <= ALIGN_MAX_CELLS:
            result = self._align_in_call_order(base_called, raw_called, base_anchor, raw_anchor, same_structure)
        taken_base = {pair.base for pair in result}
        taken_raw = {pair.raw for pair in result}
        rest_base = [p for p in base_paths if p not in taken_base]
        rest_raw = [p for p in raw_paths if p not in taken_raw]
        if rest_base and rest_raw:
            result += self._assign_optimal(rest_base, rest_raw, base_anchor, raw_anchor, same_structure)
        return result

    def _assign_optimal(
        self,
        base_paths: Sequence[str],
        raw_paths: Sequence[str],
        base_anchor: str,
        raw_anchor: str,
        same_structure: bool,
    ) -> list[Assignment]:
        """``linear_sum_assignment`` on the full cost matrix."""
        costs = self.cost_matrix(base_paths, raw_paths, base_anchor, raw_anchor, same_structure)
        chosen, total = _solve(costs)
        margin = self.options.ambiguity_margin
        result = []
        for i, j in chosen.items():
            cost = float(costs[i, j])
            rival = None
            near_tie = (np.count_nonzero(costs[i] <= cost + margin) > 1) or (
                np.count_nonzero(costs[:, j] <= cost + margin) > 1
            )
            if near_tie and self.base.tensor_layers.get(base_paths[i], 1) > 0:
                # the best assignment without this pair: is it (almost) as good, per pair it changes?
                costs[i, j] = INCOMPATIBLE
                alternative, alternative_total = _solve(costs)
                costs[i, j] = cost
                changed = sum(alternative.get(row) != column for row, column in chosen.items())
                if len(alternative) == len(chosen) and alternative_total - total <= margin * max(changed, 1):
                    rival = alternative.get(i)
            candidates = (raw_paths[rival],) if rival is not None else ()
            result.append(Assignment(base_paths[i], raw_paths[j], cost, candidates))
        return result

    def _align_in_call_order(
        self,
        base_paths: Sequence[str],
        raw_paths: Sequence[str],
        base_anchor: str,
        raw_anchor: str,
        same_structure: bool,
    ) -> list[Assignment]:
        """The order-preserving alignment with most pairs, then least cost (both lists in call order).

        A pair is ambiguous only if another raw layer between its neighbours'
        partners fits it within the margin: order has already ruled out the rest.
        """
        costs = self.cost_matrix(base_paths, raw_paths, base_anchor, raw_anchor, same_structure, order_terms=False)
        aligned = monotone_alignment(costs)
        margin = self.options.ambiguity_margin
        result = []
        for index, (i, j) in enumerate(aligned):
            low = aligned[index - 1][1] if index else -1
            high = aligned[index + 1][1] if index + 1 < len(aligned) else len(raw_paths)
            cost = float(costs[i, j])
            rivals = {raw_paths[k] for k in range(low + 1, high) if k != j and costs[i, k] <= cost + margin}
            result.append(Assignment(base_paths[i], raw_paths[j], cost, self._candidates(base_paths[i], rivals)))
        return result

    def _candidates(self, base_path: str, rivals: set[str]) -> tuple[str, ...]:
        """Rivals worth reporting: only where weights could go astray."""
        return tuple(sorted(rivals)) if self.base.tensor_layers.get(base_path, 1) > 0 else ()

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


def _solve(costs: np.ndarray) -> tuple[dict[int, int], float]:
    """``linear_sum_assignment`` keeping only possible pairs: row -> column, and their total cost."""
    rows, cols = linear_sum_assignment(costs)
    chosen = {int(i): int(j) for i, j in zip(rows, cols, strict=True) if costs[i, j] < INCOMPATIBLE}
    return chosen, float(sum(costs[i, j] for i, j in chosen.items()))


def monotone_alignment(costs: np.ndarray) -> list[tuple[int, int]]:
    """Order-preserving pairs ``(i, j)``: as many as possible, then the cheapest.

    A longest-common-subsequence dynamic programme where a compatible pair
    scores ``_PAIR_BONUS - cost`` (the bonus exceeds any cost).
    """
    rows, cols = costs.shape
    score = np.where(costs < INCOMPATIBLE, _PAIR_BONUS - costs, -np.inf)
    table = np.zeros((rows + 1, cols + 1))
    for i in range(1, rows + 1):
        previous, current = table[i - 1], table[i]
        for j in range(1, cols + 1):
            current[j] = max(previous[j], current[j - 1], previous[j - 1] + score[i - 1, j - 1])
    pairs = []
    i, j = rows, cols
    while i and j:
        if table[i, j] == table[i - 1, j]:
            i -= 1
        elif table[i, j] == table[i, j - 1]:
            j -= 1
        else:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    return pairs[::-1]


def _ranks(values: Sequence[float | None]) -> list[float | None]:
    """Each value's rank among the present ones, scaled to [0, 1]."""
    present = sorted((value, index) for index, value in enumerate(values) if value is not None)
    ranks: list[float | None] = [None] * len(values)
    span = max(len(present) - 1, 1)
    for rank, (_, index) in enumerate(present):
        ranks[index] = rank / span
    return ranks


def _rank_distance(base_values: Sequence[float | None], raw_values: Sequence[float | None]) -> np.ndarray:
    """|rank difference| per pair; 0.5 where one side has no value, 0 where neither has."""
    base_ranks = np.array([np.nan if r is None else r for r in _ranks(base_values)], dtype=float)
    raw_ranks = np.array([np.nan if r is None else r for r in _ranks(raw_values)], dtype=float)
    distance = np.abs(base_ranks[:, None] - raw_ranks[None, :])
    base_missing, raw_missing = np.isnan(base_ranks)[:, None], np.isnan(raw_ranks)[None, :]
    distance[base_missing != raw_missing] = 0.5
    distance[base_missing & raw_missing] = 0.0
    return distance
