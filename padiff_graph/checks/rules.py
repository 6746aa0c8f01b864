"""Pre-flight checks: what would go wrong, found before any weight is copied.

Each :class:`Finding` has a stable code, names the layer on both sides and
says what to do. ``order-mismatch`` and ``kind-mismatch`` describe exactly
where PaDiff's definition-order copy would pair the wrong tensors or skip
some; padiff_graph's map already handles them, so they are warnings.
Errors are what the map cannot carry out on its own.
"""

from __future__ import annotations

from padiff_graph.checks.stub import conversion_stub
from padiff_graph.core.findings import Code, Finding
from padiff_graph.core.fused import fused_links
from padiff_graph.core.records import Severity, TensorInfo, TensorKind, join_path, quoted_path
from padiff_graph.core.tree import ModelTree, children, full_tensor_names, has_ancestor_in, layer_info, preorder
from padiff_graph.knowledge.configs import read_settings, rule_for, same_setting
from padiff_graph.knowledge.families import CONTAINER, family_of, is_random, significant
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.layermap.pairs import OFFSET_STAGE, is_special
from padiff_graph.layermap.validation import check_map_paths


def _kind_class(kind: TensorKind) -> str:
    """How PaDiff's copy sees a tensor: it walks parameters only, per layer."""
    return "buffer" if kind is TensorKind.BUFFER else "embedding" if kind is TensorKind.EMBEDDING else "parameter"


def preflight_trees(base: ModelTree, raw: ModelTree, layer_map: LayerMap) -> list[Finding]:
    """All findings for two exported trees and a map (no framework needed)."""
    check_map_paths(base, raw, layer_map)
    special, claimed = _special_inits(base, raw, layer_map)
    findings: list[Finding] = []
    findings += _unmatched(base, raw, layer_map, claimed)
    findings += _pair_tensors(base, raw, layer_map)
    findings += special
    findings += _order(base, raw, layer_map)
    findings += _wrappers(base, raw, layer_map)
    findings += _random(base, raw, layer_map)
    findings += _configs(base, raw, layer_map)
    findings += _ambiguous(base, raw, layer_map)
    findings += _guessed_layouts(layer_map)
    findings += _tied(base, raw, layer_map, "base") + _tied(raw, base, layer_map, "raw")
    findings += _class_mismatches(base, raw, layer_map)
    findings += _index_offsets(layer_map)
    return findings


def _covered(layer_map: LayerMap) -> tuple[set[str], set[str]]:
    base_names, raw_names = set(), set()
    for tensor_pair in layer_map.tensor_pairs():
        base_names.add(tensor_pair.base)
        raw_names.add(tensor_pair.raw)
    return base_names, raw_names


def _unmatched(base: ModelTree, raw: ModelTree, layer_map: LayerMap, claimed: set[str]) -> list[Finding]:
    """Tensor-owning layers whose tensors nothing in the map copies.

    Layers under a pair copied by an opaque init count as copied (the init
    handles the whole sublayer, as in PaDiff); tensors a ``needs-special-init``
    finding already reports are not repeated.
    """
    covered_base, covered_raw = _covered(layer_map)
    paired_base = {pair.base for pair in layer_map.pairs}
    paired_raw = {pair.raw for pair in layer_map.pairs}
    init_base = {pair.base for pair in layer_map.pairs if pair.init}
    init_raw = {pair.raw for pair in layer_map.pairs if pair.init}
    covered_base, covered_raw = covered_base | claimed, covered_raw | claimed
    findings = []
    for side, tree, covered, paired, init_paths in (
        ("base", base, covered_base, paired_base, init_base),
        ("raw", raw, covered_raw, paired_raw, init_raw),
    ):
        for path in preorder(tree):
            if path in paired or layer_map.ignores(**{side: path}) or has_ancestor_in(path, init_paths):
                continue
            missing = [
                t for t in tree.nodes[path]["tensors"] if significant(t) and join_path(path, t.name) not in covered
            ]
            if not missing:
                continue
            info = layer_info(tree, path)
            other = "raw" if side == "base" else "base"
            shapes = ", ".join(f"{t.name} {list(t.shape)}" for t in missing)
            layer = f"{side} layer {quoted_path(path)} ({info.class_name}: {shapes})"
            message = f"{layer} has no counterpart in the {other} model"
            hint = (
                f"if it exists on the {side} side only (an auxiliary head, say), list it under "
                f"'ignore: {side}:' in the map file; otherwise add a pair for it by hand"
            )
            shared = (raw if side == "base" else base).graph.get("shared", {})
            if path in shared:
                message += f": there, {path!r} is the same layer object as {shared[path]!r} (shared weights)"
                hint = f"share the layer on the {side} side too, or give the {other} model a layer of its own there"
            findings.append(
                Finding(
                    Code.UNMATCHED,
                    Severity.ERROR,
                    path if side == "base" else None,
                    path if side == "raw" else None,
                    message,
                    hint,
                )
            )
    return findings


