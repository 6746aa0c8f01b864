"""``padiff.dump_tools``: a proxy's dump calls as functions (``dump_grads(proxy, path)``), and the dump root."""

from padiff_graph.compat.proxy import (
    dump_grads,
    dump_params,
    dump_report,
    dump_weights,
    get_dump_root_path,
    set_dump_root_path,
)

__all__ = ["dump_grads", "dump_params", "dump_report", "dump_weights", "get_dump_root_path", "set_dump_root_path"]
