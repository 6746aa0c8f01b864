"""Terminal rendering with rich: trees, the layer map, findings, diff results."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from padiff_graph.diff import DiffReport
from padiff_graph.layermap import LayerMap
from padiff_graph.match.features import TreeFeatures
from padiff_graph.preflight import Finding
from padiff_graph.records import Severity
from padiff_graph.tree import ROOT, ModelTree

_SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def _label(tree: ModelTree, path: str, marks: dict[str, str]) -> str:
    node = tree.nodes[path]
    name = escape(path.rpartition(".")[2] or tree.graph["model"])
    shapes = ", ".join(f"{t.name}{list(t.shape)}" for t in node["tensors"])
    text = f"[bold]{name}[/] [dim]{escape(node['class_name'])}[/]"
    if shapes:
        text += f" [green]{escape(shapes)}[/]"
    if path in marks:
        text += f"  {marks[path]}"
    return text


def model_tree(tree: ModelTree, marks: dict[str, str] | None = None, max_depth: int | None = None) -> Tree:
    """A rich tree of the model; runs of identical numbered blocks collapse to ``0-31 (×32)``."""
    marks = marks or {}
    features = TreeFeatures(tree)
    root = Tree(_label(tree, ROOT, marks))
    stack = [(ROOT, root, 0)]
    while stack:
        path, branch, depth = stack.pop()
        if max_depth is not None and depth >= max_depth:
            if features.children[path]:
                branch.add(f"[dim]… {len(features.descendants(path))} layers below[/]")
            continue
        added = []
        for group in _runs(features, features.children[path], marks):
            first = group[0]
            if len(group) == 1:
                added.append((first, branch.add(_label(tree, first, marks))))
                continue
            start, end = first.rpartition(".")[2], group[-1].rpartition(".")[2]
            label = _label(tree, first, marks).replace(
                f"[bold]{escape(start)}[/]", f"[bold]{escape(start)}-{escape(end)}[/] [magenta](×{len(group)})[/]", 1
            )
            added.append((first, branch.add(label)))
        for child, child_branch in reversed(added):
            stack.append((child, child_branch, depth + 1))
    return root


def _runs(features: TreeFeatures, paths: list[str], marks: dict[str, str]) -> Iterable[list[str]]:
    """Consecutive numbered siblings with equal structure and no marks, grouped."""
    group: list[str] = []
    for path in paths:
        index = path.rpartition(".")[2]
        if (
            group
            and index.isdigit()
            and group[-1].rpartition(".")[2].isdigit()
            and int(index) == int(group[-1].rpartition(".")[2]) + 1
            and _structure(features, path) == _structure(features, group[0])
            and not _marked(path, marks)
            and not _marked(group[0], marks)
        ):
            group.append(path)
            continue
        if group:
            yield group
        group = [path]
    if group:
        yield group


def _structure(features: TreeFeatures, path: str) -> tuple[str, int]:
    """Class and structural hash; a wrapper takes the hash of the layer it wraps."""
    kept = path
    while kept not in features.subtree_hash:
        kept = features.children[kept][0]
    return features.tree.nodes[path]["class_name"], features.subtree_hash[kept]


def _marked(path: str, marks: dict[str, str]) -> bool:
    return any(marked == path or marked.startswith(path + ".") for marked in marks)


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


def print_diff(console: Console, report: DiffReport, base_tree: ModelTree | None = None) -> None:
    """Outcome of a diff: the first divergence, its neighbourhood and counts."""
    failed = [c for c in report.comparisons if not c.ok]
    console.print(
        f"compared {len(report.comparisons)} tensors over {len(report.layer_map.pairs)} layer pairs "
        f"(mode {report.settings.get('mode')}, atol {report.settings.get('atol')}, rtol {report.settings.get('rtol')})"
    )
    if report.contained:
        where = ", ".join(sorted({escape(c.base or "<root>") for c in report.contained}))
        console.print(
            f"[yellow]note[/]: output gradients differ at {where} but no parameter gradient does "
            "(a subgradient choice at ties, e.g. max pooling over equal values; no effect on training)"
        )
    if report.first_divergence is None:
        console.print("[bold green]aligned[/]: every matched layer agrees within tolerance")
        return
    first = report.first_divergence
    console.print(
        f"[bold red]diverged[/] first at base [bold]{escape(first.base or '<root>')}[/] / "
        f"raw [bold]{escape(first.raw or '<root>')}[/] ({first.stage})"
    )
    console.print(f"    {escape(first.message)}")
    if base_tree is not None and first.base in base_tree:
        marks = {first.base: "[bold red]<- first divergence[/]"}
        console.print(model_tree(base_tree, marks))
    console.print(f"[dim]{len(failed)} of {len(report.comparisons)} comparisons differ after it[/]")
