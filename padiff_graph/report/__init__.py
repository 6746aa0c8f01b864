"""Reports: records in, text out. ``terminal`` renders with rich; ``document``
builds the JSON document CI reads. Nothing here runs a model."""
