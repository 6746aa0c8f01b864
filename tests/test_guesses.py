"""Never a silent wrong copy: every copy path refuses a pair only definition order decides.

The models are ``examples/reordered_norms.py``: two same-shaped BatchNorms that
only the forward tells apart. With inputs each path copies them right; without,
each stops with an error naming the pair and how to settle it, unless the
guess is accepted explicitly.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import paddle
import pytest
import torch
from click.testing import CliRunner

from padiff_graph import AssignError, LayerMap, assign_weights, suggest_map
from padiff_graph.assign.checkpoints import convert_checkpoint
from padiff_graph.cli import main
from padiff_graph.compat import assign_weight, create_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))
import reordered_norms as example  # noqa: E402

X = example.inputs()["x"]


def outputs_gap(base: torch.nn.Module, raw: paddle.nn.Layer) -> float:
    with torch.no_grad():
        expected = base(torch.from_numpy(X)).numpy()
    return float(np.abs(raw(paddle.to_tensor(X)).numpy() - expected).max())


def raw_state(raw: paddle.nn.Layer) -> dict[str, np.ndarray]:
    return {name: value.numpy().copy() for name, value in raw.state_dict().items()}


def test_api_refuses_a_guess_without_inputs_and_copies_right_with_them() -> None:
    (base, inputs), (raw, _) = example.base(), example.raw()
    before = raw_state(raw)
    with pytest.raises(AssignError, match=r"ambiguous-match.*pass inputs.*accept_guesses=True"):
        assign_weights(base, raw)
    assert all(np.array_equal(value, before[name]) for name, value in raw_state(raw).items())  # nothing written
    report = assign_weights(base, raw, inputs=inputs)
    assert outputs_gap(base, raw) < 1e-5
    assert report.outputs is not None and report.outputs.agree and report.outputs.max_abs_diff < 1e-5


def test_api_copies_the_guess_only_when_told_to() -> None:
    (base, _), (raw, _) = example.base(), example.raw()
    assign_weights(base, raw, accept_guesses=True)
    assert outputs_gap(base, raw) > 1e-2  # definition order swapped the statistics, as the finding said it might


def test_convert_checkpoint_uses_inputs(tmp_path: Path) -> None:
    (base, inputs), (raw, _) = example.base(), example.raw()
    torch.save(base.state_dict(), tmp_path / "base.pt")
    with pytest.raises(AssignError, match="ambiguous-match"):
        convert_checkpoint(base, raw, tmp_path / "base.pt", tmp_path / "raw.pdparams")
    assert not (tmp_path / "raw.pdparams").exists()
    convert_checkpoint(base, raw, tmp_path / "base.pt", tmp_path / "raw.pdparams", inputs=inputs)
    raw.set_state_dict(paddle.load(str(tmp_path / "raw.pdparams")))
    assert outputs_gap(base, raw) < 1e-5


def test_cli_convert_weights_uses_the_factories_inputs_and_refuses_without(tmp_path: Path) -> None:
    base, _ = example.base()
    torch.save(base.state_dict(), tmp_path / "base.pt")
    bare = tmp_path / "bare.py"  # the same models, factories without inputs
    bare.write_text(
        f"import sys\nsys.path.insert(0, {str(EXAMPLES)!r})\nimport reordered_norms as example\n"
        "def base():\n    return example.base()[0]\n\ndef raw():\n    return example.raw()[0]\n"
    )
    source = str(EXAMPLES / "reordered_norms.py")
    convert = ["convert-weights", "--checkpoint", str(tmp_path / "base.pt"), "-o"]

    refused = CliRunner().invoke(main, [*convert, str(tmp_path / "a.pdparams"), f"{bare}:base", f"{bare}:raw"])
    assert refused.exit_code == 2 and "ambiguous-match" in refused.output
    assert not (tmp_path / "a.pdparams").exists()

    guessed = [*convert, str(tmp_path / "b.pdparams"), f"{bare}:base", f"{bare}:raw", "--accept-guesses"]
    assert CliRunner().invoke(main, guessed).exit_code == 0

    traced = CliRunner().invoke(main, [*convert, str(tmp_path / "c.pdparams"), f"{source}:base", f"{source}:raw"])
    assert traced.exit_code == 0, traced.output
    raw, _ = example.raw()
    raw.set_state_dict(paddle.load(str(tmp_path / "c.pdparams")))
    assert outputs_gap(base, raw) < 1e-5


def test_compat_assign_weight_refuses_the_guess_and_takes_set_layer_map(capsys: pytest.CaptureFixture[str]) -> None:
    (base, _), (raw, _) = example.base(), example.raw()
    assert assign_weight(base, raw) is False
    printed = capsys.readouterr().out
    assert "Assign weight Failed" in printed and "ambiguous-match" in printed and "success" not in printed
    base_proxy, raw_proxy = create_model(base), create_model(raw)
    base_proxy.set_layer_map([base.bn_a, base.bn_b])
    raw_proxy.set_layer_map([raw.norm1, raw.norm2])
    assert assign_weight(base_proxy, raw_proxy) is True
    assert outputs_gap(base, raw) < 1e-5


def test_index_offset_is_found_from_structure_and_only_when_clear() -> None:
    import index_offset

    from padiff_graph import export_tree
    from padiff_graph.match.features import TreeFeatures
    from padiff_graph.match.offsets import IndexOffset, index_offsets, renumber, renumbering

    base, raw = TreeFeatures(export_tree(index_offset.base()[0])), TreeFeatures(export_tree(index_offset.raw()[0]))
    offsets = index_offsets(base, raw)
    assert offsets == [IndexOffset("features", "blocks", 1, len(index_offset.WIDTHS))]
    assert renumber("blocks.4.norm", renumbering(offsets, raw)) == "blocks.5.norm"
    assert index_offsets(base, base) == []  # equal numbering: nothing to renumber


def _offset_by_definition(base: dict[int, int], raw: dict[int, int]) -> tuple[int, int] | None:
    """The offset rule stated offset by offset: it lines up the most blocks, enough of them, and alone."""
    from padiff_graph.match.offsets import MIN_OFFSET_AGREEMENT, MIN_OFFSET_RUN

    scores = {}
    for offset in range(min(base) - max(raw), max(base) - min(raw) + 1):
        overlap = [index for index in base if index - offset in raw]
        aligned = sum(base[index] == raw[index - offset] for index in overlap)
        if aligned >= MIN_OFFSET_RUN and aligned >= MIN_OFFSET_AGREEMENT * len(overlap):
            scores[offset] = aligned
    best = [(offset, aligned) for offset, aligned in scores.items() if aligned == max(scores.values())]
    return best[0] if len(best) == 1 else None


@pytest.mark.parametrize("pairs_at_once", [1 << 20, 7])
def test_index_offset_counts_offsets_as_defined(monkeypatch: pytest.MonkeyPatch, pairs_at_once: int) -> None:
    """Counted for all offsets at once (numpy; 20k-layer MoE matching 2.9 -> 1.3 s): the same answers as offset
    by offset, also when the pairs are counted in several passes."""
    from padiff_graph.match import offsets

    monkeypatch.setattr(offsets, "_PAIRS_AT_ONCE", pairs_at_once)
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(400):
        kinds = [int(h) for h in rng.integers(-(2**62), 2**62, size=int(rng.integers(1, 4)))]
        base = {5 + i: kinds[int(rng.integers(len(kinds)))] for i in range(int(rng.integers(1, 20)))}
        raw = {int(i): kinds[int(rng.integers(len(kinds)))] for i in rng.choice(30, int(rng.integers(1, 20)), False)}
        expected = _offset_by_definition(base, raw)
        assert offsets._best_offset(base, raw) == expected, (base, raw)
        found += expected is not None
    assert found > 50  # the cases exercise offsets that are believed, not only refusals
    assert offsets._best_offset({i: i * 7 for i in range(1, 9)}, {i: (i + 1) * 7 for i in range(8)}) == (1, 8)
    assert offsets._best_offset({0: 1, 1: 1, 2: 1, 10: 1, 11: 1, 12: 1}, {0: 1, 1: 1, 2: 1}) is None  # 0 and 10 tie


def test_index_offset_alignment_is_reported_not_taken_for_an_order_mismatch() -> None:
    import index_offset

    from padiff_graph import preflight

    (base, _), (raw, _) = index_offset.base(), index_offset.raw()
    findings = preflight(base, raw)
    offsets = [finding for finding in findings if finding.code.value == "index-offset"]
    assert [(f.base, f.raw, f.severity.value) for f in offsets] == [("features", "blocks", "info")]
    assert "numbers its blocks 1 lower" in offsets[0].message and "'features.5' with 'blocks.4'" in offsets[0].message
    assert not [finding for finding in findings if finding.code.value == "order-mismatch"]


def swapped_map(base: torch.nn.Module, raw: paddle.nn.Layer, inputs: dict[str, np.ndarray]) -> LayerMap:
    """The right map with the two norms' partners swapped, as a user might write it by mistake."""
    layer_map = suggest_map(base, raw, inputs)
    swap = {"norm1": "norm2", "norm2": "norm1"}
    return layer_map.with_pairs([replace(pair, raw=swap.get(pair.raw, pair.raw)) for pair in layer_map.pairs])


