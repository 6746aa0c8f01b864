"""PaDiff's ``padiff`` package, module by module, on :mod:`padiff_graph.compat`."""

from padiff_graph.compat import *  # noqa: F403
from padiff_graph.compat import __all__ as __all__
