"""What the matcher knows about each layer of one tree, computed once.

Wrapper layers (no tensors of their own, exactly one child) are contracted:
matching runs on the remaining "kept" layers, whose contracted children skip
over wrapper chains, so a block wrapped in an extra container on one side
still lines up with the bare block on the other.
"""

from __future__ import annotations

from collections import Counter

from padiff_graph.core.records import TensorInfo
from padiff_graph.core.tree import ROOT, ModelTree, children, preorder, relative_path
from padiff_graph.knowledge.families import CONTAINER, CONTENT_FAMILIES, TRANSPOSED_LAYOUTS, family_of, significant

Signature = tuple[tuple[int, ...], ...]


def shape_key(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape up to transposition: what compatibility of unknown layouts can rely on."""
    return tuple(sorted(shape))


def layout_key(framework: str, family: str, tensor: TensorInfo) -> tuple[int, ...]:
    """A shape in torch's layout where the family's layout is known, else up to transposition."""
    if family == CONTAINER:
        return shape_key(tensor.shape)
    if (framework, family, tensor.name) in TRANSPOSED_LAYOUTS:
        return tensor.shape[::-1]
    return tensor.shape


class TreeFeatures:
    """Per-layer matching features of one model tree.

    ``atomic`` names classes or families whose subtree a conversion maps as a
    whole (attention, RNNs): the frameworks lay out their insides differently
    (torch's fused ``in_proj_weight`` against paddle's four Linears), so
    :meth:`atomic_content` counts them as one item; a hand-written block
    facing a builtin one is still compared by its parts (:meth:`content`).
    """

    def __init__(self, tree: ModelTree, atomic: frozenset[str] = frozenset()) -> None:
        self.tree = tree
        self.atomic = atomic
        self.framework: str = tree.graph["framework"]
        self.order: list[str] = list(preorder(tree))
        self.position = {path: rank for rank, path in enumerate(self.order)}
        nodes = tree.nodes
        self.family = {path: family_of(nodes[path]["class_name"], nodes[path]["builtin"]) for path in self.order}
        self.own = {path: tuple(t for t in nodes[path]["tensors"] if significant(t)) for path in self.order}
        self.own_numel = {path: sum(t.numel for t in self.own[path]) for path in self.order}
        #: own tensor shapes up to transposition (loose) and in torch's layout (exact where known)
        self.signature: dict[str, Signature] = {
            path: tuple(sorted(shape_key(t.shape) for t in self.own[path])) for path in self.order
        }
        self.layout: dict[str, Signature] = {
            path: tuple(sorted(layout_key(self.framework, self.family[path], t) for t in self.own[path]))
            for path in self.order
        }
        #: layers holding another layer's tensor as their own (``lm_head`` tied to the embedding), exported without it
        self.tied = {alias.rpartition(".")[0] for alias in tree.graph.get("tied", {})}
        self.children = {path: children(tree, path) for path in self.order}
        self.parent = {path: next(iter(tree.predecessors(path)), None) for path in self.order}
        self.is_wrapper = {
            path: path != ROOT and not self.own[path] and len(self.children[path]) == 1 for path in self.order
        }
        self.kept_children: dict[str, list[str]] = {}
        self.wrappers_above: dict[str, list[str]] = {}
        self.kept_parent: dict[str, str | None] = {}
        self._contract(ROOT, None)
        self.kept = [path for path in self.order if not self.is_wrapper[path]]
        #: a kept layer's name as its kept parent sees it: wrapper names included
        #: (``0.inner.body``), since they often carry the block index
        self.local_name = {path: relative_path(self.kept_parent[path] or ROOT, path) for path in self.kept}
        self.subtree_hash: dict[str, int] = {}
        self.subtree_size: dict[str, int] = {}
        self.tensor_layers: dict[str, int] = {}
        self.subtree_numel: dict[str, int] = {}
        for path in reversed(self.kept):
            kids = self.kept_children[path]
            self.subtree_numel[path] = self.own_numel[path] + sum(self.subtree_numel[k] for k in kids)
            self.subtree_hash[path] = hash(
                (self.family[path], self.layout[path], tuple(sorted(self.subtree_hash[k] for k in kids)))
            )
            self.subtree_size[path] = 1 + sum(self.subtree_size[k] for k in kids)
            self.tensor_layers[path] = int(bool(self.own[path])) + sum(self.tensor_layers[k] for k in kids)
        self.span: dict[str, int] = {}
        for path in reversed(self.order):
            self.span[path] = 1 + sum(self.span[child] for child in self.children[path])
        self._contents: dict[str, Counter[tuple[str, Signature]]] = {}
        self._atomic_contents: dict[str, Counter[tuple[str, Signature]]] = {}
        #: whether a subtree holds an atomic layer (only then do contents have two readings)
        self.holds_atomic: dict[str, bool] = {}
        for path in reversed(self.order):
            self.holds_atomic[path] = self.is_atomic(path) or any(self.holds_atomic[k] for k in self.children[path])
        call_order = tree.graph.get("call_order")
        self.call_rank: dict[str, float] = {}
        if call_order:
            for rank, path in enumerate(call_order):
                self.call_rank.setdefault(path, rank / max(len(call_order) - 1, 1))

    def _contract(self, path: str, kept_parent: str | None) -> None:
        stack: list[tuple[str, str | None]] = [(path, kept_parent)]
        while stack:
            current, parent = stack.pop()
            chain = []
            while self.is_wrapper[current]:
                chain.append(current)
                current = self.children[current][0]
            self.wrappers_above[current] = list(reversed(chain))
            self.kept_parent[current] = parent
            self.kept_children[current] = []
            if parent is not None:
                self.kept_children[parent].append(current)
            stack.extend((child, current) for child in reversed(self.children[current]))

    def kept_descendants(self, path: str) -> list[str]:
        """Kept layers strictly below ``path`` in the contracted tree."""
        result: list[str] = []
        stack = list(self.kept_children[path])
        while stack:
            current = stack.pop()
            result.append(current)
            stack.extend(self.kept_children[current])
        return result

    def descendants(self, path: str) -> list[str]:
        """All layers strictly below ``path`` (wrappers included)."""
        result: list[str] = []
        stack = list(self.children[path])
        while stack:
            current = stack.pop()
            result.append(current)
            stack.extend(self.children[current])
        return result

    def content(self, path: str) -> Counter[tuple[str, Signature]]:
        """Multiset of (family, signature) of the tensor layers in a subtree."""
        if path not in self._contents:
            counter: Counter[tuple[str, Signature]] = Counter()
            for node in [path, *self.kept_descendants(path)]:
                if self.own[node]:
                    family = self.family[node]
                    counter[(CONTENT_FAMILIES.get(family, family), self.signature[node])] += 1
            self._contents[path] = counter
        return self._contents[path]

    def atomic_content(self, path: str) -> Counter[tuple[str, Signature]]:
        """:meth:`content` with each atomic layer counted once, by its family and element count."""
        if path not in self._atomic_contents:
            counter: Counter[tuple[str, Signature]] = Counter()
            stack = [path]
            while stack:
                node = stack.pop()
                if self.is_atomic(node):
                    counter[(self.family[node], ((self.subtree_numel[node],),))] += 1
                    continue
                if self.own[node]:
                    counter[(self.family[node], self.signature[node])] += 1
                stack.extend(self.kept_children[node])
            self._atomic_contents[path] = counter
        return self._atomic_contents[path]

    def is_atomic(self, path: str) -> bool:
        node = self.tree.nodes[path]
        return bool(self.atomic) and (node["class_name"] in self.atomic or self.family[path] in self.atomic)

    def relative_position(self, path: str, ancestor: str) -> float:
        """Where ``path`` sits inside ``ancestor``'s subtree, from 0 to 1."""
        return (self.position[path] - self.position[ancestor]) / self.span[ancestor]

    def is_leaf(self, path: str) -> bool:
        return not self.kept_children[path]