def test_verification_after_the_copy_catches_a_wrong_map(tmp_path: Path) -> None:
    (base, inputs), (raw, _) = example.base(), example.raw()
    layer_map = swapped_map(base, raw, inputs)
    report = assign_weights(base, raw, layer_map, inputs)
    assert report.outputs is not None and not report.outputs.agree and report.outputs.max_abs_diff > 1e-2
    torch.save(base.state_dict(), tmp_path / "base.pt")
    layer_map.save(tmp_path / "wrong.yaml")
    source = str(EXAMPLES / "reordered_norms.py")
    files = ["--map", str(tmp_path / "wrong.yaml"), "--checkpoint", str(tmp_path / "base.pt")]
    result = CliRunner().invoke(
        main, ["convert-weights", f"{source}:base", f"{source}:raw", *files, "-o", str(tmp_path / "raw.pdparams")]
    )
    assert result.exit_code == 1 and "outputs DIFFER after the copy" in result.output


def test_verifying_leaves_training_models_as_they_were() -> None:
    """The check after the copy runs in eval mode: BatchNorm statistics in training mode are not updated."""
    (base, inputs), (raw, _) = example.base(), example.raw()
    base.train()
    raw.train()
    before = base.bn_a.running_mean.clone()
    report = assign_weights(base, raw, inputs=inputs)
    assert report.outputs is not None and report.outputs.agree
    assert torch.equal(base.bn_a.running_mean, before)
    np.testing.assert_array_equal(raw.norm1._mean.numpy(), before.numpy())
    assert base.training and raw.training


def test_fused_against_split_without_inputs_names_the_candidate_cuts() -> None:
    import fused_projections

    from padiff_graph import preflight

    (base, _), (raw, _) = fused_projections.base(), fused_projections.raw()
    findings = {finding.code.value: finding for finding in preflight(base, raw)}
    assert "needs-special-init" in findings
    assert "qkv_proj.weight[:, 0:16]" in findings["ambiguous-transform"].message
    with pytest.raises(AssignError, match="Missing conversion"):
        assign_weights(base, raw, accept_guesses=True)  # accepting a guess does not make a cut
