"""PaDiff code for a layer map: ``set_layer_map`` calls and the ``add_special_init`` registrations they need.

PaDiff copies a layer-map entry's own parameters in definition order and
hands the whole sublayer to a special init registered for its two classes.
Every pair whose conversion PaDiff's order-based copy cannot do (fused or
split tensors, renamed statistics, neutral constants, reordered gates)
gets a generated init function: plain numpy that replays the map's tensor
pairs, registered with PaDiff's ``add_special_init``. Pairs copied by a
user's opaque init are registered with that function.

``padiff-graph suggest-map --format padiff`` prints it.
"""

from __future__ import annotations

import re

from padiff_graph.core.transforms import TensorPair
from padiff_graph.core.tree import ModelTree
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.layermap.pairs import is_special

_RUNTIME = '''
def _pg_tensors(layer):
    found = dict(layer.named_parameters())
    found.update(layer.named_buffers())
    return found


def _pg_write(tensor, value):
    if hasattr(tensor, "set_value"):  # paddle
        tensor.set_value(paddle.to_tensor(value).astype(tensor.dtype))
    else:  # torch
        with torch.no_grad():
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(tensor.dtype))


def _pg_apply(value, steps):
    for op, args in steps:
        if op == "transpose":
            value = value.T
        elif op == "permute":
            value = np.transpose(value, args)
        elif op == "reshape":
            value = value.reshape(args)
        elif op == "blocks":
            parts = np.split(value, len(args))
            value = np.concatenate([parts[i] for i in args])
    return value


def _pg_copy(base, raw, links):
    """Replay padiff-graph tensor pairs: (base, base region, raw, raw region, ops, constant)."""
    source, target, pending = _pg_tensors(base), _pg_tensors(raw), {}
    for base_name, base_index, raw_name, raw_index, steps, value in links:
        if raw_name is None:  # the raw layer has no such tensor: the base one must hold the neutral value
            held = source[base_name].detach().cpu().numpy()[base_index]
            assert np.all(held == value), f"{base_name} must be {value}: the raw layer cannot hold it"
            continue
        current = pending.setdefault(raw_name, target[raw_name].detach().cpu().numpy().copy())
        if base_name is None:
            current[raw_index] = value
        else:
            current[raw_index] = _pg_apply(source[base_name].detach().cpu().numpy()[base_index], steps)
    for raw_name, value in pending.items():
        _pg_write(target[raw_name], value)
'''


def padiff_code(layer_map: LayerMap, base: ModelTree, raw: ModelTree) -> str:
    """The ``set_layer_map`` snippet, preceded by the special inits its pairs need."""
    inits = _special_inits(layer_map, base, raw)
    return inits + set_layer_map_snippet(layer_map)


def _special_inits(layer_map: LayerMap, base: ModelTree, raw: ModelTree) -> str:
    chosen: dict[tuple[str, str], LayerPair] = {}
    for pair in layer_map.pairs:
        if pair.init or is_special(pair):
            classes = (base.nodes[pair.base]["class_name"], raw.nodes[pair.raw]["class_name"])
            chosen.setdefault(classes, pair)
    if not chosen:
        return ""
    frameworks = {base.graph["framework"], raw.graph["framework"]}
    lines = [
        "# special inits (padiff-graph suggest-map --format padiff): the pairs PaDiff's",
        "# definition-order copy cannot convert, replayed from padiff-graph's layer map",
        "import numpy as np",
        *[f"import {name}" for name in sorted(frameworks)],
        "from padiff import add_special_init",
    ]
    if any(not pair.init for pair in chosen.values()):
        lines += ["", "", _RUNTIME.strip()]
    for (base_class, raw_class), pair in chosen.items():
        registered = f'"{base.graph["framework"]}", "{base_class}", "{raw.graph["framework"]}", "{raw_class}"'
        if pair.init:
            module, _, function = pair.init.partition(":")
            lines += ["", f"from {module} import {function}", f"add_special_init({registered}, {function})"]
            continue
        name = re.sub(r"\W", "_", f"init_{base_class}_to_{raw_class}".lower())
        summary = f'    """{pair.conversion or "tensor pairs"}, as padiff-graph maps it."""'
        lines += ["", "", f"def {name}(base, raw):", summary]
        lines.append("    _pg_copy(base, raw, [")
        lines += [f"        {_link(tensor)}," for tensor in pair.tensors]
        lines += ["    ])", "", "", f"add_special_init({registered}, {name})"]
    return "\n".join(lines) + "\n\n\n"


def _link(tensor: TensorPair) -> str:
    """One tensor pair as the tuple ``_pg_copy`` replays."""
    transform = tensor.transform
    base_name = None if tensor.base_constant is not None else tensor.base
    raw_name = None if tensor.raw_constant is not None else tensor.raw
    value = tensor.base_constant if tensor.base_constant is not None else tensor.raw_constant
    return (
        f"({base_name!r}, {_index(transform.base_index)}, {raw_name!r}, {_index(transform.raw_index)}, "
        f"{list(transform.steps)!r}, {value!r})"
    )


def _index(index: tuple[slice, ...] | None) -> str:
    if index is None:
        return "..."
    parts = [f"{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}" for s in index]
    return f"np.s_[{', '.join(parts)}]"


def set_layer_map_snippet(layer_map: LayerMap) -> str:
    """PaDiff code that sets the same correspondence with ``set_layer_map``.

    Lists the pairs holding tensors, in base definition order, as
    attribute paths on PaDiff's proxy models.
    """
    pairs = [pair for pair in layer_map.pairs if pair.tensors and pair.base and pair.raw]
    base_layers = ",\n    ".join(_attribute_path("base_model.model", pair.base) for pair in pairs)
    raw_layers = ",\n    ".join(_attribute_path("raw_model.model", pair.raw) for pair in pairs)
    return (
        f"# generated by padiff-graph suggest-map --format padiff ({len(pairs)} pairs)\n"
        "# base_model / raw_model are PaDiff's create_model(...) proxies\n"
        f"base_model.set_layer_map([\n    {base_layers},\n])\n"
        f"raw_model.set_layer_map([\n    {raw_layers},\n])\n"
    )


def _attribute_path(root: str, path: str) -> str:
    """``layer1.0.conv`` -> ``root.layer1[0].conv``."""
    parts = [root]
    for part in path.split("."):
        parts.append(f"[{part}]" if part.isdigit() else f".{part}")
    return "".join(parts)
