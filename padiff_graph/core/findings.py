"""Findings: what a check found, with a stable code, both layer paths and what to do.

Every stage that reports something about a pair of models (pre-flight checks,
the diff's random-op watch, the weight copy) speaks in these records; the
codes are documented in ``docs/findings.md`` and never renamed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from padiff_graph.core.records import Severity


class Code(str, Enum):
    """Stable finding codes (``docs/findings.md``)."""

    ORDER_MISMATCH = "order-mismatch"
    KIND_MISMATCH = "kind-mismatch"
    SHAPE_MISMATCH = "shape-mismatch"
    UNMATCHED = "unmatched"
    NEEDS_SPECIAL_INIT = "needs-special-init"
    WRAP_LAYER = "wrap-layer"
    RANDOM_OP = "random-op"
    DTYPE_MISMATCH = "dtype-mismatch"
    CONFIG_MISMATCH = "config-mismatch"
    AMBIGUOUS_MATCH = "ambiguous-match"
    AMBIGUOUS_TRANSFORM = "ambiguous-transform"
    TIED_WEIGHTS = "tied-weights"
    CLASS_MISMATCH = "class-mismatch"
    INDEX_OFFSET = "index-offset"
    AMP_INACTIVE = "amp-inactive"
    AMBIGUOUS_DIVERGENCE = "ambiguous-divergence"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Finding:
    """One pre-flight finding; ``base``/``raw`` are layer paths (``None`` if one-sided)."""

    code: Code
    severity: Severity
    base: str | None
    raw: str | None
    message: str
    hint: str

    def as_dict(self) -> dict[str, str | None]:
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "base": self.base,
            "raw": self.raw,
            "message": self.message,
            "hint": self.hint,
        }


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(finding.severity is Severity.ERROR for finding in findings)
