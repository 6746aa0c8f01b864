"""PaDiff's documented API as a drop-in, on padiff_graph's matcher, weight copy and diff.

Switch a PaDiff script by changing one import::

    from padiff_graph.compat import *        # instead of: from padiff import *

    inputs = ({"x": torch.as_tensor(x)}, {"x": paddle.to_tensor(x)})
    auto_diff(torch_module, paddle_layer, inputs, atol=1e-4)

Every function takes and returns what PaDiff's documentation describes and
prints its ``[AutoDiff]`` lines, but layers are paired by structure, not
definition order, so reordered, renamed, wrapped and kind-mismatched models
copy correctly; the numbers come from :func:`padiff_graph.diff` and
:func:`padiff_graph.compare_dumps`. :func:`last_report` returns the native
:class:`padiff_graph.DiffReport` behind the last ``auto_diff`` or check.

Importing this module loads neither torch nor paddle and patches nothing;
``PADIFF_API_CHECK=ON`` turns on the op-level comparison of ``auto_diff``
runs, installed only while they run. :mod:`padiff_graph.compat.padiff` is
PaDiff's package layout (``padiff.checker``, ``padiff.dump_tools``...) for a
two-line ``padiff`` package. ``docs/migrating-from-padiff.md`` lists each call
and what differs on purpose.
"""

from padiff_graph.compat.autodiff import assign_weight, auto_diff
from padiff_graph.compat.checks import check_dataloader, check_grads, check_params, check_report, check_weights
from padiff_graph.compat.messages import last_report as last_report
from padiff_graph.compat.proxy import ProxyModel as ProxyModel
from padiff_graph.compat.proxy import create_model, get_dump_root_path, set_dump_root_path
from padiff_graph.knowledge.registry import add_special_init
from padiff_graph.layermap import LayerMap as LayerMap  # imported by PaDiff scripts; layer maps are native here

__all__ = [
    "add_special_init",
    "assign_weight",
    "auto_diff",
    "check_dataloader",
    "check_grads",
    "check_params",
    "check_report",
    "check_weights",
    "create_model",
    "get_dump_root_path",
    "set_dump_root_path",
]
