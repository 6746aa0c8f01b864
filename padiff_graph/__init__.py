"""padiff_graph: why do a PaddlePaddle model and a PyTorch model disagree?

Export both models as trees, match their layers structurally, check what an
order-based copy would break, copy weights through the map and name the
first diverging layer. Importing this package loads neither torch nor
paddle; each framework is imported when a model of it is first seen.

Example::

    import padiff_graph as pg

    layer_map = pg.suggest_map(torch_model, paddle_model, {"x": x})
    layer_map.save("map.yaml")
    findings = pg.preflight(torch_model, paddle_model, layer_map)
    report = pg.diff(torch_model, paddle_model, {"x": x}, layer_map)
    print(report.ok, report.first_divergence)
"""

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
from padiff_graph.match import MatchOptions
from padiff_graph.offline.compare import compare_dumps
from padiff_graph.offline.recording import Recording
from padiff_graph.offline.writer import dump
from padiff_graph.run.results import DiffReport, Divergence

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