def _pair_tensors(base: ModelTree, raw: ModelTree, layer_map: LayerMap) -> list[Finding]:
    """Shape, kind and dtype problems of the tensor pairs, and pairs left half-mapped."""
    base_index, raw_index = full_tensor_names(base), full_tensor_names(raw)
    findings: list[Finding] = []
    for pair in layer_map.pairs:
        if layer_map.ignores(pair.base, pair.raw):
            continue
        kinds, dtypes = [], []
        for tensor in pair.tensors:
            if tensor.has_constant:
                continue
            base_tensor = base_index[join_path(pair.base, tensor.base)]
            raw_tensor = raw_index[join_path(pair.raw, tensor.raw)]
            try:
                produced = tensor.transform.output_shape(base_tensor.shape)
                expected = tensor.transform.region_shape(raw_tensor.shape)
                problem = (
                    ""
                    if produced == expected
                    else (
                        f"{tensor.describe()} turns base shape {list(base_tensor.shape)} into {list(produced)}, "
                        f"but the raw side expects {list(expected)}"
                    )
                )
            except ValueError as error:
                problem = f"{tensor.describe()} cannot apply to base shape {list(base_tensor.shape)}: {error}"
            if problem:
                findings.append(
                    Finding(
                        Code.SHAPE_MISMATCH,
                        Severity.ERROR,
                        pair.base,
                        pair.raw,
                        problem,
                        "fix the transform of this tensor in the map (transpose, permute(...), an index), "
                        "or pair another tensor",
                    )
                )
            if _kind_class(base_tensor.kind) != _kind_class(raw_tensor.kind):
                kinds.append(f"{tensor.base} ({base_tensor.kind.value}) -> {tensor.raw} ({raw_tensor.kind.value})")
            if base_tensor.dtype != raw_tensor.dtype:
                dtypes.append(f"{tensor.base} {base_tensor.dtype} -> {tensor.raw} {raw_tensor.dtype}")
        if kinds:
            findings.append(
                Finding(
                    Code.KIND_MISMATCH,
                    Severity.WARNING,
                    pair.base,
                    pair.raw,
                    "tensors held differently: " + "; ".join(kinds),
                    "an order-based copy (PaDiff) skips or misplaces these; padiff_graph's map copies them, "
                    "nothing to do unless you copy weights another way",
                )
            )
        if dtypes:
            findings.append(
                Finding(
                    Code.DTYPE_MISMATCH,
                    Severity.WARNING,
                    pair.base,
                    pair.raw,
                    "tensor dtypes differ: " + "; ".join(dtypes),
                    "values are cast on copy; compare with tolerances for the lower precision",
                )
            )
    return findings


