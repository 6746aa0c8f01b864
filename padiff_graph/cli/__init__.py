"""The ``padiff-graph`` command: the click app, model loading, the progress bar and the demo."""

from padiff_graph.cli.app import main

__all__ = ["main"]
