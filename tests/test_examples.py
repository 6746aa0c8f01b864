"""Every example pair: expected map, expected findings, and the diff outcome, in both directions."""

import pytest

from padiff_graph import assign_weights, diff, preflight, suggest_map


def tensor_owning_pairs(layer_map, expected):
    got = {pair.base: pair.raw for pair in layer_map.pairs}
    return {base: got.get(base) for base in expected}


@pytest.mark.parametrize("traced", [False, True], ids=["static", "traced"])
def test_suggest_map_finds_expected_pairs(example, traced) -> None:
    base, inputs = example.base()
    raw, _ = example.raw()
    layer_map = suggest_map(base, raw, inputs if traced else None)
    assert tensor_owning_pairs(layer_map, example.EXPECTED_PAIRS) == example.EXPECTED_PAIRS
    assert not [pair for pair in layer_map.pairs if pair.candidates]
    for base_tensor, raw_tensor in getattr(example, "EXPECTED_TENSORS", {}).items():
        assert (base_tensor, raw_tensor) in [(t.base, t.raw) for t in layer_map.tensor_pairs()]
    for path in getattr(example, "EXPECTED_UNMATCHED_BASE", []):
        assert path in layer_map.unmatched_base


def test_preflight_reports_what_breaks_an_order_based_copy(example) -> None:
    base, _ = example.base()
    raw, _ = example.raw()
    findings = preflight(base, raw)
    assert {finding.code.value for finding in findings} == example.EXPECTED_FINDINGS
    for finding in findings:
        assert finding.hint and finding.message
        assert finding.base is not None or finding.raw is not None


def test_diff_after_assign(example) -> None:
    base, inputs = example.base()
    raw, _ = example.raw()
    report = diff(base, raw, inputs)
    expected = getattr(example, "EXPECTED_DIVERGENCE", None)
    if expected is None:
        assert report.ok, report.first_divergence
    else:
        assert tuple(report.first_divergence) == expected


def test_reverse_direction_aligns(example) -> None:
    """Weights flow raw -> base just as well: every conversion is direction-free."""
    if getattr(example, "EXPECTED_DIVERGENCE", None) or getattr(example, "EXPECTED_UNMATCHED_BASE", None):
        pytest.skip("a planted fault or a one-sided layer is not symmetric")
    base, inputs = example.base()
    raw, _ = example.raw()
    assign_weights(raw, base)
    report = diff(raw, base, inputs, assign=False)
    assert report.ok, report.first_divergence
