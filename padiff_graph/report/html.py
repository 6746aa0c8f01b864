"""The HTML report: one self-contained page (inline CSS, JS and SVG; no network to view it).

It shows both trees side by side in their own definition order with a line
between every matched pair, one-sided layers highlighted with why, the
findings with their hints, and for a diff the per-layer max-abs and max-rel
error in call order with the first divergence marked. The page is a jinja2
template shipped as package data (``templates/``); this module only builds
the plain data it renders. The JSON document of ``--json`` is embedded too
(``<script id="padiff-data" type="application/json">``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from padiff_graph.core.atomic import write_atomically
from padiff_graph.core.findings import Finding, has_errors
from padiff_graph.core.records import Severity
from padiff_graph.core.tree import ModelTree
from padiff_graph.layermap import LayerMap
from padiff_graph.report.document import check_document, diff_document
from padiff_graph.report.layout import Entry, LayerState, Status, finding_marks, forward_errors, two_trees
from padiff_graph.run.results import DiffReport

#: tree rows are drawn at a fixed height so the match lines can be placed without measuring
ROW_HEIGHT = 22
LINK_WIDTH = 140
CHART = {"width": 1100, "height": 260, "left": 64, "right": 16, "top": 16, "bottom": 36}


@dataclass(frozen=True)
class TreeRow:
    """One row of one tree on the page."""

    index: int
    depth: int
    name: str
    count: int
    class_name: str
    shapes: str
    path: str
    status: str
    why: str
    partner: str | None
    tags: list[tuple[str, str]]
    diverged: bool
    figure: str


def render_html(
    base_tree: ModelTree,
    raw_tree: ModelTree,
    layer_map: LayerMap,
    findings: list[Finding],
    report: DiffReport | None = None,
) -> str:
    """The page for a check (``report`` is None) or a diff."""
    first = report.first_divergence if report is not None else None
    tags = {key: [(s.value, code) for s, code in codes] for key, codes in finding_marks(findings).items()}
    keep = [] if first is None else [("base", first.base), ("raw", first.raw)]
    layout = two_trees(base_tree, raw_tree, layer_map, {k: " ".join(c for _, c in v) for k, v in tags.items()}, keep)
    figures = forward_errors(report.comparisons) if report is not None else {}
    sides = {}
    for side, tree, entries, states in (
        ("base", base_tree, layout.base_entries, layout.base_states),
        ("raw", raw_tree, layout.raw_entries, layout.raw_states),
    ):
        diverged = None if first is None else (first.base if side == "base" else first.raw)
        sides[side] = [
            _tree_row(index, tree, entry, states[entry.path], tags.get((side, entry.path), []), diverged, figures, side)
            for index, entry in enumerate(entries)
        ]
    links = _links(sides["base"], sides["raw"], layout.base_entries, layout.raw_entries, layout.base_states, first)
    rows = max(len(sides["base"]), len(sides["raw"]))
    document = check_document(layer_map, findings) if report is None else diff_document(report)
    context = {
        "kind": "diff" if report is not None else "check",
        "base": {"model": base_tree.graph["model"], "framework": base_tree.graph["framework"]},
        "raw": {"model": raw_tree.graph["model"], "framework": raw_tree.graph["framework"]},
        "verdict": _verdict(findings, report),
        "first": first,
        "settings": report.settings if report is not None else {},
        "not_comparable": report.not_comparable if report is not None else [],
        "not_compared": report.not_compared if report is not None else [],
        "sides": sides,
        "links": links,
        "row_height": ROW_HEIGHT,
        "link_width": LINK_WIDTH,
        "tree_height": rows * ROW_HEIGHT,
        "counts": _counts(layout.base_states, layout.raw_states),
        "findings": sorted(findings, key=lambda f: list(Severity).index(f.severity)),
        "chart": _chart(report) if report is not None and report.comparisons else None,
        "pairs": layer_map.as_dict()["pairs"],
        "version": _version(),
        "data": json.dumps(document, allow_nan=False).replace("</", "<\\/"),
    }
    return _environment().get_template("report.html.j2").render(**context)


def write_html(path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
    """:func:`render_html` written atomically to ``path``."""
    write_atomically(path, render_html(*args, **kwargs))


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("padiff_graph.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _tree_row(
    index: int,
    tree: ModelTree,
    entry: Entry,
    state: LayerState,
    tags: list[tuple[str, str]],
    diverged: str | None,
    figures: dict[str, tuple[float, float]],
    side: str,
) -> TreeRow:
    node = tree.nodes[entry.path]
    values = [figures[path] for path in entry.stands_for if path in figures] if side == "base" else []
    figure = f"max abs {max(v[0] for v in values):.2e}" if values else ""
    return TreeRow(
        index=index,
        depth=entry.depth,
        name=entry.name(tree.graph["model"]),
        count=entry.count,
        class_name=node["class_name"],
        shapes=", ".join(f"{t.name}{list(t.shape)}" for t in node["tensors"]),
        path=entry.path,
        status=state.status.value,
        why=state.why,
        partner=state.partner,
        tags=tags,
        diverged=diverged is not None and diverged == entry.path,
        figure=figure,
    )


def _links(
    base_rows: list[TreeRow],
    raw_rows: list[TreeRow],
    base_entries: list[Entry],
    raw_entries: list[Entry],
    base_states: dict[str, LayerState],
    first: Any,
) -> list[dict[str, Any]]:
    """A line per visible matched pair: from the base row to the raw row showing its partner."""
    raw_row_of: dict[str, int] = {}
    for row, entry in zip(raw_rows, raw_entries, strict=True):
        for path in entry.stands_for:
            raw_row_of.setdefault(path, row.index)
    links = []
    for row, entry in zip(base_rows, base_entries, strict=True):
        state = base_states[entry.path]
        if state.status is not Status.MATCHED or state.partner is None:
            continue
        target = raw_row_of.get(state.partner)
        if target is None:
            continue
        y1 = (row.index + 0.5) * ROW_HEIGHT
        y2 = (target + 0.5) * ROW_HEIGHT
        middle = LINK_WIDTH / 2
        links.append(
            {
                "base": row.index,
                "raw": target,
                "path": f"M0,{y1:.1f} C{middle:.1f},{y1:.1f} {middle:.1f},{y2:.1f} {LINK_WIDTH},{y2:.1f}",
                "diverged": first is not None and entry.path == first.base,
                # the partner sits inside a collapsed run: the line goes to the row standing for it
                "approximate": raw_rows[target].path != state.partner,
            }
        )
    return links


def _counts(base_states: dict[str, LayerState], raw_states: dict[str, LayerState]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for side, states in (("base", base_states), ("raw", raw_states)):
        counts[side] = {status.value: 0 for status in Status}
        for state in states.values():
            counts[side][state.status.value] += 1
    return counts


def _verdict(findings: list[Finding], report: DiffReport | None) -> dict[str, str]:
    if report is not None:
        if report.first_divergence is None:
            return {"state": "ok", "text": "aligned: every matched layer agrees within tolerance"}
        first = report.first_divergence
        return {"state": "bad", "text": f"diverged first at {first.base or '<root>'} / {first.raw or '<root>'}"}
    errors = sum(f.severity is Severity.ERROR for f in findings)
    if has_errors(findings):
        return {"state": "bad", "text": f"{errors} error finding{'s' if errors != 1 else ''}"}
    return {"state": "ok", "text": "no error findings"}


def _chart(report: DiffReport) -> dict[str, Any]:
    """Per-comparison max-abs and max-rel error on a log scale, in call order."""
    comparisons = report.comparisons
    width, height = CHART["width"], CHART["height"]
    left, right, top, bottom = CHART["left"], CHART["right"], CHART["top"], CHART["bottom"]
    finite = [v for c in comparisons for v in (c.verdict.max_abs, c.verdict.max_rel) if math.isfinite(v) and v > 0]
    high = math.ceil(math.log10(max(finite))) if finite else 0
    low = min(math.floor(math.log10(min(finite))) if finite else -8, high - 1) - 1  # the bottom line is 0
    span_x = max(len(comparisons) - 1, 1)

    def x(index: int) -> float:
        return left + (width - left - right) * (index / span_x if len(comparisons) > 1 else 0.5)

    def y(value: float) -> float:
        if not math.isfinite(value):
            return top - 6
        exponent = math.log10(value) if value > 0 else low
        return top + (height - top - bottom) * (high - max(exponent, low)) / (high - low)

    points = []
    first_index = None
    first = report.first_divergence
    for index, comparison in enumerate(comparisons):
        verdict = comparison.verdict
        if (
            first is not None
            and first_index is None
            and not comparison.ok
            and (comparison.base, comparison.raw) == (first.base, first.raw)
            and comparison.stage.startswith(first.stage)
        ):
            first_index = index
        label = (
            f"{comparison.base or '<root>'} / {comparison.raw or '<root>'} · {comparison.stage} "
            f"· call {comparison.call}, output {comparison.index}: max abs {verdict.max_abs:.3g}, "
            f"max rel {verdict.max_rel:.3g}" + (f" ({verdict.note})" if verdict.note else "")
        )
        points.append(
            {
                "x": round(x(index), 1),
                "abs": round(y(verdict.max_abs), 1),
                "rel": round(y(verdict.max_rel), 1),
                "ok": comparison.ok,
                "label": label,
            }
        )
    stages: list[tuple[str, int, int]] = []  # (stage, first index, last index) of each run of one stage
    for index, comparison in enumerate(comparisons):
        stage = comparison.stage.partition(":")[0]
        if stages and stages[-1][0] == stage:
            stages[-1] = (stage, stages[-1][1], index)
        else:
            stages.append((stage, index, index))
    half = (width - left - right) / span_x / 2 if len(comparisons) > 1 else 20
    bands = []
    for stage, first_in, last_in in stages:
        start = max(x(first_in) - half, left)
        end = min(x(last_in) + half, width - right)
        bands.append({"name": stage, "x": round(start, 1), "w": round(end - start, 1)})
    atol = report.settings.get("atol")
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "top": top,
        "bottom": height - bottom,
        "points": points,
        "ticks": [{"y": round(y(10.0**e), 1), "label": f"1e{e}" if e > low else "0"} for e in range(low, high + 1)],
        "bands": bands,
        "atol": round(y(atol), 1) if isinstance(atol, float) and atol > 0 and low <= math.log10(atol) <= high else None,
        "first": None if first_index is None else points[first_index],
        "count": len(comparisons),
    }


def _version() -> str:
    try:
        return version("padiff-graph")
    except PackageNotFoundError:  # running from a source checkout
        return "dev"
