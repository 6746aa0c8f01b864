"""Terminal rendering with rich: trees, both trees side by side, the layer map, findings, diff results."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from padiff_graph.core.findings import Finding
from padiff_graph.core.records import Severity
from padiff_graph.core.tree import ModelTree, preorder
from padiff_graph.layermap import LayerMap
from padiff_graph.report.layout import (
    Entry,
    LayerState,
    Status,
    collapsible_runs,
    finding_marks,
    forward_errors,
    two_trees,
    visible_entries,
)
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
        text += f"  [{_STATUS_STYLE[state.status]}]{state.status.value} ↔ {escape(state.partner or '<root>')}[/]"
    elif state.status is not Status.MATCHED:
        text += f"  [{_STATUS_STYLE[state.status]}]{state.status.value}[/]"
    elif not paired:
        text += f"  [magenta]↔ {escape(_partner_name(entry.path, states))} (other order)[/]"
    if mark:
        text += f"  {mark}"
    return text


def _partner_name(path: str, states: Mapping[str, LayerState]) -> str:
    """The partner's local name where the parents are partners too, else its full path."""
    partner = states[path].partner or ""
    parent = states.get(path.rpartition(".")[0]) if path else None
    if parent is not None and parent.partner is not None and partner.rpartition(".")[0] == parent.partner:
        return partner.rpartition(".")[2]
    return partner or "<root>"


def side_by_side(
    base_tree: ModelTree,
    raw_tree: ModelTree,
    layer_map: LayerMap,
    tags: Mapping[tuple[str, str], str] | None = None,
    figures: Mapping[str, tuple[float, float]] | None = None,
    first_divergence: tuple[str, str] | None = None,
) -> Table:
    """Both trees, matched pairs on one row, every other layer labelled with why.

    Args:
        tags: ``(side, path) -> markup`` shown with that layer (finding codes).
        figures: base path -> (max abs, max rel) error, shown in two columns.
        first_divergence: the (base, raw) pair to mark; it never collapses.
    """
    tags = dict(tags or {})
    keep = []
    if first_divergence is not None:
        keep = [("base", first_divergence[0]), ("raw", first_divergence[1])]
        for key in keep:
            tags[key] = (tags[key] + "  " if key in tags else "") + FIRST_DIVERGENCE
    layout = two_trees(base_tree, raw_tree, layer_map, tags, keep)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column(f"base: {escape(base_tree.graph['model'])} ({base_tree.graph['framework']})", overflow="fold")
    table.add_column("", width=1)
    table.add_column(f"raw: {escape(raw_tree.graph['model'])} ({raw_tree.graph['framework']})", overflow="fold")
    if figures is not None:
        table.add_column("max abs", justify="right", no_wrap=True)
        table.add_column("max rel", justify="right", no_wrap=True)
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


def _figure_cells(figures: Mapping[str, tuple[float, float]], members: Iterable[str]) -> list[str]:
    values = [figures[path] for path in members if path in figures]
    if not values:
        return ["", ""]
    return [f"{max(v[0] for v in values):.2e}", f"{max(v[1] for v in values):.2e}"]


def print_tree(console: Console, tree: ModelTree, max_depth: int | None = None) -> None:
    console.print(model_tree(tree, max_depth=max_depth))


def print_map(console: Console, layer_map: LayerMap, only_tensors: bool = True) -> None:
    """The proposed pairs as a table (layers holding tensors, ambiguous ones marked)."""
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
    for side, paths in (("base", layer_map.unmatched_base), ("raw", layer_map.unmatched_raw)):
        if paths:
            console.print(f"[dim]unmatched {side}:[/] {escape(', '.join(paths))}")


def print_findings(console: Console, findings: list[Finding]) -> None:
    if not findings:
        console.print("[green]no findings: an order-based copy would work as is[/]")
        return
    for finding in findings:
        style = _SEVERITY_STYLE[finding.severity]
        where = " / ".join(escape(p if p else "<root>") for p in (finding.base, finding.raw) if p is not None)
        console.print(f"[{style}]{finding.severity.value}[/] [bold]{finding.code.value}[/] {where}")
        console.print(f"    {escape(finding.message)}")
        console.print(f"    [dim]hint: {escape(finding.hint)}[/]")


def summary_line(findings: list[Finding]) -> str:
    counts = {severity: sum(f.severity is severity for f in findings) for severity in Severity}
    return ", ".join(f"{counts[s]} {s.value}{'s' if counts[s] != 1 else ''}" for s in Severity)


def print_check(
    console: Console, base_tree: ModelTree, raw_tree: ModelTree, layer_map: LayerMap, findings: list[Finding]
) -> None:
    """``check``'s report: both trees with each layer's findings, then the findings with their hints."""
    console.print(side_by_side(base_tree, raw_tree, layer_map, _finding_tags(findings)))
    print_findings(console, findings)
    console.print(summary_line(findings))


def _finding_tags(findings: list[Finding]) -> dict[tuple[str, str], str]:
    return {
        key: " ".join(f"[{_SEVERITY_STYLE[severity]}]{escape(code)}[/]" for severity, code in codes)
        for key, codes in finding_marks(findings).items()
    }


def print_diff(
    console: Console, report: DiffReport, base_tree: ModelTree | None = None, raw_tree: ModelTree | None = None
) -> None:
    """Outcome of a diff: the first divergence, both trees with per-layer errors (given the trees), counts."""
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
    errors = [f for f in report.findings if f.severity is Severity.ERROR]
    if errors and report.comparisons:
        console.print(f"[yellow]note[/]: the diff ran despite {len(errors)} pre-flight error(s); the first:")
        print_findings(console, errors[:1])
    if report.contained:
        where = ", ".join(sorted({escape(c.base or "<root>") for c in report.contained}))
        console.print(
            f"[yellow]note[/]: output gradients differ at {where} but no parameter gradient does "
            "(a subgradient choice at ties, e.g. max pooling over equal values; no effect on training)"
        )
    precision = report.settings.get("precision", {})
    if floor and precision.get("base") != precision.get("raw"):
        console.print(
            f"[yellow]note[/]: the base model runs in {precision.get('base')}, the raw one in {precision.get('raw')}; "
            "errors are judged against the less precise one's noise (on CPU, paddle has no bfloat16/float16 kernels)"
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
        tags = _finding_tags(report.findings)
        console.print(side_by_side(base_tree, raw_tree, report.layer_map, tags, figures, pair))
    elif base_tree is not None and first is not None and first.base in base_tree:
        console.print(model_tree(base_tree, {first.base: FIRST_DIVERGENCE}))
    if first is None:
        console.print("[bold green]aligned[/]: every matched layer agrees within tolerance")
        return
    console.print(
        f"[bold red]diverged[/] first at base [bold]{escape(first.base or '<root>')}[/] / "
        f"raw [bold]{escape(first.raw or '<root>')}[/] ({first.stage})"
    )
    console.print(f"    {escape(first.message)}")
    if report.comparisons:
        console.print(f"[dim]{len(failed)} of {len(report.comparisons)} comparisons differ[/]")
