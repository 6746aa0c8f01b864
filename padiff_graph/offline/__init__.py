"""Offline mode: record each model on its own (``dump``, :class:`Recording`), compare the dumps later.

``format`` names the files and records, ``writer`` drives a model through its
steps, ``recording`` records inside your own training loop, ``integrity``
holds the checksums a dump carries and the checks of its JSON files,
``reader`` opens a dump and checks it, ``shards`` merges the ranks of a
sharded run by the placements recorded with them, ``compare`` compares two
dumps through a layer map with the live diff's verdict code (:mod:`padiff_graph.run`).
"""
