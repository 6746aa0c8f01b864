"""The matcher's stages, in pipeline order (GumTree-like).

1. :func:`anchor_identical_subtrees` — top-down: a subtree whose name-free
   hash is unique on both sides is matched whole.
2. :func:`match_roots` — the two roots, unless anchoring paired them elsewhere.
3. :func:`bottom_up_containers` — a container matches the raw container
   holding most of its matched descendants.
4. :func:`recover_children` — inside each matched pair, the unmatched
   children are paired (aligned in call order when traced, else by
   ``linear_sum_assignment``, with numbered blocks compared under the index
   offset that lines their structures up: stage ``index-offset``); containers
   left over are opened up and their children tried.
5. :func:`recover_leftovers` — tensor layers still unmatched meet across
   container boundaries, under their closest common matched ancestors.
6. :func:`drop_inconsistent_containers` — containers whose contents do not
   correspond are unpaired: they do not compute the same thing.
7. :func:`order_leftovers` — an exact tree edit distance places what is
   still unmatched (typically parameter-less activations) in order between
   the matches around it.
8. :func:`align_wrapper_chains` — wrapper layers around matched layers pair
   up by class (the matched pair may move to a wrapper that computes the same).
9. :func:`settle_candidates` — rivals taken by confident matches are dropped.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Callable
from itertools import pairwise

import numpy as np

from padiff_graph.core.tree import is_within, relative_path
from padiff_graph.knowledge.conversions import LayerSide, layer_side
from padiff_graph.knowledge.families import CONTAINER
from padiff_graph.layermap.pairs import OFFSET_STAGE
from padiff_graph.match.costs import INCOMPATIBLE, Scorer, monotone_alignment, name_similarity
from padiff_graph.match.features import TreeFeatures
from padiff_graph.match.store import MappingStore
from padiff_graph.match.ted import tree_edit


def anchor_identical_subtrees(scorer: Scorer, store: MappingStore) -> None:
    """Match subtrees whose structural hash is unique on both sides, largest first."""
    base, raw = scorer.base, scorer.raw
    base_by_hash: dict[int, list[str]] = defaultdict(list)
    raw_by_hash: dict[int, list[str]] = defaultdict(list)
    for path in base.kept:
        if base.tensor_layers[path]:
            base_by_hash[base.subtree_hash[path]].append(path)
    for path in raw.kept:
        if raw.tensor_layers[path]:
            raw_by_hash[raw.subtree_hash[path]].append(path)
    shared = sorted(
        set(base_by_hash) & set(raw_by_hash),
        key=lambda h: (-base.subtree_size[base_by_hash[h][0]], base.position[base_by_hash[h][0]]),
    )
    for subtree_hash in shared:
        base_free = [p for p in base_by_hash[subtree_hash] if not store.has_base(p)]
        raw_free = [p for p in raw_by_hash[subtree_hash] if not store.has_raw(p)]
        if len(base_free) == 1 and len(raw_free) == 1:
            match_isomorphic(scorer, store, base_free[0], raw_free[0], 1.0, ())


def match_isomorphic(
    scorer: Scorer, store: MappingStore, base_path: str, raw_path: str, score: float, candidates: tuple[str, ...]
) -> None:
    """Match two subtrees with equal hashes, pairing same-hash children by the cost model."""
    base, raw = scorer.base, scorer.raw
    pending = [(base_path, raw_path, score, candidates)]
    while pending:
        base_node, raw_node, node_score, node_candidates = pending.pop()
        if store.has_base(base_node) or store.has_raw(raw_node):
            continue
        store.add(base_node, raw_node, node_score, "anchor", node_candidates)
        raw_groups: dict[int, list[str]] = defaultdict(list)
        for child in raw.kept_children[raw_node]:
            raw_groups[raw.subtree_hash[child]].append(child)
        base_groups: dict[int, list[str]] = defaultdict(list)
        for child in base.kept_children[base_node]:
            base_groups[base.subtree_hash[child]].append(child)
        for subtree_hash, base_members in base_groups.items():
            raw_members = raw_groups.get(subtree_hash, [])
            if len(base_members) == 1 and len(raw_members) == 1:
                pending.append((base_members[0], raw_members[0], 1.0, ()))
                continue
            # identical structure: equal names settle it; the rest go to the cost model
            raw_by_name = {raw.local_name[member]: member for member in raw_members}
            leftover_base = []
            for member in base_members:
                partner = raw_by_name.pop(base.local_name[member], None)
                if partner is None:
                    leftover_base.append(member)
                else:
                    pending.append((member, partner, 1.0, ()))
            leftover_raw = list(raw_by_name.values())
            for pair in scorer.assign(leftover_base, leftover_raw, base_node, raw_node, same_structure=True):
                pending.append((pair.base, pair.raw, pair.score, pair.candidates))


def match_roots(scorer: Scorer, store: MappingStore) -> None:
    if not store.has_base("") and not store.has_raw(""):
        store.add("", "", 1.0, "root")


def bottom_up_containers(scorer: Scorer, store: MappingStore) -> None:
    """Match each unmatched base container to the raw one sharing most matched descendants."""
    base, raw = scorer.base, scorer.raw
    for path in reversed(base.kept):
        if store.has_base(path) or base.is_leaf(path):
            continue
        tensor_descendants = [d for d in base.kept_descendants(path) if base.own[d]]
        votes: Counter[str] = Counter()
        for descendant in tensor_descendants:
            ancestor = raw.kept_parent.get(store.raw_of(descendant) or "", None)
            if not store.has_base(descendant):
                continue
            while ancestor is not None:
                if not store.has_raw(ancestor):
                    votes[ancestor] += 1
                ancestor = raw.kept_parent[ancestor]
        best, best_key = None, (0.0, 0.0)
        for candidate, common in votes.items():
            candidate_total = raw.tensor_layers[candidate] - int(bool(raw.own[candidate]))
            similarity = common / (len(tensor_descendants) + candidate_total - common)
            key = (similarity, name_similarity(base.local_name[path], raw.local_name[candidate]))
            if key > best_key:
                best, best_key = candidate, key
        if best is not None and best_key[0] >= scorer.options.min_bottom_up_similarity:
            store.add(path, best, round(best_key[0], 3), "bottom-up")


def recover_children(scorer: Scorer, store: MappingStore) -> None:
    """Pair the unmatched children of every matched pair, top-down.

    Parameter-less leaves are left to :func:`order_leftovers`, which respects
    their order. Containers left unmatched are opened up and their children
    tried, so differently nested blocks still meet; the side holding the
    bigger containers opens first, since the extra level is on that side.
    """
    base, raw = scorer.base, scorer.raw
    queue = deque(sorted(store.by_base, key=base.position.__getitem__))
    while queue:
        base_parent = queue.popleft()
        raw_parent = store.raw_of(base_parent)
        if raw_parent is None or scorer.covers_everything(base_parent, raw_parent):
            continue
        base_free = [c for c in base.kept_children[base_parent] if not store.has_base(c)]
        raw_free = [c for c in raw.kept_children[raw_parent] if not store.has_raw(c)]
        while base_free and raw_free:
            base_try = [p for p in base_free if base.tensor_layers[p] or not base.is_leaf(p)]
            raw_try = [p for p in raw_free if raw.tensor_layers[p] or not raw.is_leaf(p)]
            for pair in scorer.assign(base_try, raw_try, base_parent, raw_parent):
                stage = OFFSET_STAGE if scorer.renumbered(pair.raw) else "recovery"
                store.add(pair.base, pair.raw, pair.score, stage, pair.candidates)
                queue.append(pair.base)
            base_left = [p for p in base_free if not store.has_base(p)]
            raw_left = [p for p in raw_free if not store.has_raw(p)]
            base_size = max((base.tensor_layers[p] for p in base_left if _is_container(base, p)), default=0)
            raw_size = max((raw.tensor_layers[p] for p in raw_left if _is_container(raw, p)), default=0)
            if not base_size and not raw_size:
                break
            # open the side holding the bigger containers: the extra level is there
            base_free = _open_containers(base, base_left, store.has_base) if base_size >= raw_size else base_left
            raw_free = _open_containers(raw, raw_left, store.has_raw) if raw_size >= base_size else raw_left


def _is_container(features: TreeFeatures, path: str) -> bool:
    return not features.is_leaf(path) and not features.own[path]


def _open_containers(features: TreeFeatures, paths: list[str], is_matched: Callable[[str], bool]) -> list[str]:
    """Replace containers by their unmatched children; everything else stays."""
    opened: list[str] = []
    for path in paths:
        if _is_container(features, path):
            opened.extend(child for child in features.kept_children[path] if not is_matched(child))
        else:
            opened.append(path)
    return opened


def recover_leftovers(scorer: Scorer, store: MappingStore) -> None:
    """Pair tensor layers still unmatched anywhere below a matched pair, deepest pair first.

    Recovery only looks at a pair's own children, so a layer held inside one
    container on one side (HuggingFace keeps the residual LayerNorm inside
    ``attention.output``) and next to it on the other (paddle's ``norm1``)
    is left over; here it meets its counterpart under their closest common
    matched ancestors.
    """
    base, raw = scorer.base, scorer.raw
    if not any(base.own[p] and not store.has_base(p) for p in base.kept):
        return
    if not any(raw.own[p] and not store.has_raw(p) for p in raw.kept):
        return

    def base_covering(path: str) -> bool:
        partner = store.raw_of(path)
        return partner is not None and scorer.covers_everything(path, partner)

    def raw_covering(path: str) -> bool:
        partner = store.base_of(path)
        return partner is not None and scorer.covers_everything(partner, path)

    for base_root in sorted(store.by_base, key=lambda path: -path.count(".") if path else 1):
        raw_root = store.raw_of(base_root)
        if raw_root is None or scorer.covers_everything(base_root, raw_root):
            continue
        base_left = _free_tensor_layers(base, base_root, store.has_base, base_covering)
        raw_left = _free_tensor_layers(raw, raw_root, store.has_raw, raw_covering)
        if base_left and raw_left:
            for pair in scorer.assign(base_left, raw_left, base_root, raw_root):
                store.add(pair.base, pair.raw, pair.score, "leftover", pair.candidates)


def _free_tensor_layers(
    features: TreeFeatures, root: str, is_matched: Callable[[str], bool], is_covering: Callable[[str], bool]
) -> list[str]:
    """Unmatched tensor layers below ``root``, outside subtrees a conversion covers whole."""
    result: list[str] = []
    stack = list(features.kept_children[root])
    while stack:
        path = stack.pop()
        if is_covering(path):
            continue
        if features.own[path] and not is_matched(path):
            result.append(path)
        stack.extend(features.kept_children[path])
    return result


def drop_inconsistent_containers(scorer: Scorer, store: MappingStore) -> None:
    """Unpair containers whose contents do not correspond one to one.

    Two containers compute the same thing only if every matched tensor layer
    inside one has its partner inside the other. HuggingFace's ``attention``
    (attention, residual and LayerNorm) is not paddle's ``self_attn``
    (attention only): comparing their outputs would report a divergence
    that is not there.
    """
    base, raw = scorer.base, scorer.raw
    for match in list(store.by_base.values()):
        if base.is_leaf(match.base) and raw.is_leaf(match.raw):
            continue
        leaks = any(
            base.own[d] and store.has_base(d) and not is_within(store.raw_of(d) or "", match.raw)
            for d in base.kept_descendants(match.base)
        ) or any(
            raw.own[d] and store.has_raw(d) and not is_within(store.base_of(d) or "", match.base)
            for d in raw.kept_descendants(match.raw)
        )
        if leaks:
            store.remove(match.base)


#: Rename cost in the edit distance for two layers that cannot pair.
_FORBIDDEN = 1000.0


def order_leftovers(scorer: Scorer, store: MappingStore) -> None:
    """Place unmatched layers between matched neighbours with an exact tree edit distance.

    For each matched pair, both subtrees are cut at matched descendants (which
    may only map to their partners), and Zhang–Shasha maps what is left in
    order. Above ``ted_max_layers`` a side, the leftovers go to the bipartite
    assignment instead.
    """
    base, raw = scorer.base, scorer.raw
    for base_root in sorted(store.by_base, key=base.position.__getitem__):
        raw_root = store.raw_of(base_root)
        if raw_root is None or scorer.covers_everything(base_root, raw_root):
            continue
        base_gap = _gap(base, base_root, store.has_base)
        raw_gap = _gap(raw, raw_root, store.has_raw)
        if not base_gap or not raw_gap:
            continue
        limit = scorer.options.ted_max_layers
        if len(base_gap) > limit or len(raw_gap) > limit:
            for pair in scorer.assign(base_gap, raw_gap, base_root, raw_root):
                store.add(pair.base, pair.raw, pair.score, "recovery", pair.candidates)
            continue

        def base_children(path: str, root: str = base_root) -> list[str]:
            if path != root and store.has_base(path):
                return []
            return _in_call_order(base, base.kept_children[path])

        def raw_children(path: str, root: str = raw_root) -> list[str]:
            if path != root and store.has_raw(path):
                return []
            return _in_call_order(raw, raw.kept_children[path])

        def rename(base_path: str, raw_path: str) -> float:
            partner = store.raw_of(base_path)
            if partner is not None or store.has_raw(raw_path):
                return 0.0 if partner == raw_path else _FORBIDDEN
            if not scorer.compatible(base_path, raw_path):
                return _FORBIDDEN
            similarity = name_similarity(base.local_name[base_path], raw.local_name[raw_path])
            return round((1.0 - similarity) * 16) / 64  # dyadic: exact in the backtrace

        result = tree_edit(
            base_root, raw_root, base_children, rename, lambda _: 1.0, lambda _: 1.0, right_children=raw_children
        )
        for base_path, raw_path in result.mapping:
            if not store.has_base(base_path) and not store.has_raw(raw_path) and rename(base_path, raw_path) < 1:
                candidates = _position_only(scorer, store, (base_gap, raw_gap), base_path, raw_path)
                if candidates is not None:
                    score = round(1.0 - rename(base_path, raw_path), 3)
                    store.add(base_path, raw_path, score, "tree-edit", tuple(c for c in candidates if c != raw_path))


def _position_only(
    scorer: Scorer, store: MappingStore, gaps: tuple[list[str], list[str]], base_path: str, raw_path: str
) -> list[str] | None:
    """What the tree edit's pairing is worth where no call order was traced: definition order is all it saw.

    ``None``: parameter-less containers of different families (HF's
    ``BertAttention`` against paddle's ``MultiHeadAttention``), which compute
    different things, are not paired. A parameter-less leaf is settled when it
    is the only one of its family, on both sides, between the same two matched
    tensor-holding layers (a ``ReLU`` between a matched BatchNorm and the
    next matched convolution), or when names single the pair out; otherwise
    its candidates are the free raw leaves of its family (HF's
    ``output.dropout`` against paddle's ``dropout1`` and ``dropout2``).
    """
    base, raw = scorer.base, scorer.raw
    if (base.call_rank and raw.call_rank) or base.own[base_path] or raw.own[raw_path]:
        return []
    if not base.is_leaf(base_path) or not raw.is_leaf(raw_path):
        return None if base.family[base_path] != raw.family[raw_path] else []
    family = base.family[base_path]

    def peers(side: TreeFeatures, paths: list[str]) -> list[str]:
        return [p for p in paths if side.is_leaf(p) and not side.own[p] and side.family[p] == family]

    base_peers, raw_peers = peers(base, gaps[0]), peers(raw, gaps[1])
    if len(base_peers) < 2 and len(raw_peers) < 2:
        return []
    base_bounds, raw_bounds = _matched_bounds(scorer, store, base_path)
    between_base = [p for p in base_peers if base_bounds[0] < base.position[p] < base_bounds[1]]
    between_raw = [p for p in raw_peers if raw_bounds[0] < raw.position[p] < raw_bounds[1]]
    if between_base == [base_path] and between_raw == [raw_path]:
        return []
    similarity = name_similarity(base.local_name[base_path], raw.local_name[raw_path])
    rivals = [name_similarity(base.local_name[base_path], raw.local_name[p]) for p in raw_peers if p != raw_path]
    rivals += [name_similarity(base.local_name[p], raw.local_name[raw_path]) for p in base_peers if p != base_path]
    return [] if all(similarity > rival for rival in rivals) else raw_peers


def _matched_bounds(scorer: Scorer, store: MappingStore, base_path: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Definition positions, on each side, of the nearest matched tensor-holding layers around ``base_path``."""
    base, raw = scorer.base, scorer.raw
    position = base.position[base_path]
    held = [(p, r) for p in base.order if base.own[p] and (r := store.raw_of(p)) is not None]
    before = [(p, r) for p, r in held if base.position[p] < position]
    after = [(p, r) for p, r in held if base.position[p] > position]
    base_bounds = (
        base.position[before[-1][0]] if before else -1,
        base.position[after[0][0]] if after else len(base.order),
    )
    raw_bounds = (raw.position[before[-1][1]] if before else -1, raw.position[after[0][1]] if after else len(raw.order))
    return base_bounds, raw_bounds


def _gap(features: TreeFeatures, root: str, is_matched: Callable[[str], bool]) -> list[str]:
    """Unmatched kept layers below ``root`` that no matched descendant encloses."""
    result: list[str] = []
    stack = list(features.kept_children[root])
    while stack:
        path = stack.pop()
        if is_matched(path):
            continue
        result.append(path)
        stack.extend(features.kept_children[path])
    return result


def _in_call_order(features: TreeFeatures, paths: list[str]) -> list[str]:
    return sorted(paths, key=lambda p: (features.call_rank.get(p, 2.0), features.position[p]))


def align_wrapper_chains(scorer: Scorer, store: MappingStore) -> None:
    """Pair the layers of two matched wrapper chains by class, in order.

    A wrapper and the layer it wraps hold the same tensors, but not always
    the same computation: torchvision's ``InvertedResidual`` adds the
    residual around a ``Sequential`` it wraps. Of each chain (outermost
    wrapper down to the matched layer) the layers whose classes correspond
    are paired, so a ``InvertedResidual`` faces an ``InvertedResidual``.
    """
    base, raw = scorer.base, scorer.raw
    for match in list(store.by_base.values()):
        base_chain = [*reversed(base.wrappers_above.get(match.base, [])), match.base]
        raw_chain = [*reversed(raw.wrappers_above.get(match.raw, [])), match.raw]
        if len(base_chain) == len(raw_chain) == 1:
            continue
        similarity = np.array([[_class_similarity(scorer, b, r) for r in raw_chain] for b in base_chain])
        similarity[-1, -1] += 0.01  # on a tie, the matched layers themselves
        aligned = _fill_equal_gaps(
            monotone_alignment(np.where(similarity >= 0.5, 1.0 - similarity, INCOMPATIBLE)),
            len(base_chain),
            len(raw_chain),
        )
        if not aligned or aligned == [(len(base_chain) - 1, len(raw_chain) - 1)]:
            continue
        store.remove(match.base)
        for i, j in aligned:
            if (i, j) == (len(base_chain) - 1, len(raw_chain) - 1):
                store.add(match.base, match.raw, match.score, match.stage, match.candidates)
            else:
                store.add(base_chain[i], raw_chain[j], round(match.score * min(similarity[i, j], 1.0), 3), "wrapper")


def _fill_equal_gaps(aligned: list[tuple[int, int]], base_length: int, raw_length: int) -> list[tuple[int, int]]:
    """Also pair, in order, chain layers between two aligned ones where both sides have as many."""
    filled = []
    bounds = [(-1, -1), *aligned, (base_length, raw_length)]
    for (base_start, raw_start), (base_end, raw_end) in pairwise(bounds):
        if base_end - base_start == raw_end - raw_start:
            filled += [(base_start + k, raw_start + k) for k in range(1, base_end - base_start)]
        if base_end < base_length:
            filled.append((base_end, raw_end))
    return filled


def _class_similarity(scorer: Scorer, base_path: str, raw_path: str) -> float:
    base_family, raw_family = scorer.base.family[base_path], scorer.raw.family[raw_path]
    if base_family != CONTAINER or raw_family != CONTAINER:
        return 1.0 if base_family == raw_family else 0.0
    base_class = scorer.base.tree.nodes[base_path]["class_name"]
    raw_class = scorer.raw.tree.nodes[raw_path]["class_name"]
    return 1.0 if base_class == raw_class else name_similarity(base_class, raw_class) / 0.75


def settle_candidates(store: MappingStore) -> None:
    """Drop candidates that a confident match took after the ambiguity was judged.

    Ambiguity is judged inside one assignment; a candidate claimed later by a
    match with no rival of its own is no real alternative any more.
    """
    confident = {match.raw for match in store.by_base.values() if not match.candidates}
    for match in list(store.by_base.values()):
        remaining = tuple(candidate for candidate in match.candidates if candidate not in confident)
        if remaining != match.candidates:
            store.remove(match.base)
            store.add(match.base, match.raw, match.score, match.stage, remaining)


def drop_covered_descendants(scorer: Scorer, store: MappingStore) -> tuple[set[str], set[str]]:
    """Unpair layers inside a pair whose conversion maps their tensors.

    A descendant is covered when the conversion pairs every tensor of its
    subtree (a fused block's q/k/v Linears; tensor-less insides such as
    paddle's RNN cells); one it leaves alone keeps its own match. An opaque
    init covers the whole subtree. Returns the base and raw layers so
    covered: they are part of their ancestor's pair, not unmatched.
    """
    covered_base: set[str] = set()
    covered_raw: set[str] = set()
    for match in list(store.by_base.values()):
        if store.raw_of(match.base) != match.raw or not scorer.covers_subtree(match.base, match.raw):
            continue
        base_side, raw_side = layer_side(scorer.base.tree, match.base), layer_side(scorer.raw.tree, match.raw)
        conversion = scorer.conversion(match.base, match.raw)
        assert conversion is not None
        if conversion.init is not None:
            covered_base.update(scorer.base.descendants(match.base))
            covered_raw.update(scorer.raw.descendants(match.raw))
            continue
        pairs = conversion.tensor_pairs(base_side, raw_side)
        covered_base.update(_covered_below(scorer.base, match.base, base_side, {p.base for p in pairs}))
        covered_raw.update(_covered_below(scorer.raw, match.raw, raw_side, {p.raw for p in pairs}))
    for path in covered_base:
        if store.has_base(path):
            store.remove(path)
    for path in covered_raw:
        base_path = store.base_of(path)
        if base_path is not None:
            store.remove(base_path)
    return covered_base, covered_raw


def _covered_below(features: TreeFeatures, path: str, side: LayerSide, used: set[str]) -> list[str]:
    """Descendants of ``path`` all of whose subtree tensors are among ``used`` (relative names)."""
    free = {name.rpartition(".")[0] for name in side.subtree_tensors if name not in used and "." in name}
    blocked = set()
    for prefix in free:  # a layer holding a free tensor, and its ancestors up to ``path``, stay matched
        while prefix:
            blocked.add(prefix)
            prefix = prefix.rpartition(".")[0]
    return [d for d in features.descendants(path) if relative_path(path, d) not in blocked]
