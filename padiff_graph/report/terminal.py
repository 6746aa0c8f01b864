"""Terminal rendering with rich: trees, both trees side by side, the layer map, findings, diff results."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from padiff_graph.core.findings import Code, Finding
from padiff_graph.core.records import Severity, quoted_path
from padiff_graph.core.tree import ModelTree, is_within, preorder, relative_path
from padiff_graph.layermap import LayerMap
from padiff_graph.report.layout import (
    Entry,
    LayerState,
    Status,
    TwoTrees,
    collapsible_runs,
    finding_marks,
    forward_errors,
    layer_states,
    pair_lines,
    two_trees,
    visible_entries,
)
from padiff_graph.run.fused_pairs import group_members
from padiff_graph.run.results import DiffReport

_SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_STATUS_STYLE = {
    Status.UNMATCHED: "bold yellow",
    Status.WRAPPER: "dim",
    Status.IGNORED: "dim",
    Status.CONVERTED: "cyan",
    Status.ABSORBED: "cyan",
}
FIRST_DIVERGENCE = "[bold red]<- first divergence[/]"
#: findings of one code that ``diff`` prints above the run (``--verbose``: all)
FINDINGS_PER_CODE = 2


def _label(tree: ModelTree, entry: Entry, marks: Mapping[str, str]) -> str:
    node = tree.nodes[entry.path]
    text = f"[bold]{escape(entry.name(tree.graph['model']))}[/]"
    if entry.count > 1:
        text += f" [magenta](×{entry.count})[/]"
    text += f" [dim]{escape(node['class_name'])}[/]"
    shapes = ", ".join(f"{t.name}{list(t.shape)}" for t in node["tensors"])
    if shapes:
        text += f" [green]{escape(shapes)}[/]"
    if entry.path in marks:
        text += f"  {marks[entry.path]}"
    return text


def model_tree(tree: ModelTree, marks: Mapping[str, str] | None = None, max_depth: int | None = None) -> Tree:
    """A rich tree of the model; runs of identical numbered blocks collapse to ``0-31 (×32)``."""
    marks = marks or {}
    entries = visible_entries(tree, collapsible_runs(tree, keep=marks), max_depth=max_depth)
    root = Tree(_label(tree, entries[0], marks))
    branches = [root]
    for entry in entries[1:]:
        del branches[entry.depth :]
        branches.append(branches[-1].add(_label(tree, entry, marks)))
        if entry.depth == max_depth and tree.out_degree(entry.path):
            below = sum(1 for _ in preorder(tree, entry.path)) - 1
            branches[-1].add(f"[dim]… {below} layers below[/]")
    return root


def _cell(tree: ModelTree, entry: Entry | None, states: Mapping[str, LayerState], paired: bool, mark: str) -> str:
    if entry is None:
        return ""
    state = states[entry.path]
    text = "  " * entry.depth + _label(tree, entry, {})
    if state.status in (Status.CONVERTED, Status.ABSORBED):
        partner = escape(_partner_name(entry.path, states))
        text += f"  [{_STATUS_STYLE[state.status]}]{state.status.value} ↔ {partner}[/]"
    elif state.status is not Status.MATCHED:
        text += f"  [{_STATUS_STYLE[state.status]}]{state.status.value}[/]"
    elif not paired:
        text += f"  [magenta]↔ {escape(_partner_name(entry.path, states))} (other order)[/]"
    if mark:
        text += f"  {mark}"
    return text


def _partner_name(path: str, states: Mapping[str, LayerState]) -> str:
    """The partner's path relative to the parent's partner where that holds it, else its full path."""
    partner = states[path].partner or ""
    parent = states.get(path.rpartition(".")[0]) if path else None
    if (
        parent is not None
        and parent.partner is not None
        and partner != parent.partner
        and is_within(partner, parent.partner)
    ):
        return relative_path(parent.partner, partner)
    return partner or "<root>"


def side_by_side(
    base_tree: ModelTree,
    raw_tree: ModelTree,
    layer_map: LayerMap,
    tags: Mapping[tuple[str, str], str] | None = None,
    figures: Mapping[str, tuple[float, float]] | None = None,
    first_divergence: tuple[str, str] | None = None,
    width: int | None = None,
) -> Table | Group:
    """Both trees, matched pairs on one row, every other layer labelled with why.

    Two trees side by side when they fit in ``width`` columns and define
    their layers in the same order; otherwise one line per pair, ``base →
    raw``, in the base's order (:func:`~padiff_graph.report.layout.pair_lines`),
    which stays readable in 80 columns and whatever the raw model's order.

    Args:
        tags: ``(side, path) -> markup`` shown with that layer (finding codes).
        figures: base path -> (max abs, max rel) error, shown in two columns.
        first_divergence: the (base, raw) pair to mark; it never collapses.
        width: the columns available (the console's width); ``None``: no limit.
    """
    tags = dict(tags or {})
    keep = []
    if first_divergence is not None:
        base, raw = first_divergence  # a fused pair's parts are each marked
        keep = [("base", path) for path in group_members(base)] + [("raw", path) for path in group_members(raw)]
        for key in keep:
            tags[key] = (tags[key] + "  " if key in tags else "") + FIRST_DIVERGENCE
    layout = two_trees(base_tree, raw_tree, layer_map, tags, keep)
    table = _two_columns(base_tree, raw_tree, layout, tags, figures)
    reordered = any(
        not row.paired and row.base is not None and layout.base_states[row.base.path].status is Status.MATCHED
        for row in layout.rows
    )
    if reordered or (width is not None and _measure(table) > width):
        return _pair_list(base_tree, raw_tree, layout, tags, figures, width)
    return table


def _header(tree: ModelTree) -> str:
    return f"{escape(tree.graph['model'])} ({tree.graph['framework']})"


def _two_columns(
    base_tree: ModelTree,
    raw_tree: ModelTree,
    layout: TwoTrees,
    tags: Mapping[tuple[str, str], str],
    figures: Mapping[str, tuple[float, float]] | None,
) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column(f"base: {_header(base_tree)}", overflow="fold")
    table.add_column("", width=1)
    table.add_column(f"raw: {_header(raw_tree)}", overflow="fold")
    _figure_columns(table, figures)
    for row in layout.rows:
        base_mark = tags.get(("base", row.base.path), "") if row.base else ""
        raw_mark = tags.get(("raw", row.raw.path), "") if row.raw else ""
        cells = [
            _cell(base_tree, row.base, layout.base_states, row.paired, base_mark),
            "[red]✗[/]" if FIRST_DIVERGENCE in base_mark + raw_mark else ("─" if row.paired else ""),
            _cell(raw_tree, row.raw, layout.raw_states, row.paired, raw_mark),
        ]
        if figures is not None:
            cells += _figure_cells(figures, row.base.stands_for if row.base is not None else ())
        table.add_row(*cells)
    return table


def _figure_columns(table: Table, figures: Mapping[str, tuple[float, float]] | None) -> None:
    if figures is not None:
        table.add_column("max abs", justify="right", no_wrap=True, min_width=8)
        table.add_column("max rel", justify="right", no_wrap=True, min_width=8)


def _measure(table: Table) -> int:
    """The columns ``table`` needs to show every cell on one line."""
    return Console(width=100_000).measure(table).maximum


def _pair_list(
    base_tree: ModelTree,
    raw_tree: ModelTree,
    layout: TwoTrees,
    tags: Mapping[tuple[str, str], str],
    figures: Mapping[str, tuple[float, float]] | None,
    width: int | None,
) -> Group:
    """One line per pair, ``base → raw``, indented by depth, in ``width`` columns; long lines are cut, never wrapped."""
    rows = []
    for line in pair_lines(layout):
        text, notes = "  " * line.depth, []
        if line.base is not None:
            text += _short_label(base_tree, line.base)
            notes += _notes(line.base.path, layout.base_states, tags.get(("base", line.base.path), ""))
        if line.raw is not None:
            text += " → " if line.base is not None else "→ "
            other_class = line.base is None or _class(base_tree, line.base) != _class(raw_tree, line.raw)
            name = None if line.base is None else _partner_name(line.base.path, layout.base_states)
            single = line.raw.count == 1 and (line.base is None or line.base.count == 1)
            text += _short_label(raw_tree, line.raw, other_class, name if single else None)
            raw_notes = _notes(line.raw.path, layout.raw_states, tags.get(("raw", line.raw.path), ""))
            notes += [note for note in raw_notes if note not in notes]
        members = line.base.stands_for if line.base is not None else ()
        rows.append((text, "  ".join(notes), _figure_cells(figures, members) if figures is not None else []))
    header = f"base: {_header(base_tree)} → raw: {_header(raw_tree)}"
    head_figures = ["max abs", "max rel"] if figures is not None else []
    return _columns([(header, "", head_figures), *rows], width)


#: columns each error figure takes in the one-line-per-pair view
_FIGURE_WIDTH = 9


def _columns(rows: list[tuple[str, str, list[str]]], width: int | None) -> Group:
    """Lines of ``(label, notes, figures)``, the first a header, cut to fit ``width`` (labels keep half)."""
    labels = [Text.from_markup(label) for label, _, _ in rows]
    notes = [Text.from_markup(note) for _, note, _ in rows]
    note_width = max(text.cell_len for text in notes)
    label_width = max([text.cell_len for text in labels[1:]] + [labels[0].cell_len - note_width - 2])
    figure_count = max(len(figures) for _, _, figures in rows)
    figure_width = _FIGURE_WIDTH * figure_count + bool(figure_count)  # a space after the notes
    if width is not None:
        room = max(width - figure_width - (2 if note_width else 0), 0)
        note_width = min(note_width, room - min(label_width, room // 2))
        label_width = min(label_width, room - note_width)
    block = label_width + (note_width + 2 if note_width else 0)  # the columns before the figures
    lines = []
    for number, (label, note, (_, _, figures)) in enumerate(zip(labels, notes, rows, strict=True)):
        line = label.copy()
        if number and note.cell_len:
            if note.cell_len <= note_width:  # aligned notes; a long label may use what they leave free
                target = min(max(label_width, line.cell_len), block - note.cell_len - 2)
            else:  # long notes start right after a short label
                target = min(line.cell_len, label_width)
            line.truncate(target, overflow="ellipsis", pad=True)
            note.truncate(block - target - 2, overflow="ellipsis")
            line.append("  ").append_text(note)
        line.truncate(block, overflow="ellipsis", pad=True)
        if figures:
            line.append(" " + "".join(figure.rjust(_FIGURE_WIDTH) for figure in figures))
        line.rstrip()
        lines.append(line)
    rule = Text("─" * (block + figure_width))
    return Group(lines[0], rule, *lines[1:])


def _class(tree: ModelTree, entry: Entry) -> str:
    return str(tree.nodes[entry.path]["class_name"])


def _short_label(tree: ModelTree, entry: Entry, with_class: bool = True, name: str | None = None) -> str:
    """Name (``name`` if given), count and class, no tensor shapes: what a one-line pair has room for."""
    if not entry.path:
        return f"[bold]{escape(_class(tree, entry))}[/]"
    text = f"[bold]{escape(name or entry.name(tree.graph['model']))}[/]"
    if entry.count > 1:
        text += f" [magenta](×{entry.count})[/]"
    return text + (f" [dim]{escape(_class(tree, entry))}[/]" if with_class else "")


def _notes(path: str, states: Mapping[str, LayerState], tag: str) -> list[str]:
    state, notes = states[path], [tag] if tag else []
    if state.status in (Status.CONVERTED, Status.ABSORBED):
        partner = escape(_partner_name(path, states))
        notes.insert(0, f"[{_STATUS_STYLE[state.status]}]{state.status.value} ↔ {partner}[/]")
    elif state.status is not Status.MATCHED:
        notes.insert(0, f"[{_STATUS_STYLE[state.status]}]{state.status.value}[/]")
    return notes


def _figure_cells(figures: Mapping[str, tuple[float, float]], members: Iterable[str]) -> list[str]:
    values = [figures[path] for path in members if path in figures]
    if not values:
        return ["", ""]
    return [f"{max(v[0] for v in values):.2e}", f"{max(v[1] for v in values):.2e}"]


def print_tree(console: Console, tree: ModelTree, max_depth: int | None = None) -> None:
    console.print(model_tree(tree, max_depth=max_depth))


def print_map(
    console: Console, layer_map: LayerMap, trees: tuple[ModelTree, ModelTree] | None = None, only_tensors: bool = True
) -> None:
    """The proposed pairs as a table (layers holding tensors, ambiguous ones marked), then the layers left over.

    Given both ``trees``, the layers left over are told apart as in ``check``:
    one-sided layers (``unmatched``) and wrappers that only group others.
    """
    table = Table(
        title=f"layer map: {layer_map.base_model} ({layer_map.base_framework}) -> "
        f"{layer_map.raw_model} ({layer_map.raw_framework})",
        show_lines=False,
    )
    table.add_column("base", overflow="fold")
    table.add_column("raw", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("tensors", overflow="fold")
    for pair in layer_map.pairs:
        if only_tensors and not pair.tensors:
            continue
        changed = [t.describe() for t in pair.tensors if not t.transform.is_identity or t.base != t.raw]
        same = len(pair.tensors) - len(changed)
        tensors = "; ".join(changed + ([f"{same} as is"] if same else []))
        raw = escape(pair.raw or "<root>")
        if pair.candidates:
            raw += f" [yellow](or {escape(', '.join(pair.candidates))}?)[/]"
        table.add_row(escape(pair.base or "<root>"), raw, f"{pair.score:.2f}", escape(tensors))
    console.print(table)
    if trees is None:
        for side, paths in (("base", layer_map.unmatched_base), ("raw", layer_map.unmatched_raw)):
            if paths:
                console.print(f"[dim]unmatched {side}:[/] {escape(', '.join(p or '<root>' for p in paths))}")
        return
    for side, tree in zip(("base", "raw"), trees, strict=True):
        states = layer_states(tree, side, layer_map)
        for status, note in (
            (Status.UNMATCHED, ""),
            (Status.WRAPPER, " (they only group other layers: nothing to do)"),
        ):
            paths = [path or "<root>" for path, state in states.items() if state.status is status]
            if paths:
                console.print(f"[dim]{status.value} {side}:[/] {escape(', '.join(paths))}{note}")


def print_findings(
    console: Console, findings: list[Finding], quiet_if_none: bool = False, per_code: int | None = None
) -> None:
    """Each finding with its message and hint, wrapped lines indented.

    With none, a line saying so (unless ``quiet_if_none``); ``per_code`` shows
    at most that many findings of each code and counts the rest.
    """
    if not findings:
        if not quiet_if_none:
            console.print("[green]no findings: an order-based copy would work as is[/]")
        return
    shown: dict[Code, int] = {}
    for finding in findings:
        shown[finding.code] = shown.get(finding.code, 0) + 1
        if per_code is not None and shown[finding.code] > per_code:
            continue
        style = _SEVERITY_STYLE[finding.severity]
        where = " / ".join(escape(p if p else "<root>") for p in (finding.base, finding.raw) if p is not None)
        console.print(f"[{style}]{finding.severity.value}[/] [bold]{finding.code.value}[/] {where}")
        console.print(escape(_indented(finding.message, console.width)))
        console.print(f"[dim]{escape(_indented('hint: ' + finding.hint, console.width))}[/]")
    for code, count in shown.items():
        if per_code is not None and count > per_code:
            console.print(f"[dim]… and {count - per_code} more {code.value} (padiff-graph check lists them all)[/]")


def _indented(text: str, width: int) -> str:
    """``text`` wrapped at word boundaries in ``width`` columns, every line indented by four."""
    return textwrap.fill(
        text,
        max(width, 20),
        initial_indent="    ",
        subsequent_indent="    ",
        break_on_hyphens=False,
        break_long_words=False,
    )


def summary_line(findings: list[Finding]) -> str:
    counts = {severity: sum(f.severity is severity for f in findings) for severity in Severity}
    return ", ".join(f"{counts[s]} {s.value}{'s' if counts[s] != 1 else ''}" for s in Severity)


def print_check(
    console: Console, base_tree: ModelTree, raw_tree: ModelTree, layer_map: LayerMap, findings: list[Finding]
) -> None:
    """``check``'s report: both trees with each layer's findings, then the findings with their hints."""
    console.print(side_by_side(base_tree, raw_tree, layer_map, _finding_tags(findings), width=console.width))
    print_findings(console, findings)
    console.print(summary_line(findings))


def _finding_tags(findings: list[Finding]) -> dict[tuple[str, str], str]:
    return {
        key: " ".join(f"[{_SEVERITY_STYLE[severity]}]{escape(code)}[/]" for severity, code in codes)
        for key, codes in finding_marks(findings).items()
    }


def print_diff(
    console: Console,
    report: DiffReport,
    base_tree: ModelTree | None = None,
    raw_tree: ModelTree | None = None,
    verbose: bool = False,
) -> None:
    """Outcome of a diff: the findings that matter, both trees with per-layer errors (given the trees), the verdict.

    Info findings (what a conversion already takes care of) show only when ``verbose``.
    """
    failed = [c for c in report.comparisons if not c.ok]
    floor = report.settings.get("noise_floor")
    judged = (
        f"errors against a noise floor of {floor:.0e} of each tensor's magnitude"
        if floor
        else f"atol {report.settings.get('atol')}, rtol {report.settings.get('rtol')}"
    )
    console.print(
        f"compared {len(report.comparisons)} tensors over {len(report.layer_map.pairs)} layer pairs "
        f"(mode {report.settings.get('mode')}, {judged})"
    )
    merged = report.settings.get("merged")
    if merged:
        console.print(f"merged by placement: base ranks {merged['base']}, raw ranks {merged['raw']} (docs/sharded.md)")
    shown = [f for f in report.findings if verbose or f.severity is not Severity.INFO]
    print_findings(console, shown, quiet_if_none=True, per_code=None if verbose else FINDINGS_PER_CODE)
    if len(shown) < len(report.findings):
        hidden = len(report.findings) - len(shown)
        console.print(f"[dim]{hidden} info finding(s) not shown: already taken care of (--verbose shows them)[/]")
    if report.contained:
        where = ", ".join(sorted({escape(c.base or "<root>") for c in report.contained}))
        console.print(
            f"[yellow]note[/]: output gradients differ at {where} but no parameter gradient does "
            "(a subgradient choice at ties, e.g. max pooling over equal values; no effect on training)"
        )
    if report.not_comparable:
        console.print(
            f"[yellow]not comparable[/]: {len(report.not_comparable)} record(s) of a sharded run could not be "
            f"merged without guessing, the first: {escape(report.not_comparable[0])}"
        )
    if report.not_compared:
        skipped = report.not_compared[0]
        console.print(
            f"[yellow]not compared[/]: {len(report.not_compared)} layer pair(s), "
            f"the first: base {escape(quoted_path(skipped.base))} / raw {escape(quoted_path(skipped.raw))}: "
            f"{escape(skipped.why)}"
        )
    if report.not_fed:
        console.print(
            f"[yellow]not fed[/]: {len(report.not_fed)} raw layer input(s) had no corresponding base input "
            f"(single-step), the first: {escape(report.not_fed[0])}"
        )
    precision = report.settings.get("precision", {})
    if floor and precision.get("base") != precision.get("raw"):
        console.print(
            f"[yellow]note[/]: the base model runs in {precision.get('base')}, the raw one in {precision.get('raw')}; "
            "errors are judged against the less precise one's noise (on CPU, paddle has no bfloat16/float16 kernels)"
        )
    for side in report.settings.get("amp_inactive", []):
        console.print(
            f"[yellow]note[/]: amp was asked for the {side} model, but its autocast did nothing "
            "(no layer output in the amp dtype; paddle has no bfloat16/float16 CPU kernels): it ran in full precision"
        )
    if report.accumulated:
        console.print(
            f"[yellow]note[/]: {len(report.accumulated)} tensor(s) differ by more than one layer's noise, "
            "but no more than the layers before them: accumulated noise, not a divergence"
        )
    first = report.first_divergence
    if base_tree is not None and raw_tree is not None:
        pair = None if first is None else (first.base, first.raw)
        figures = forward_errors(report.comparisons)
        tags = _finding_tags(shown)
        console.print(side_by_side(base_tree, raw_tree, report.layer_map, tags, figures, pair, console.width))
    elif base_tree is not None and first is not None and first.base in base_tree:
        console.print(model_tree(base_tree, {first.base: FIRST_DIVERGENCE}))
    _print_verdict(console, report, len(failed))


def _print_verdict(console: Console, report: DiffReport, failed: int) -> None:
    first = report.first_divergence
    errors = sum(f.severity is Severity.ERROR for f in report.findings)
    if first is None:
        console.print("[bold green]aligned[/]: every matched layer agrees within tolerance")
        if errors:
            console.print(f"[bold red]but {errors} pre-flight error(s) above remain[/] (exit code 1)")
        return
    console.print(
        f"[bold red]diverged[/] first at base [bold]{escape(first.base or '<root>')}[/] / "
        f"raw [bold]{escape(first.raw or '<root>')}[/] ({first.stage})"
    )
    console.print(escape(_indented(first.message, console.width)))
    if report.comparisons:
        console.print(f"[dim]{failed} of {len(report.comparisons)} comparisons differ[/]")
