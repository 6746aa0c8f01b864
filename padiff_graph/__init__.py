"""padiff_graph: why do a PaddlePaddle model and a PyTorch model disagree?

Export both models as trees, match their layers structurally, check what an
order-based copy would break, copy weights through the map and name the
first diverging layer. Importing this package loads neither torch nor
paddle; each framework is imported when a model of it is first seen, and
each name below is imported when first used (PEP 562), so ``import
padiff_graph`` and ``padiff-graph --help`` start in a few milliseconds.

Example::

    import padiff_graph as pg

    layer_map = pg.suggest_map(torch_model, paddle_model, {"x": x})
    layer_map.save("map.yaml")
    findings = pg.preflight(torch_model, paddle_model, layer_map)
    report = pg.diff(torch_model, paddle_model, {"x": x}, layer_map)
    print(report.ok, report.first_divergence)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from padiff_graph.api import assign_weights, diff, export_tree, preflight, suggest_map
    from padiff_graph.assign.checkpoints import convert_checkpoint
    from padiff_graph.core.findings import Code, Finding
    from padiff_graph.core.records import Severity, TensorKind
    from padiff_graph.core.transforms import TensorPair, Transform
    from padiff_graph.errors import (
        AssignError,
        DumpError,
        FactoryError,
        InputError,
        LayerMapError,
        ModelRunError,
        OutputError,
        PadiffGraphError,
        UnsupportedModelError,
    )
    from padiff_graph.frameworks.inputs import InputPair
    from padiff_graph.knowledge.conversions import Conversion, ConversionRegistry, LayerSide
    from padiff_graph.knowledge.registry import DEFAULT_REGISTRY, add_special_init, register_conversion
    from padiff_graph.layermap import LayerMap, LayerPair
    from padiff_graph.match.options import MatchOptions
    from padiff_graph.offline.compare import compare_dumps
    from padiff_graph.offline.recording import Recording
    from padiff_graph.offline.writer import dump
    from padiff_graph.run.results import DiffReport, Divergence

#: public name -> the module that defines it (the imports above, for type checkers)
_HOMES = {
    **dict.fromkeys(("assign_weights", "diff", "export_tree", "preflight", "suggest_map"), "padiff_graph.api"),
    "convert_checkpoint": "padiff_graph.assign.checkpoints",
    **dict.fromkeys(("Code", "Finding"), "padiff_graph.core.findings"),
    **dict.fromkeys(("Severity", "TensorKind"), "padiff_graph.core.records"),
    **dict.fromkeys(("TensorPair", "Transform"), "padiff_graph.core.transforms"),
    **dict.fromkeys(
        (
            "AssignError",
            "DumpError",
            "FactoryError",
            "InputError",
            "LayerMapError",
            "ModelRunError",
            "OutputError",
            "PadiffGraphError",
            "UnsupportedModelError",
        ),
        "padiff_graph.errors",
    ),
    "InputPair": "padiff_graph.frameworks.inputs",
    **dict.fromkeys(("Conversion", "ConversionRegistry", "LayerSide"), "padiff_graph.knowledge.conversions"),
    **dict.fromkeys(("DEFAULT_REGISTRY", "add_special_init", "register_conversion"), "padiff_graph.knowledge.registry"),
    **dict.fromkeys(("LayerMap", "LayerPair"), "padiff_graph.layermap"),
    "MatchOptions": "padiff_graph.match.options",
    "compare_dumps": "padiff_graph.offline.compare",
    "Recording": "padiff_graph.offline.recording",
    "dump": "padiff_graph.offline.writer",
    **dict.fromkeys(("DiffReport", "Divergence"), "padiff_graph.run.results"),
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use and keep it (PEP 562)."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


__all__ = [
    "DEFAULT_REGISTRY",
    "AssignError",
    "Code",
    "Conversion",
    "ConversionRegistry",
    "DiffReport",
    "Divergence",
    "DumpError",
    "FactoryError",
    "Finding",
    "InputError",
    "InputPair",
    "LayerMap",
    "LayerMapError",
    "LayerPair",
    "LayerSide",
    "MatchOptions",
    "ModelRunError",
    "OutputError",
    "PadiffGraphError",
    "Recording",
    "Severity",
    "TensorKind",
    "TensorPair",
    "Transform",
    "UnsupportedModelError",
    "add_special_init",
    "assign_weights",
    "compare_dumps",
    "convert_checkpoint",
    "diff",
    "dump",
    "export_tree",
    "preflight",
    "register_conversion",
    "suggest_map",
]
