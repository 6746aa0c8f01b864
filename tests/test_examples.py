"""Every pair of the zoo (each example's ``raw()`` and ``variant()``): expected map,
expected findings, and the diff outcome, in both directions.

Checks that take the matcher's map pass the example's inputs, as
``padiff-graph check`` does with these factories; examples too large to run
forward in the default suite (``FORWARD_IN_TESTS = False``) are only mapped,
statically, unless pytest runs with ``--run-slow``.
"""

from __future__ import annotations

import pytest
from conftest import CASES, Case, expected_layer_map, link_key

from padiff_graph import AssignError, assign_weights, diff, export_tree, preflight, suggest_map
from padiff_graph.core.transforms import TensorPair
from padiff_graph.core.tree import is_within

#: Checks the pipeline does not pass yet, by (case id, check), with the analysis of
#: why: each runs as ``xfail(strict=True)``, so it fails the day it passes and its
#: entry goes.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


def cases(*checks: str) -> list[object]:
    """Parameters for one test: every case (times every check), known gaps marked."""
    params = []
    for case in CASES:
        for check in checks:
            reason = KNOWN_GAPS.get((case.id, check))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            values = (case, check) if len(checks) > 1 else (case,)
            params.append(pytest.param(*values, marks=marks, id=f"{case.id}-{check}" if len(checks) > 1 else case.id))
    return params


def needs_forward(request: pytest.FixtureRequest, case: Case) -> None:
    if not case.forward_in_tests and not request.config.getoption("--run-slow"):
        pytest.skip(f"{case.name} is only mapped in the default suite (too large to run); use --run-slow")


def _on_path(path: str, ancestors: set[str]) -> bool:
    """``path`` is one of ``ancestors`` or lies below one."""
    return any(is_within(path, a) for a in ancestors)


@pytest.mark.parametrize(("case", "check"), cases("pairs-static", "pairs-traced"))
def test_suggest_map_finds_expected_pairs(case: Case, check: str, request: pytest.FixtureRequest) -> None:
    """Every tensor-owning layer gets its partner, with no ambiguity left.

    Without inputs, layers listed in ``EXPECTED_STATIC_AMBIGUOUS`` (told apart
    by definition order alone) may pair either way, but only if the map flags
    the ambiguity on their path; nothing else may be flagged.
    """
    traced = check == "pairs-traced"
    if traced:
        needs_forward(request, case)
    base, raw, inputs = case.models()
    layer_map = suggest_map(base, raw, inputs if traced else None)
    expected = case.expected("PAIRS")
    unsure = set() if traced else set(case.expected("STATIC_AMBIGUOUS", ()))
    flagged = {pair.base for pair in layer_map.pairs if pair.candidates}
    excused = {path for path in unsure if _on_path(path, flagged)}
    got = {pair.base: pair.raw for pair in layer_map.pairs}
    assert {b: got.get(b) for b in expected if b not in excused} == {
        b: r for b, r in expected.items() if b not in excused
    }
    assert {b for b in flagged if not any(_on_path(u, {b}) for u in unsure)} == set()
    sure = lambda tensor: not _on_path(tensor, excused)  # noqa: E731  (an excused pair's tensors may go either way)
    found = {(t.base, t.raw) for t in layer_map.tensor_pairs()}
    assert {b: r for b, r in case.expected("TENSORS", {}).items() if sure(b) and (b, r) not in found} == {}
    refused = not traced and case.expected("STATIC_REFUSED")  # layouts only a probe can tell stay guessed, reported
    links = {link_key(TensorPair.parse(text)) for text in case.expected("TENSOR_LINKS", []) if not refused}
    assert {link for link in links if sure(link[0])} - {link_key(t) for t in layer_map.tensor_pairs()} == set()
    assert set(case.expected("UNMATCHED_BASE", [])) - set(layer_map.unmatched_base) == set()


@pytest.mark.parametrize("case", cases("preflight"))
def test_preflight_reports_what_breaks_an_order_based_copy(case: Case) -> None:
    base, raw, inputs = case.models()
    findings = preflight(base, raw, inputs=inputs if case.forward_in_tests else None)
    assert {finding.code.value for finding in findings} == case.expected("FINDINGS")
    pairs = {"": "", **case.expected("PAIRS")}
    one_sided = set(case.expected("UNMATCHED_BASE", []))
    for finding in findings:
        assert finding.hint and finding.message
        assert finding.base is not None or finding.raw is not None
        # where: a finding about a pair names the expected pair; a one-sided one, a layer the other side lacks
        if finding.base in pairs and finding.raw is not None:
            assert pairs[finding.base] == finding.raw, finding
        elif finding.base is not None and finding.raw is None and finding.code.value == "unmatched":
            assert _on_path(finding.base, one_sided), finding
        elif finding.raw is not None and finding.base is None and finding.code.value == "unmatched":
            assert finding.raw not in pairs.values(), finding


@pytest.mark.parametrize("case", cases("expected-map"))
def test_expected_map_aligns(case: Case, request: pytest.FixtureRequest) -> None:
    """The two ports compute the same thing: the hand-derived map, copied and run, aligns.

    Independent of the matcher, so a matcher gap never hides a wrong port.
    """
    needs_forward(request, case)
    base, raw, inputs = case.models()
    layer_map = expected_layer_map(case, export_tree(base), export_tree(raw))
    report = diff(base, raw, inputs, layer_map)
    # a planted fault shows at the first tensor layer after it: parameter-less layers are not in this map
    assert report.ok is (case.expected("DIVERGENCE") is None), report.first_divergence


@pytest.mark.parametrize("case", cases("diff"))
def test_diff_after_assign(case: Case, request: pytest.FixtureRequest) -> None:
    needs_forward(request, case)
    base, raw, inputs = case.models()
    report = diff(base, raw, inputs)
    expected = case.expected("DIVERGENCE")
    if expected is None:
        assert report.ok, report.first_divergence
    else:
        assert tuple(report.first_divergence) == expected


@pytest.mark.parametrize("case", cases("reverse"))
def test_reverse_direction_aligns(case: Case, request: pytest.FixtureRequest) -> None:
    """Weights flow raw -> base just as well: every conversion is direction-free."""
    if case.expected("DIVERGENCE") or case.expected("UNMATCHED_BASE"):
        pytest.skip("a planted fault or a one-sided layer is not symmetric")
    needs_forward(request, case)
    base, raw, inputs = case.models()
    layer_map = suggest_map(raw, base, inputs)
    assign_weights(raw, base, layer_map, inputs)
    report = diff(raw, base, inputs, layer_map, assign=False)
    assert report.ok, report.first_divergence


@pytest.mark.parametrize("case", cases("static-copy"))
def test_a_copy_without_inputs_is_exact_or_refused(case: Case, request: pytest.FixtureRequest) -> None:
    """Never a silent wrong copy: without inputs the copy either stops at a guess or aligns the models."""
    needs_forward(request, case)
    base, raw, inputs = case.models()
    try:
        assign_weights(base, raw)
    except AssignError as error:
        assert "ambiguous-" in str(error) or "Missing conversion" in str(error)  # a guess, or a fused layout
        assert case.expected("STATIC_AMBIGUOUS") or case.expected("STATIC_REFUSED"), str(error)
        return
    assert not case.expected("STATIC_REFUSED")
    report = diff(base, raw, inputs, assign=False, backward=False)
    assert report.ok is (case.expected("DIVERGENCE") is None), report.first_divergence
