"""Never a silent wrong copy: every copy path refuses a pair only definition order decides.

The models are ``examples/reordered_norms.py``: two same-shaped BatchNorms that
only the forward tells apart. With inputs each path copies them right; without,
each stops with an error naming the pair and how to settle it, unless the
guess is accepted explicitly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import torch
from click.testing import CliRunner

from padiff_graph import AssignError, assign_weights
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
    assign_weights(base, raw, inputs=inputs)
    assert outputs_gap(base, raw) < 1e-5


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
