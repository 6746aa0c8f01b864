"""Zhang–Shasha ordered tree edit distance, with the edit mapping.

Typed and with caller-supplied costs, for the matcher's small leftovers;
the ``zss`` package serves as its test oracle and benchmark baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Node = TypeVar("Node", bound=Hashable)


@dataclass
class _Postorder(Generic[Node]):
    nodes: list[Node]  # 1-based: nodes[0] is unused
    leftmost: list[int]
    keyroots: list[int]


def _postorder(root: Node, children: Callable[[Node], Sequence[Node]]) -> _Postorder[Node]:
    nodes: list[Node] = [root]  # placeholder at index 0
    leftmost = [0]
    stack: list[tuple[Node, bool]] = [(root, False)]
    index_stack: list[int] = []
    while stack:
        node, expanded = stack.pop()
        kids = children(node)
        if not expanded:
            stack.append((node, True))
            index_stack.append(len(nodes))  # marks where this subtree's nodes start
            stack.extend((kid, False) for kid in reversed(kids))
        else:
            start = index_stack.pop()
            nodes.append(node)
            leftmost.append(start)
    keyroots = sorted({max(i for i in range(1, len(nodes)) if leftmost[i] == lm) for lm in set(leftmost[1:])})
    return _Postorder(nodes, leftmost, keyroots)


@dataclass(frozen=True)
class EditResult(Generic[Node]):
    distance: float
    mapping: list[tuple[Node, Node]]


def tree_edit(
    left_root: Node,
    right_root: Node,
    children: Callable[[Node], Sequence[Node]],
    rename_cost: Callable[[Node, Node], float],
    remove_cost: Callable[[Node], float],
    insert_cost: Callable[[Node], float],
    right_children: Callable[[Node], Sequence[Node]] | None = None,
) -> EditResult[Node]:
    """Minimal-cost edit script between two ordered trees and the nodes it maps.

    ``children`` lists a node's children in order (``right_children`` for the
    right tree, if its nodes need another lookup). Exact: O(n² m²) in the
    worst case, so callers keep both trees small.
    """
    left = _postorder(left_root, children)
    right = _postorder(right_root, right_children or children)
    n, m = len(left.nodes) - 1, len(right.nodes) - 1
    treedist = [[0.0] * (m + 1) for _ in range(n + 1)]

    def forest(i: int, j: int) -> dict[tuple[int, int], float]:
        li, lj = left.leftmost[i], right.leftmost[j]
        fd: dict[tuple[int, int], float] = {(li - 1, lj - 1): 0.0}
        for a in range(li, i + 1):
            fd[(a, lj - 1)] = fd[(a - 1, lj - 1)] + remove_cost(left.nodes[a])
        for b in range(lj, j + 1):
            fd[(li - 1, b)] = fd[(li - 1, b - 1)] + insert_cost(right.nodes[b])
        for a in range(li, i + 1):
            for b in range(lj, j + 1):
                remove = fd[(a - 1, b)] + remove_cost(left.nodes[a])
                insert = fd[(a, b - 1)] + insert_cost(right.nodes[b])
                if left.leftmost[a] == li and right.leftmost[b] == lj:
                    rename = fd[(a - 1, b - 1)] + rename_cost(left.nodes[a], right.nodes[b])
                    fd[(a, b)] = min(remove, insert, rename)
                    treedist[a][b] = fd[(a, b)]
                else:
                    subtree = fd[(left.leftmost[a] - 1, right.leftmost[b] - 1)] + treedist[a][b]
                    fd[(a, b)] = min(remove, insert, subtree)
        return fd

    for i in left.keyroots:
        for j in right.keyroots:
            forest(i, j)

    mapping: list[tuple[Node, Node]] = []
    pending = [(n, m)]
    while pending:
        i, j = pending.pop()
        fd = forest(i, j)
        li, lj = left.leftmost[i], right.leftmost[j]
        a, b = i, j
        while a >= li or b >= lj:
            if a >= li and fd[(a - 1, b)] + remove_cost(left.nodes[a]) == fd[(a, b)]:
                a -= 1
            elif b >= lj and fd[(a, b - 1)] + insert_cost(right.nodes[b]) == fd[(a, b)]:
                b -= 1
            elif left.leftmost[a] == li and right.leftmost[b] == lj:
                mapping.append((left.nodes[a], right.nodes[b]))
                a, b = a - 1, b - 1
            else:
                pending.append((a, b))
                a, b = left.leftmost[a] - 1, right.leftmost[b] - 1
    return EditResult(treedist[n][m], mapping)
