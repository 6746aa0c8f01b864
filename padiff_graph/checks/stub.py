"""A ready-to-edit conversion stub for two layer classes no registered conversion pairs."""

from __future__ import annotations

import re
from collections.abc import Mapping

from padiff_graph.core.records import TensorInfo


def conversion_stub(
    base_framework: str,
    base_class: str,
    base_tensors: Mapping[str, TensorInfo],
    raw_framework: str,
    raw_class: str,
    raw_tensors: Mapping[str, TensorInfo],
) -> str:
    """A ready-to-edit conversion for two layer classes, its tensor pairs guessed from shapes.

    Names are relative to each layer (``q.weight`` reaches into a child).
    Each raw tensor gets the first base tensor (or the next rows of one,
    for fused layouts) whose shape fits; across frameworks a 2-D tensor
    that fits both ways is guessed transposed (torch ``[out, in]`` against
    paddle ``[in, out]``). Lines with no guess are left for the user.
    """
    covers = any("." in name for name in [*base_tensors, *raw_tensors])
    function = re.sub(r"\W", "_", f"{base_class}_to_{raw_class}".lower())
    flags = ", covers_subtree=True" if covers else ""
    lines = [
        "from padiff_graph import TensorPair, register_conversion",
        "",
        "",
        f'@register_conversion("{base_framework}", "{base_class}", "{raw_framework}", "{raw_class}"{flags})',
        f"def {function}(base, raw):",
        f'    """{base_class} -> {raw_class}, guessed from shapes: check every line.',
        "",
        "    base: " + ", ".join(f"{name} {list(t.shape)}" for name, t in base_tensors.items()),
        "    raw:  " + ", ".join(f"{name} {list(t.shape)}" for name, t in raw_tensors.items()),
        '    """',
        "    return [",
    ]
    prefer_transpose = base_framework != raw_framework
    next_row = dict.fromkeys(base_tensors, 0)
    for raw_name, raw_tensor in raw_tensors.items():
        guess = None
        for base_name, base_tensor in base_tensors.items():
            guess = _guess_link(base_name, base_tensor.shape, next_row, raw_tensor.shape, prefer_transpose)
            if guess is not None:
                break
        if guess is None:
            shape = list(raw_tensor.shape)
            lines.append(f'        # TensorPair.parse("BASE_TENSOR -> {raw_name}"),  # {shape}: no guess')
        else:
            source, transposed = guess
            lines.append(f'        TensorPair.parse("{source} -> {raw_name}{": transpose" if transposed else ""}"),')
    lines.append("    ]")
    return "\n".join(lines)


def _guess_link(
    name: str, shape: tuple[int, ...], next_row: dict[str, int], raw_shape: tuple[int, ...], prefer_transpose: bool
) -> tuple[str, bool] | None:
    """(``name`` or ``name[a:b]``, transposed) when its next rows can fill ``raw_shape``."""
    rows = shape[0] if shape else 1
    start = next_row[name]
    if start >= rows:
        return None
    orders = [True, False] if prefer_transpose else [False, True]
    for transposed in orders if len(shape) == 2 and len(raw_shape) == 2 else [False]:
        wanted = raw_shape[::-1] if transposed else raw_shape
        if start == 0 and shape == wanted:
            next_row[name] = rows
            return name, transposed
        if shape[1:] == wanted[1:] and wanted and start + wanted[0] <= rows and wanted[0] < rows:
            next_row[name] = start + wanted[0]
            return f"{name}[{start}:{start + wanted[0]}]", transposed
    return None
