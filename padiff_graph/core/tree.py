"""Model trees: one rooted ``networkx.DiGraph`` per model.

Nodes are keyed by dotted layer path (root ``""``) and carry the fields of
:class:`~padiff_graph.core.records.LayerInfo` as attributes; edges go parent to
child. ``graph.graph`` holds the framework, the root class and, when the
model was traced on inputs, ``call_order``: paths in the order their forward
first ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import fields, replace
from typing import TypeAlias

import networkx as nx

from padiff_graph.core.records import LayerInfo, TensorInfo, TensorKind, join_path
from padiff_graph.core.tensorfile import itemsize

ModelTree: TypeAlias = nx.DiGraph
ROOT = ""


def build_tree(
    layers: Iterable[LayerInfo], call_order: Sequence[str] | None = None, shared: Mapping[str, str] | None = None
) -> ModelTree:
    """Assemble the tree from exported records (parents before children).

    ``shared`` (``graph["shared"]``): other names of layers the model reaches
    under several names -> the name the tree lists them under.
    """
    tree = nx.DiGraph()
    for layer in layers:
        attributes = {f.name: getattr(layer, f.name) for f in fields(layer) if f.name != "path"}
        tree.add_node(layer.path, **attributes)
        if layer.parent is not None:
            tree.add_edge(layer.parent, layer.path)
    root = tree.nodes[ROOT]
    tree.graph.update(framework=root["framework"], model=root["class_name"])
    if call_order is not None:
        tree.graph["call_order"] = list(call_order)
    tree.graph["shared"] = dict(shared or {})
    return tree


def layer_info(tree: ModelTree, path: str) -> LayerInfo:
    """The record of one node."""
    return LayerInfo(path=path, **tree.nodes[path])


def children(tree: ModelTree, path: str) -> list[str]:
    """Child paths in definition order."""
    return sorted(tree.successors(path), key=lambda child: tree.nodes[child]["index"])


def tensors(tree: ModelTree, path: str) -> tuple[TensorInfo, ...]:
    result: tuple[TensorInfo, ...] = tree.nodes[path]["tensors"]
    return result


def preorder(tree: ModelTree, path: str = ROOT) -> Iterator[str]:
    """Paths in definition order, parents first (``named_modules`` order)."""
    stack = [path]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(tree, current)))


def full_tensor_names(tree: ModelTree) -> dict[str, TensorInfo]:
    """Every tensor by full dotted name, as ``named_parameters``/``named_buffers`` give it."""
    return {join_path(path, tensor.name): tensor for path in preorder(tree) for tensor in tensors(tree, path)}


def relative_path(ancestor: str, path: str) -> str:
    """``path`` relative to ``ancestor`` (which must be an ancestor or itself)."""
    if ancestor == ROOT:
        return path
    if path == ancestor:
        return ""
    return path[len(ancestor) + 1 :]


def is_within(path: str, ancestor: str) -> bool:
    """True if ``path`` is ``ancestor`` or below it."""
    return ancestor == ROOT or path == ancestor or path.startswith(ancestor + ".")


def subtree(tree: ModelTree, path: str) -> ModelTree:
    """The layers at and below ``path`` as a tree of its own, paths relative to ``path`` (its new root)."""
    layers = []
    for layer in preorder(tree, path):
        record = layer_info(tree, layer)
        layers.append(replace(record, path=relative_path(path, layer), index=0 if layer == path else record.index))
    call_order = tree.graph.get("call_order")
    if call_order is not None:
        call_order = [relative_path(path, p) for p in call_order if is_within(p, path)]
    shared = {
        relative_path(path, alias): relative_path(path, first)
        for alias, first in tree.graph.get("shared", {}).items()
        if is_within(alias, path) and is_within(first, path)
    }
    return build_tree(layers, call_order, shared)


def has_ancestor_in(path: str, ancestors: set[str]) -> bool:
    """True if a strict ancestor of ``path`` (the root ``""`` included) is in ``ancestors``."""
    while path:
        path = path.rpartition(".")[0]
        if path in ancestors:
            return True
    return False


def tensor_dtypes(tree: ModelTree) -> set[str]:
    """The dtypes of every tensor in the tree."""
    return {tensor.dtype for path in tree.nodes for tensor in tree.nodes[path]["tensors"]}


def tensor_bytes(tree: ModelTree) -> int:
    """The bytes of every tensor in the tree: the model's weights and buffers."""
    return sum(tensor.numel * itemsize(tensor.dtype) for path in tree.nodes for tensor in tree.nodes[path]["tensors"])


def has_trainable(tree: ModelTree) -> bool:
    """True if some tensor of the tree receives gradients (a parameter or an embedding table)."""
    kinds = (TensorKind.PARAMETER, TensorKind.EMBEDDING)
    return any(tensor.kind in kinds for path in tree.nodes for tensor in tree.nodes[path]["tensors"])


def descendants_of(tree: ModelTree) -> dict[str, set[str]]:
    """Every layer path -> the paths below it."""
    return {path: set(nx.descendants(tree, path)) for path in tree.nodes}