def _special_inits(base: ModelTree, raw: ModelTree, layer_map: LayerMap) -> tuple[list[Finding], set[str]]:
    """Pairs whose tensors only a conversion can map: named when one will, a stub when none does.

    A pair's free tensors are its own and those of descendants no other pair
    holds, left uncopied by the map. Returns the findings and the full names
    of the free tensors they report (so ``unmatched`` does not repeat them).
    """
    covered_base, covered_raw = _covered(layer_map)
    paired_base = {pair.base for pair in layer_map.pairs}
    paired_raw = {pair.raw for pair in layer_map.pairs}
    findings: list[Finding] = []
    claimed: set[str] = set()
    for pair in layer_map.pairs:
        if layer_map.ignores(pair.base, pair.raw):
            continue
        base_class, raw_class = base.nodes[pair.base]["class_name"], raw.nodes[pair.raw]["class_name"]
        if pair.init or is_special(pair):
            how = f"init function {pair.init}" if pair.init else f"conversion {pair.conversion!r}"
            findings.append(
                Finding(
                    Code.NEEDS_SPECIAL_INIT,
                    Severity.INFO,
                    pair.base,
                    pair.raw,
                    f"{base_class} and {raw_class} store their weights in different layouts; {how} maps them",
                    "nothing to do" if pair.init else "nothing to do; 'tensors' in the map shows each step",
                )
            )
            continue
        free_base = _free_tensors(base, pair.base, paired_base, covered_base)
        free_raw = _free_tensors(raw, pair.raw, paired_raw, covered_raw)
        if not free_base or not free_raw:
            continue
        claimed.update(join_path(pair.base, name) for name in free_base)
        claimed.update(join_path(pair.raw, name) for name in free_raw)
        findings.append(
            Finding(
                Code.NEEDS_SPECIAL_INIT,
                Severity.ERROR,
                pair.base,
                pair.raw,
                f"{base_class} and {raw_class} hold tensors that no shape or name pairs: base "
                + ", ".join(f"{name} {list(t.shape)}" for name, t in free_base.items())
                + "; raw "
                + ", ".join(f"{name} {list(t.shape)}" for name, t in free_raw.items()),
                "register a conversion for these classes (padiff_graph.register_conversion, or PaDiff's "
                "add_special_init), or write the tensor pairs into the map. A stub to edit and import "
                "before running padiff_graph:\n"
                + conversion_stub(
                    base.graph["framework"], base_class, free_base, raw.graph["framework"], raw_class, free_raw
                ),
            )
        )
        findings += _fused_candidates(pair, free_base, free_raw)
    return findings, claimed


def _fused_candidates(
    pair: LayerPair, free_base: dict[str, TensorInfo], free_raw: dict[str, TensorInfo]
) -> list[Finding]:
    """Fused against split tensors that shapes cut into each other in several ways: only a probe can choose."""
    cuts = fused_links({n: t.shape for n, t in free_base.items()}, {n: t.shape for n, t in free_raw.items()})
    if not cuts:
        return []
    shown = "; ".join(
        ", ".join(link.describe() for link in cut[:3]) + (", ..." if len(cut) > 3 else "") for cut in cuts[:2]
    )
    return [
        Finding(
            Code.AMBIGUOUS_TRANSFORM,
            Severity.WARNING,
            pair.base,
            pair.raw,
            f"fused and split tensors: {len(cuts)} way(s) to cut one side into the other fit the shapes, e.g. {shown}",
            "pass inputs so a probe picks the cut under which both compute alike, or write the entries into the map",
        )
    ]


def unconverted_tensors(
    base: ModelTree, raw: ModelTree, layer_map: LayerMap
) -> dict[str, tuple[dict[str, TensorInfo], dict[str, TensorInfo]]]:
    """Per pair (by base path): the tensors both sides hold that nothing in the map copies.

    These are the pairs ``needs-special-init`` reports as errors (fused against split layouts).
    """
    covered_base, covered_raw = _covered(layer_map)
    paired_base = {pair.base for pair in layer_map.pairs}
    paired_raw = {pair.raw for pair in layer_map.pairs}
    found = {}
    for pair in layer_map.active_pairs():
        if pair.init or is_special(pair):
            continue
        free_base = _free_tensors(base, pair.base, paired_base, covered_base)
        free_raw = _free_tensors(raw, pair.raw, paired_raw, covered_raw)
        if free_base and free_raw:
            found[pair.base] = (free_base, free_raw)
    return found


