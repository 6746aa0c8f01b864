"""Reports: records in, text out; nothing here runs a model.

``layout`` decides what every report shows (layer states, collapsed runs,
aligned rows); ``terminal`` renders it with rich, ``html`` as one
self-contained page (jinja2 templates in ``templates/``), ``document`` as the
JSON document CI reads (schema in ``schema.json``); ``progress`` is the
terminal progress bar behind :mod:`padiff_graph.core.progress`.
"""
