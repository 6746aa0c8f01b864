"""Fused against split layouts, from shapes: the ways one tensor can be cut into several.

A fused ``qkv_proj.weight`` ``[d, 3d]`` against ``q_proj``/``k_proj``/``v_proj``
``[d, d]``, a fused ``gate_up_fused_proj`` against ``gate_proj``/``up_proj``:
each fused tensor is cut along one axis, possibly transposed, into
consecutive slices that fill the other side's tensors in their definition
order. Shapes usually leave several ways (a square part fits as it is and
transposed); :mod:`padiff_graph.assign.probe` runs the layers to pick one.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import product

from padiff_graph.core.transforms import Shape, TensorPair, Transform

#: Most ways of cutting tried for one pair of layers.
MAX_CUTS = 64


def fused_links(base: Mapping[str, Shape], raw: Mapping[str, Shape]) -> list[list[TensorPair]]:
    """Complete ways to pair the tensors: base tensors cut into the raw ones, or raw ones cut into base ones."""
    found = _cuts(base, raw)
    found += [[link.inverse(raw[link.base]) for link in links] for links in _cuts(raw, base)]
    return found[:MAX_CUTS]


def _cuts(fused: Mapping[str, Shape], parts: Mapping[str, Shape]) -> list[list[TensorPair]]:
    """Each fused tensor cut along one axis into consecutive sibling parts, every part filled exactly once.

    Of the sibling groups that could fill a fused tensor, only those whose
    layer's path shares the most leading parts with the fused tensor's are
    tried (``layers.0.attn`` fills ``layers.0.attn.qkv_proj``, not ``layers.1.attn``'s).
    """
    options = []
    for name, shape in fused.items():
        ways = [
            links
            for axis in range(min(len(shape), 2))
            for transposed in ((False, True) if len(shape) == 2 else (False,))
            for links in _runs(name, shape, axis, transposed, parts)
        ]
        if ways:
            owner = _layer(_layer(name))
            best = max(_shared_parts(owner, _layer(_layer(way[0].raw))) for way in ways)
            ways = [way for way in ways if _shared_parts(owner, _layer(_layer(way[0].raw))) == best]
        options.append(ways or [[]])
    result = []
    for choice in product(*options):
        links = [link for way in choice for link in way]
        if sorted(link.raw for link in links) == sorted(parts):
            result.append(links)
        if len(result) >= MAX_CUTS:
            break
    return result


def _shared_parts(left: str, right: str) -> int:
    """How many leading dotted parts two paths share."""
    count = 0
    for a, b in zip(left.split("."), right.split("."), strict=False):
        if a != b:
            break
        count += 1
    return count


def _layer(name: str) -> str:
    return name.rpartition(".")[0]


def _runs(name: str, shape: Shape, axis: int, transposed: bool, parts: Mapping[str, Shape]) -> list[list[TensorPair]]:
    """Runs of sibling layers' tensors, consecutive in definition order, that fill ``name`` along ``axis``."""
    fitting = []
    for part, part_shape in parts.items():
        wanted = part_shape[::-1] if transposed else part_shape
        if len(wanted) == len(shape) and all(wanted[i] == shape[i] for i in range(len(shape)) if i != axis):
            fitting.append((part, wanted[axis]))
    runs = []
    for first in range(len(fitting)):
        links, start = [], 0
        parent = _layer(_layer(fitting[first][0]))
        for part, size in fitting[first:]:
            if _layer(_layer(part)) != parent:
                continue
            if start + size > shape[axis]:
                break
            index = tuple(slice(start, start + size) if i == axis else slice(None) for i in range(len(shape)))
            links.append(
                TensorPair(name, part, Transform(op="transpose" if transposed else "identity", base_index=index))
            )
            start += size
            if start == shape[axis]:
                break
        if start == shape[axis] and len(links) > 1:
            runs.append(links)
    return runs