def _free_tensors(tree: ModelTree, path: str, paired: set[str], covered: set[str]) -> dict[str, TensorInfo]:
    """Tensors of ``path`` and its unpaired descendants that the map does not copy, by relative name."""
    free: dict[str, TensorInfo] = {}
    stack = [path]
    while stack:
        current = stack.pop()
        for tensor in tree.nodes[current]["tensors"]:
            full = join_path(current, tensor.name)
            if significant(tensor) and full not in covered:
                free[full[len(path) + 1 :] if path else full] = tensor
        stack.extend(reversed([child for child in children(tree, current) if child not in paired]))
    return free


def _order(base: ModelTree, raw: ModelTree, layer_map: LayerMap) -> list[Finding]:
    """Where PaDiff's definition-order zip would pair other layers or tensors than the map.

    PaDiff zips the layers that hold parameters in definition order. A layer
    is out of order when zipping only the paired layers would still give it
    another partner; a shift caused by an extra layer on one side is left to
    the ``unmatched`` finding. An ambiguous pair is left to ``ambiguous-match``:
    the map only guessed it, so it cannot say the definition order is wrong.
    """

    def parameter_layers(tree: ModelTree) -> list[str]:
        return [
            path for path in preorder(tree) if any(t.kind is not TensorKind.BUFFER for t in tree.nodes[path]["tensors"])
        ]

    base_layers, raw_layers = parameter_layers(base), parameter_layers(raw)
    raw_set = set(raw_layers)
    paired_base = [path for path in base_layers if layer_map.raw_of(path) in raw_set]
    paired_raw_set = {layer_map.raw_of(path) for path in paired_base}
    paired_raw = [path for path in raw_layers if path in paired_raw_set]
    position = {path: index for index, path in enumerate(base_layers)}
    findings = []
    guessed = {pair.base for pair in layer_map.pairs if pair.candidates}
    for path, zipped in zip(paired_base, paired_raw, strict=True):
        partner = layer_map.raw_of(path)
        if zipped == partner or path in guessed:
            continue
        index = position[path]
        actual = raw_layers[index] if index < len(raw_layers) else None
        findings.append(
            Finding(
                Code.ORDER_MISMATCH,
                Severity.WARNING,
                path,
                partner,
                f"base {path!r} and raw {partner!r} are defined in other positions; "
                f"a definition-order copy would pair base {path!r} with raw {actual!r}",
                "padiff_graph's map pairs them by structure; for PaDiff, add both to a layer_map "
                "(padiff-graph suggest-map --format padiff)",
            )
        )
    for pair in layer_map.pairs:
        findings += _tensor_order(base, raw, pair)
    return findings


def _tensor_order(base: ModelTree, raw: ModelTree, pair: LayerPair) -> list[Finding]:
    """Parameters of one layer pair created in another order."""
    base_own = [t.name for t in base.nodes[pair.base]["tensors"] if t.kind is not TensorKind.BUFFER]
    raw_own = [t.name for t in raw.nodes[pair.raw]["tensors"] if t.kind is not TensorKind.BUFFER]
    links = [(t.base, t.raw) for t in pair.tensors if t.base in base_own and t.raw in raw_own]
    if len(links) < 2:
        return []
    links.sort(key=lambda link: base_own.index(link[0]))
    raw_positions = [raw_own.index(raw_name) for _, raw_name in links]
    if raw_positions == sorted(raw_positions):
        return []
    return [
        Finding(
            Code.ORDER_MISMATCH,
            Severity.WARNING,
            pair.base,
            pair.raw,
            f"parameters are created in another order: base {', '.join(base_own)}; raw {', '.join(raw_own)}",
            "padiff_graph pairs them by name and shape; a definition-order copy (PaDiff) would swap them",
        )
    ]


