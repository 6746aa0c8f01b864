"""The layer map: the matcher's output and a file people edit (``docs/layer-map.md``).

``layer_map`` holds :class:`LayerMap`, ``pairs`` one :class:`LayerPair`,
``yaml_io`` reads the YAML file (line-numbered errors, no code runs),
``validation`` checks a map against the models' trees, and ``padiff_code``
writes it as PaDiff ``set_layer_map`` code with the special inits it needs.
"""

from padiff_graph.layermap.layer_map import LayerMap
from padiff_graph.layermap.pairs import LayerPair

__all__ = ["LayerMap", "LayerPair"]
