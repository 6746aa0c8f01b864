"""What the reports draw, independent of how: each layer's state, collapsed runs, aligned rows.

Three steps, shared by the terminal and the HTML report:

1. :func:`layer_states` says, for every layer of one side, whether the map
   pairs it and, if not, why: a one-sided layer (``unmatched``), a container
   that only groups others (``wrapper``), a layer the map ignores, or one
   whose tensors a pair of an ancestor already copies (through a registered
   conversion, or absorbed into the parent's tensor pairs: an
   ``nn.Parameter`` against an ``Embedding``).
2. :func:`visible_entries` lists a tree in definition order, collapsing runs
   of consecutive numbered siblings that would print identically (same
   classes, shapes, states and relative partners) into one entry such as
   ``layers.0-31 (×32)``, so a model with thousands of layers stays readable.
3. :func:`align` puts two such lists side by side, one row per matched
   pair where both trees' orders allow (the longest run of pairs in the
   same order on both sides); the remaining layers get rows of their own.
   :func:`pair_lines` is the narrow alternative: one line per base layer
   with its partner, in the base's order, each raw-only layer under the
   partner of its nearest paired ancestor; it reads the same whatever
   order the raw model defines its layers in.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from padiff_graph.core.findings import Code, Finding
from padiff_graph.core.records import Severity, join_path
from padiff_graph.core.tree import ROOT, ModelTree, children, is_within, preorder, relative_path
from padiff_graph.knowledge.families import significant
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.run.fused_pairs import group_members
from padiff_graph.run.results import Comparison


class Status(str, Enum):
    """A layer's place in the map."""

    MATCHED = "matched"
    UNMATCHED = "unmatched"
    WRAPPER = "wrapper"
    IGNORED = "ignored"
    CONVERTED = "converted"
    ABSORBED = "absorbed"


@dataclass(frozen=True)
class LayerState:
    """``partner``: the other side's layer (the paired one, or the one whose pair copies this layer)."""

    status: Status
    partner: str | None = None
    why: str = ""


@dataclass(frozen=True)
class Entry:
    """One visible row of a tree: a layer, or a run of identical numbered siblings shown once.

    Attributes:
        path: the layer shown (the run's first member).
        run: the siblings this row collapses (``layers.0`` ... ``layers.31``).
        stands_for: every layer the row represents, including the same layer
            inside each collapsed block above it (for error figures and links).
    """

    path: str
    depth: int
    run: tuple[str, ...]
    stands_for: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.run)

    def name(self, model: str) -> str:
        """``fc``, ``0-31`` for a run, the model's class for the root."""
        first = self.path.rpartition(".")[2] if self.path else model
        if self.count == 1:
            return first
        return f"{first}-{self.run[-1].rpartition('.')[2]}"


@dataclass(frozen=True)
class Row:
    """One line of the side-by-side view; ``paired`` when the two entries are a matched pair."""

    base: Entry | None
    raw: Entry | None
    paired: bool


def layer_states(tree: ModelTree, side: str, layer_map: LayerMap) -> dict[str, LayerState]:
    """Every layer of one side (``"base"`` or ``"raw"``) with its state in the map."""
    other = "raw" if side == "base" else "base"
    own_path: Callable[[LayerPair], str] = (lambda p: p.base) if side == "base" else (lambda p: p.raw)
    other_path: Callable[[LayerPair], str] = (lambda p: p.raw) if side == "base" else (lambda p: p.base)
    paired = {own_path(pair): pair for pair in layer_map.pairs if own_path(pair) in tree}
    covering, tensor_partners = _covering_pairs(tree, side, layer_map, paired)
    states: dict[str, LayerState] = {}
    for path in preorder(tree):
        node = tree.nodes[path]
        own = [t for t in node["tensors"] if significant(t)]
        pair = paired.get(path)
        if pair is not None and layer_map.ignores(pair.base, pair.raw):  # as the copy and the diff see it
            states[path] = LayerState(Status.IGNORED, other_path(pair), "ignored by the map (itself or its partner)")
        elif pair is not None:
            states[path] = LayerState(Status.MATCHED, other_path(pair))
        elif layer_map.ignores(**{side: path}):
            states[path] = LayerState(Status.IGNORED, why="ignored by the map")
        elif path in covering:
            pair = covering[path]
            where = f"{pair.base or '<root>'!r} -> {pair.raw or '<root>'!r}"
            if pair.conversion:
                states[path] = LayerState(
                    Status.CONVERTED, other_path(pair), f"in conversion {pair.conversion} of {where}"
                )
            else:
                partner = tensor_partners.get(path, other_path(pair))
                states[path] = LayerState(Status.ABSORBED, partner, f"its tensors pair in {where}")
        elif not own and tree.out_degree(path):
            states[path] = LayerState(Status.WRAPPER, why="only groups other layers")
        else:
            holds = "" if own else ", holds no tensors"
            states[path] = LayerState(Status.UNMATCHED, why=f"no counterpart in the {other} model{holds}")
    return states


