"""The JSON documents the CLI prints with ``--json``.

The format is documented in ``docs/json.md`` and pinned by the JSON Schema
shipped next to this module (``schema.json``, see :func:`schema`); tests
validate real output against it. Non-finite numbers are written as the
strings ``"inf"``, ``"-inf"`` and ``"nan"``, so every document is strict JSON.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

from padiff_graph.core.findings import Finding, has_errors
from padiff_graph.layermap import LayerMap
from padiff_graph.run.results import Comparison, DiffReport

SCHEMA_VERSION = 1


def check_document(layer_map: LayerMap, findings: list[Finding]) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "kind": "check",
        "ok": not any(f.severity.value == "error" for f in findings),
        "findings": [finding.as_dict() for finding in findings],
        "layer_map": layer_map.as_dict(),
    }


def diff_document(report: DiffReport) -> dict[str, Any]:
    """The report; ``ok`` as the exit code has it: no divergence and no error finding."""
    document = {"schema": SCHEMA_VERSION, "kind": "diff", **report.as_dict()}
    document["ok"] = report.ok and not has_errors(report.findings)
    document["layers"] = layer_errors(report.comparisons)
    document["layer_map"] = report.layer_map.as_dict()
    return document


def layer_errors(comparisons: list[Comparison]) -> list[dict[str, Any]]:
    """Per matched pair, in the order first compared: how many tensors, all within tolerance, the worst errors."""
    layers: dict[tuple[str, str], dict[str, Any]] = {}
    for comparison in comparisons:
        entry = layers.setdefault(
            (comparison.base, comparison.raw),
            {"base": comparison.base, "raw": comparison.raw, "compared": 0, "ok": True, "max_abs": 0.0, "max_rel": 0.0},
        )
        entry["compared"] += 1
        entry["ok"] = entry["ok"] and comparison.ok
        entry["max_abs"] = max(entry["max_abs"], comparison.verdict.max_abs)
        entry["max_rel"] = max(entry["max_rel"], comparison.verdict.max_rel)
    return [
        {**entry, "max_abs": _number(entry["max_abs"]), "max_rel": _number(entry["max_rel"])}
        for entry in layers.values()
    ]


def _number(value: float) -> float | str:
    return value if value == value and abs(value) != float("inf") else str(value)


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, allow_nan=False)


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the check and diff documents."""
    loaded: dict[str, Any] = json.loads(files("padiff_graph.report").joinpath("schema.json").read_text("utf-8"))
    return loaded