def _wrappers(base: ModelTree, raw: ModelTree, layer_map: LayerMap) -> list[Finding]:
    """Parameter-less user containers that exist on one side only.

    The insides of a builtin layer (paddle's per-layer RNN wrappers) are the
    framework's business, not a wrapper the user added.
    """
    paired_base = {pair.base for pair in layer_map.pairs}
    paired_raw = {pair.raw for pair in layer_map.pairs}
    findings = []
    for side, tree, paired in (("base", base, paired_base), ("raw", raw, paired_raw)):
        for path in preorder(tree):
            node = tree.nodes[path]
            if path in paired or layer_map.ignores(**{side: path}) or node["tensors"] or not tree.out_degree(path):
                continue
            if _inside_builtin_layer(tree, path):
                continue  # paddle's LSTM keeps its cells in sublayers: the LSTM's business, not a wrapper
            findings.append(
                Finding(
                    Code.WRAP_LAYER,
                    Severity.WARNING,
                    path if side == "base" else None,
                    path if side == "raw" else None,
                    f"{side} layer {quoted_path(path)} ({node['class_name']}) only groups other layers and has no "
                    f"counterpart in the other model",
                    "nothing to do: its layers are matched across the extra level "
                    "(PaDiff needed PADIFF_SIKP_WRAP_LAYER=1 here)",
                )
            )
    return findings


def _inside_builtin_layer(tree: ModelTree, path: str) -> bool:
    """True below a framework layer that is not a plain container (an RNN, an attention block)."""
    parent = next(iter(tree.predecessors(path)), None)
    while parent is not None:
        node = tree.nodes[parent]
        if node["builtin"] and family_of(node["class_name"], True) != CONTAINER:
            return True
        parent = next(iter(tree.predecessors(parent)), None)
    return False


def _random(base: ModelTree, raw: ModelTree, layer_map: LayerMap) -> list[Finding]:
    findings = []
    for side, tree in (("base", base), ("raw", raw)):
        for path in preorder(tree):
            info = layer_info(tree, path)
            if not is_random(info):
                continue
            partner = layer_map.raw_of(path) if side == "base" else layer_map.base_of(path)
            findings.append(
                Finding(
                    Code.RANDOM_OP,
                    Severity.ERROR,
                    path if side == "base" else partner,
                    path if side == "raw" else partner,
                    f"{side} layer {quoted_path(path)} ({info.class_name}, p={info.config.get('p')}) "
                    "is random in training mode",
                    "put the models in eval mode, or let diff disable random layers for the run "
                    "(--disable-random / random_ops='disable')",
                )
            )
    return findings


def _configs(base: ModelTree, raw: ModelTree, layer_map: LayerMap) -> list[Finding]:
    """Matched layers of one family configured differently, with both values."""
    findings = []
    for pair in layer_map.pairs:
        base_info, raw_info = layer_info(base, pair.base), layer_info(raw, pair.raw)
        family = family_of(base_info.class_name, base_info.builtin)
        if family != family_of(raw_info.class_name, raw_info.builtin):
            continue
        base_settings = read_settings(family, base_info.framework, base_info.class_name, base_info.config)
        raw_settings = read_settings(family, raw_info.framework, raw_info.class_name, raw_info.config)
        for setting, base_value in base_settings.items():
            raw_value = raw_settings.get(setting)
            if raw_value is None or same_setting(base_value, raw_value):
                continue
            rule = rule_for(family, setting)
            severity = rule.severity if rule is not None else Severity.ERROR
            advice = f"; {rule.advice}" if rule is not None and rule.advice else ""
            convention = " (in torch's convention: paddle's momentum is 1 - torch's)" if setting == "momentum" else ""
            findings.append(
                Finding(
                    Code.CONFIG_MISMATCH,
                    severity,
                    pair.base,
                    pair.raw,
                    f"{base_info.class_name} {setting} differs: base {_shown(base_value)}, raw {_shown(raw_value)}"
                    + convention,
                    f"construct the raw layer with the base's {setting}{advice}",
                )
            )
    return findings


