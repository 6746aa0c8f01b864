"""Records every stage shares, importing no stage: layers and tensors, the tree, transforms, findings, files.

``records`` (layer and tensor records), ``tree`` (the networkx model tree),
``transforms`` (how one tensor becomes another), ``findings`` (codes and
findings), ``atomic`` (files written whole or not at all), ``tensorfile``
(stored tensor bytes, safetensors), ``progress`` (the progress hook) and
``runtime`` (process helpers).
"""