def _covering_pairs(
    tree: ModelTree, side: str, layer_map: LayerMap, paired: Mapping[str, LayerPair]
) -> tuple[dict[str, LayerPair], dict[str, str]]:
    """Unpaired layers whose tensors a pair of an ancestor copies, with that pair; and each such
    layer holding tensors -> the other side's layer holding the tensors they pair with.

    A parameter-less layer inside such a layer (a conversion covering a whole
    attention block, say) counts as covered by the same pair.
    """
    owner = {join_path(path, t.name): path for path in tree.nodes for t in tree.nodes[path]["tensors"]}
    covering: dict[str, LayerPair] = {}
    partners: dict[str, str] = {}
    for pair in layer_map.pairs:
        layer, other = (pair.base, pair.raw) if side == "base" else (pair.raw, pair.base)
        for tensor in pair.tensors:
            own_name, other_name = (tensor.base, tensor.raw) if side == "base" else (tensor.raw, tensor.base)
            holder = owner.get(join_path(layer, own_name))
            if holder is not None and holder != layer and holder not in paired:
                covering.setdefault(holder, pair)
                if not tensor.has_constant:  # a fused layer's part -> the fused layer
                    partners.setdefault(holder, join_path(other, other_name).rpartition(".")[0])
                parent = holder.rpartition(".")[0]
                while parent != layer and is_within(parent, layer) and parent not in paired and parent != ROOT:
                    covering.setdefault(parent, pair)
                    parent = parent.rpartition(".")[0]
    return covering, partners


def anchors(tree: ModelTree, states: Mapping[str, LayerState]) -> dict[str, str | None]:
    """Per layer, the deepest path on the other side that holds every partner of its subtree.

    Two numbered blocks print alike when their partners sit alike under their
    anchors, whether or not the block itself is paired (a wrapper is not).
    """
    anchor: dict[str, str | None] = {}
    for path in reversed(list(preorder(tree))):
        state = states.get(path)
        found = [state.partner] if state is not None and state.partner is not None else []
        found += [a for a in (anchor[child] for child in tree.successors(path)) if a is not None]
        anchor[path] = _common_prefix(found) if found else None
    return anchor


def _common_prefix(paths: list[str]) -> str:
    split = [path.split(".") if path else [] for path in paths]
    common = split[0]
    for parts in split[1:]:
        size = 0
        while size < min(len(common), len(parts)) and common[size] == parts[size]:
            size += 1
        common = common[:size]
    return ".".join(common)


def collapsible_runs(
    tree: ModelTree,
    states: Mapping[str, LayerState] | None = None,
    tags: Mapping[str, str] | None = None,
    keep: Iterable[str] = (),
) -> dict[str, list[tuple[str, ...]]]:
    """Per layer, its children grouped into runs that would print the same.

    A run is consecutive numbered siblings (``0``, ``1``, ``2``...) whose
    subtrees show the same classes, shapes, states, ``tags`` and partners
    (relative to their anchors). Layers in ``keep`` and their ancestors stay
    alone, so a marked layer always has a row of its own.
    """
    states = states or {}
    tags = tags or {}
    kept = set()
    for path in keep:
        while path not in kept:
            kept.add(path)
            path = path.rpartition(".")[0]
    anchor = anchors(tree, states)
    signature_of: dict[str, tuple[object, ...]] = {}

    def signature(top: str) -> tuple[object, ...]:
        if top not in signature_of:
            signature_of[top] = _signature(tree, top, states, tags, anchor[top])
        return signature_of[top]

    runs: dict[str, list[tuple[str, ...]]] = {}
    for parent in tree.nodes:
        groups: list[list[str]] = []
        for path in children(tree, parent):
            last = groups[-1][-1] if groups else None
            index, last_index = path.rpartition(".")[2], (last or "").rpartition(".")[2]
            if (
                last is not None
                and index.isdigit()
                and last_index.isdigit()
                and int(index) == int(last_index) + 1
                and path not in kept
                and groups[-1][0] not in kept
                and signature(path) == signature(groups[-1][0])
            ):
                groups[-1].append(path)
            else:
                groups.append([path])
        runs[parent] = [tuple(group) for group in groups]
    return runs


def _signature(
    tree: ModelTree, top: str, states: Mapping[str, LayerState], tags: Mapping[str, str], anchor: str | None
) -> tuple[object, ...]:
    """What a subtree's rows show, with its paths relative to ``top`` and partners to ``anchor``."""
    rows = []
    for path in preorder(tree, top):
        node = tree.nodes[path]
        state = states.get(path)
        partner = state.partner if state is not None else None
        if partner is not None and anchor is not None and is_within(partner, anchor):
            partner = "~" + relative_path(anchor, partner)
        tensors = tuple((t.name, t.shape, t.dtype) for t in node["tensors"])
        status = state.status if state is not None else None
        rows.append((relative_path(top, path), node["class_name"], tensors, status, partner, tags.get(path)))
    return tuple(rows)