def _shown(value: object) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _ambiguous(base: ModelTree, raw: ModelTree, layer_map: LayerMap) -> list[Finding]:
    """Pairs another raw layer fits almost as well; of parameter-less layers, only information (nothing is copied)."""
    findings = []
    for pair in layer_map.pairs:
        if not pair.candidates:
            continue
        message = f"base {pair.base!r} fits raw {pair.raw!r} and {', '.join(map(repr, pair.candidates))} almost equally"
        severity = Severity.WARNING
        if not _holds_tensors(base, pair.base) and not _holds_tensors(raw, pair.raw):
            severity = Severity.INFO
            message += (
                ": only definition position pairs these parameter-less layers; nothing is copied through them, "
                "and the diff does not compare them"
            )
        hint = (
            "pass inputs so call order can decide, or settle it in the map file: keep the right raw path "
            "and delete the 'candidates' line"
        )
        findings.append(Finding(Code.AMBIGUOUS_MATCH, severity, pair.base, pair.raw, message, hint))
    return findings


def _holds_tensors(tree: ModelTree, path: str) -> bool:
    return any(tree.nodes[layer]["tensors"] for layer in preorder(tree, path))


def _guessed_layouts(layer_map: LayerMap) -> list[Finding]:
    """Tensors whose transform only their shapes chose, where another fits as well; probes cut by their limit."""
    findings = []
    for pair in layer_map.active_pairs():
        links = [tensor for tensor in pair.tensors if tensor.base in pair.guessed_layouts]
        for tensor in links:
            findings.append(
                Finding(
                    Code.AMBIGUOUS_TRANSFORM,
                    Severity.WARNING,
                    pair.base,
                    pair.raw,
                    f"{tensor.describe()} is a guess: the square tensor fits its partner as it is and transposed, "
                    "and no conversion knows these classes" + _cut_note(pair),
                    ("" if pair.probe_cut else "pass inputs so a probe decides, ")
                    + "register a conversion for the two classes, "
                    "or check the transform in the map file and delete the 'guessed_layouts' line",
                )
            )
        if pair.probe_cut and not links:
            findings.append(
                Finding(
                    Code.AMBIGUOUS_TRANSFORM,
                    Severity.WARNING,
                    pair.base,
                    pair.raw,
                    f"the tensors nothing pairs here could be cut {pair.probe_cut} ways{_cut_note(pair)}",
                    "register a conversion for the two classes, or write the tensor entries into the map",
                )
            )
    return findings


def _cut_note(pair: LayerPair) -> str:
    if not pair.probe_cut:
        return ""
    return (
        f"; the probe stopped at its limit: it would have had to try {pair.probe_cut} combinations of layouts, "
        "so it tried none and picked nothing"
    )


