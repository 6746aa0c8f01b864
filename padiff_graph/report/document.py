"""The JSON documents the CLI prints with ``--json`` (schema: ``docs/json.md``)."""

from __future__ import annotations

import json
from typing import Any

from padiff_graph.diff import DiffReport
from padiff_graph.layermap import LayerMap
from padiff_graph.preflight import Finding

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
    document = {"schema": SCHEMA_VERSION, "kind": "diff", **report.as_dict()}
    document["layer_map"] = report.layer_map.as_dict()
    return document


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, allow_nan=False)