def visible_entries(
    tree: ModelTree,
    runs: Mapping[str, list[tuple[str, ...]]] | None = None,
    allow: Callable[[tuple[str, ...]], bool] | None = None,
    max_depth: int | None = None,
) -> list[Entry]:
    """The tree in definition order, each run of :func:`collapsible_runs` shown once.

    ``allow`` may veto a run (it is then shown layer by layer); ``max_depth``
    stops below that depth.
    """
    runs = runs if runs is not None else collapsible_runs(tree)
    entries: list[Entry] = []
    stack: list[Entry] = [Entry(ROOT, 0, (ROOT,), (ROOT,))]
    while stack:
        entry = stack.pop()
        entries.append(entry)
        if max_depth is not None and entry.depth >= max_depth:
            continue
        below = []
        for run in runs[entry.path]:
            shown = [run] if len(run) == 1 or allow is None or allow(run) else [(path,) for path in run]
            for group in shown:
                copies = tuple(
                    join_path(copy, relative_path(entry.path, member)) for copy in entry.stands_for for member in group
                )
                below.append(Entry(group[0], entry.depth + 1, group, copies))
        stack.extend(reversed(below))
    return entries


@dataclass(frozen=True)
class TwoTrees:
    """Both sides laid out for a report: states, visible entries and aligned rows."""

    base_states: dict[str, LayerState]
    raw_states: dict[str, LayerState]
    base_entries: list[Entry]
    raw_entries: list[Entry]
    rows: list[Row]


def two_trees(
    base_tree: ModelTree,
    raw_tree: ModelTree,
    layer_map: LayerMap,
    tags: Mapping[tuple[str, str], str] | None = None,
    keep: Iterable[tuple[str, str]] = (),
) -> TwoTrees:
    """Lay both trees out; a run collapses only where its partners form a run on the other side too.

    Args:
        tags: ``(side, path) -> text`` shown with a layer (finding codes);
            equal tags do not stop a run from collapsing.
        keep: ``(side, path)`` layers that must have rows of their own.
    """
    tags = tags or {}
    keep = list(keep)
    states = {"base": layer_states(base_tree, "base", layer_map), "raw": layer_states(raw_tree, "raw", layer_map)}
    trees = {"base": base_tree, "raw": raw_tree}
    runs = {
        side: collapsible_runs(
            trees[side],
            states[side],
            {path: text for (s, path), text in tags.items() if s == side},
            [path for s, path in keep if s == side],
        )
        for side in trees
    }
    anchor = {side: anchors(trees[side], states[side]) for side in trees}

    def allow(side: str) -> Callable[[tuple[str, ...]], bool]:
        other = "raw" if side == "base" else "base"
        by_first = {run[0]: run for groups in runs[other].values() for run in groups if len(run) > 1}

        def mirrored(run: tuple[str, ...]) -> bool:
            targets = [anchor[side][member] for member in run]
            if all(target is None for target in targets):
                return True
            if any(target is None for target in targets):
                return False
            path: str | None = targets[0]
            while path is not None:
                match = by_first.get(path)
                if match is not None and len(match) == len(run):
                    return all(is_within(t, m) for t, m in zip(targets, match, strict=True))  # type: ignore[arg-type]
                path = path.rpartition(".")[0] if path else None
            return False

        return mirrored

    base_entries = visible_entries(base_tree, runs["base"], allow("base"))
    raw_entries = visible_entries(raw_tree, runs["raw"], allow("raw"))
    matched = {
        path: s.partner for path, s in states["base"].items() if s.status is Status.MATCHED and s.partner is not None
    }
    rows = align(base_entries, raw_entries, matched)
    return TwoTrees(states["base"], states["raw"], base_entries, raw_entries, rows)


def align(base: list[Entry], raw: list[Entry], partner: Mapping[str, str]) -> list[Row]:
    """Rows for two entry lists: matched pairs side by side where both orders agree.

    ``partner`` maps base paths to raw paths. The pairs kept side by side are
    a longest run whose raw positions increase with the base positions; the
    other entries (one-sided layers, and pairs defined in another order) get
    rows of their own, base first.
    """
    raw_position = {entry.path: index for index, entry in enumerate(raw)}
    candidates = [
        (index, raw_position[partner[entry.path]])
        for index, entry in enumerate(base)
        if entry.path in partner and partner[entry.path] in raw_position
    ]
    anchors = _longest_increasing(candidates)
    rows: list[Row] = []
    next_base = next_raw = 0
    for base_index, raw_index in [*anchors, (len(base), len(raw))]:
        rows.extend(Row(entry, None, False) for entry in base[next_base:base_index])
        rows.extend(Row(None, entry, False) for entry in raw[next_raw:raw_index])
        if base_index < len(base):
            rows.append(Row(base[base_index], raw[raw_index], True))
        next_base, next_raw = base_index + 1, raw_index + 1
    return rows