def _tied(tied: ModelTree, other: ModelTree, layer_map: LayerMap, side: str) -> list[Finding]:
    """Tensors one layer holds under another layer's name too (an output head tied to the embedding).

    Where the other side's partner of the tied layer holds its own tensor, a
    raw head is written from the base's shared tensor; a base head cannot be,
    since the raw model holds one tensor for two base tensors (an error).
    """
    findings = []
    partner_of = layer_map.raw_of if side == "base" else layer_map.base_of
    for alias, name in tied.graph.get("tied", {}).items():
        layer = alias.rpartition(".")[0]
        partner = partner_of(layer)
        message = f"{side} {alias!r} is the same tensor as {name!r} (tied weights)"
        severity = Severity.WARNING
        if partner is None or not other.nodes[partner]["tensors"]:
            message += f": it is copied once, as {name!r}"
            hint = (
                "nothing to do if the other model ties them too or reuses that tensor (a matmul with the "
                "embedding); if it holds its own copy, tie it, or its layer is reported unmatched"
            )
        elif side == "base":
            message += (
                f"; raw {partner!r} holds its own: it is written from base {name!r}, and the base tensor's gradient "
                "is compared with the sum of the raw copies'; training with an optimizer makes the untied copies "
                f"drift apart (after a step they differ at {partner!r})"
            )
            hint = (
                "nothing for one step; to train both side by side, tie the raw head to its embedding as the base does"
            )
        else:
            severity = Severity.ERROR
            own = ", ".join(repr(join_path(partner, t.name)) for t in other.nodes[partner]["tensors"])
            message += (
                f", but base {partner!r} holds its own: one raw tensor cannot take both, so base {own} "
                "is not copied and the two heads are compared as they are"
            )
            hint = "tie the base head to its embedding as the raw model does, or untie the raw one"
        base_path, raw_path = (layer, partner) if side == "base" else (partner, layer)
        findings.append(Finding(Code.TIED_WEIGHTS, severity, base_path, raw_path, message, hint))
    return findings


def _class_mismatches(base: ModelTree, raw: ModelTree, layer_map: LayerMap) -> list[Finding]:
    """Paired parameter-less builtin leaves of different families: the port computes something else there."""
    findings = []
    for pair in layer_map.pairs:
        base_info, raw_info = layer_info(base, pair.base), layer_info(raw, pair.raw)
        base_family = family_of(base_info.class_name, base_info.builtin)
        raw_family = family_of(raw_info.class_name, raw_info.builtin)
        if CONTAINER in (base_family, raw_family) or base_family == raw_family or base_info.tensors or raw_info.tensors:
            continue
        if children(base, pair.base) or children(raw, pair.raw):
            continue
        findings.append(
            Finding(
                Code.CLASS_MISMATCH,
                Severity.ERROR,
                pair.base,
                pair.raw,
                f"base {pair.base!r} is a {base_info.class_name}, raw {pair.raw!r} a {raw_info.class_name}, "
                "at the same place in call order: they compute different things",
                f"use a {base_info.class_name} in the raw model where the base has one",
            )
        )
    return findings


def _index_offsets(layer_map: LayerMap) -> list[Finding]:
    """Numbered blocks the matcher aligned by their order, because an index offset explains the names."""
    shifted: dict[tuple[str, str, int], list[LayerPair]] = {}
    for pair in layer_map.pairs:
        base_parent, _, base_index = pair.base.rpartition(".")
        raw_parent, _, raw_index = pair.raw.rpartition(".")
        if pair.stage == OFFSET_STAGE and base_index.isdigit() and raw_index.isdigit() and base_index != raw_index:
            shifted.setdefault((base_parent, raw_parent, int(base_index) - int(raw_index)), []).append(pair)
    findings = []
    for (base_parent, raw_parent, offset), pairs in shifted.items():
        pairs.sort(key=lambda pair: int(pair.base.rpartition(".")[2]))
        shown = ", ".join(f"{pair.base!r} with {pair.raw!r}" for pair in pairs)
        direction = "lower" if offset > 0 else "higher"
        findings.append(
            Finding(
                Code.INDEX_OFFSET,
                Severity.INFO,
                base_parent,
                raw_parent,
                f"raw {raw_parent!r} numbers its blocks {abs(offset)} {direction} than base {base_parent!r}: "
                f"same-shaped blocks that equal digits would pair with a neighbour are aligned by order ({shown})",
                "nothing if the blocks are numbered from another start on one side (a separate stem); "
                "otherwise pin the pairs or write them into the map",
            )
        )
    return findings
