"""Pre-flight checks: what would go wrong, found from the two trees and the map before any weight is copied.

``rules`` holds one check per finding code (``docs/findings.md``); ``stub``
writes the conversion a user fills in where no registered one pairs a layer's
tensors.
"""

from padiff_graph.checks.rules import preflight_trees

__all__ = ["preflight_trees"]