@dataclass(frozen=True)
class PairLine:
    """One line of the narrow view: a base entry with its partner, or a one-sided entry; ``depth`` indents it."""

    base: Entry | None
    raw: Entry | None
    depth: int


def pair_lines(layout: TwoTrees) -> list[PairLine]:
    """Both trees as one list in the base's order (see the module docstring)."""
    raw_entry = {entry.path: entry for entry in layout.raw_entries}
    partner_of: dict[str, Entry] = {}  # raw path -> its base entry
    for entry in layout.base_entries:
        state = layout.base_states[entry.path]
        if state.status is Status.MATCHED and state.partner in raw_entry:
            partner_of[state.partner] = entry
    after: dict[str, list[PairLine]] = {}  # base path -> raw-only lines shown after its subtree
    for entry in layout.raw_entries:
        if entry.path in partner_of:
            continue
        ancestor = entry.path
        while ancestor != ROOT and ancestor not in partner_of:
            ancestor = ancestor.rpartition(".")[0]
        anchor = partner_of.get(ancestor)
        depth = entry.depth if anchor is None else anchor.depth + entry.depth - raw_entry[ancestor].depth
        after.setdefault(anchor.path if anchor is not None else ROOT, []).append(PairLine(None, entry, depth))
    last_inside: dict[str, int] = {}  # base path -> index of the last base entry in its subtree
    for index, entry in enumerate(layout.base_entries):
        path = entry.path
        while path not in last_inside or last_inside[path] < index:
            last_inside[path] = index
            if path == ROOT:
                break
            path = path.rpartition(".")[0]
    closing: dict[int, list[str]] = {}  # base index -> anchors whose subtree ends there, innermost first
    for path in sorted(after, key=lambda path: -len(path.split(".")) if path else 0):
        closing.setdefault(last_inside.get(path, len(layout.base_entries) - 1), []).append(path)
    lines: list[PairLine] = []
    for index, entry in enumerate(layout.base_entries):
        state = layout.base_states[entry.path]
        partner = raw_entry.get(state.partner) if state.status is Status.MATCHED and state.partner is not None else None
        lines.append(PairLine(entry, partner, entry.depth))
        for path in closing.get(index, []):
            lines.extend(after[path])
    return lines


def _longest_increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest subsequence of ``pairs`` (sorted by first item) with increasing second items."""
    tails: list[int] = []  # tails[k]: smallest second item ending an increasing run of length k + 1
    tail_at: list[int] = []  # index into pairs of that run's last item
    previous = [-1] * len(pairs)
    for position, (_, value) in enumerate(pairs):
        length = bisect_left(tails, value)
        if length == len(tails):
            tails.append(value)
            tail_at.append(position)
        else:
            tails[length] = value
            tail_at[length] = position
        previous[position] = tail_at[length - 1] if length else -1
    chain = []
    position = tail_at[-1] if tail_at else -1
    while position >= 0:
        chain.append(pairs[position])
        position = previous[position]
    return chain[::-1]


def forward_errors(comparisons: Iterable[Comparison]) -> dict[str, tuple[float, float]]:
    """Base layer path -> the largest (max abs, max rel) error of its forward outputs
    (each part of a fused pair's split side has the pair's)."""
    errors: dict[str, tuple[float, float]] = {}
    for comparison in comparisons:
        if comparison.stage != "forward":
            continue
        verdict = comparison.verdict
        for path in group_members(comparison.base):
            worst = errors.get(path, (0.0, 0.0))
            errors[path] = (max(worst[0], verdict.max_abs), max(worst[1], verdict.max_rel))
    return errors


#: finding codes a layer's state already shows
_SHOWN_AS_STATUS = (Code.UNMATCHED, Code.WRAP_LAYER)


def finding_marks(findings: Iterable[Finding]) -> dict[tuple[str, str], list[tuple[Severity, str]]]:
    """``(side, path) -> [(severity, code), ...]``: which findings concern which layer."""
    marks: dict[tuple[str, str], list[tuple[Severity, str]]] = {}
    for finding in findings:
        if finding.code in _SHOWN_AS_STATUS:
            continue
        for side, path in (("base", finding.base), ("raw", finding.raw)):
            if path is not None:
                codes = marks.setdefault((side, path), [])
                if (finding.severity, finding.code.value) not in codes:
                    codes.append((finding.severity, finding.code.value))
    return marks
