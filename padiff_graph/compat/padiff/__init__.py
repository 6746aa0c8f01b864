"""PaDiff's ``padiff`` package on :mod:`padiff_graph.compat`, submodule for submodule.

A two-line ``padiff`` package makes a PaDiff script, or PaDiff's own tests,
run unchanged (``scripts/peer_test.py`` writes it)::

    from padiff_graph.compat.padiff import *
    from padiff_graph.compat.padiff import __path__

The second line lets ``padiff.checker``, ``padiff.dump_tools``,
``padiff.interfaces`` and ``padiff.interfaces.diff_utils`` be imported as
PaDiff's users import them; each re-exports the compat functions of the same
names. ``LayerMap`` comes along for the old tutorial line ``from padiff import LayerMap``.
"""

from padiff_graph.compat import *  # noqa: F403
from padiff_graph.compat import LayerMap as LayerMap
from padiff_graph.compat import __all__ as _compat_all

__all__ = [*_compat_all, "LayerMap"]
