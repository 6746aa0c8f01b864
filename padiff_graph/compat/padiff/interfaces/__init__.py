"""``padiff.interfaces``: the functions ``padiff`` exports."""

from padiff_graph.compat import *  # noqa: F403
from padiff_graph.compat import __all__ as __all__
