"""The diff compares a fused layer with its parts joined, and containers whose layouts differ.

A fused ``qkv_proj`` / ``gate_up_fused_proj`` (paddleformers) against split
projections (HF transformers), in both directions; a squeeze-excitation block of
linears against one of 1x1 convolutions; a peft LoRA wrapper against one
adapter-holding layer; a base-only head that is never called. Each correct port
diffs clean with those layers compared, and a fault planted in one of them is
named there.
"""

import io

import paddle
import pytest
import torch
from conftest import load_example
from rich.console import Console

import padiff_graph as pg
from padiff_graph.report.terminal import print_diff

conv1x1_linear, extra_layer, fused_projections, lora_linear = map(
    load_example, ["conv1x1_linear", "extra_layer", "fused_projections", "lora_linear"]
)

QKV = ("layers.1.attn.{q_proj,k_proj,v_proj}", "layers.1.attn.qkv_proj")
GATE_UP = ("layers.0.mlp.{gate_proj,up_proj}", "layers.0.mlp.gate_up_fused_proj")


class TransposedLinear(torch.nn.Linear):
    """A port bug: the square weight used as ``[in, out]``."""

    def forward(self, x):
        return torch.nn.functional.linear(x, self.weight.T, self.bias)


class ShiftedLinear(torch.nn.Linear):
    """A port bug: a bias where the layer has none."""

    def forward(self, x):
        return super().forward(x) + 0.5


def _forward_pairs(report) -> set[tuple[str, str]]:
    return {(c.base, c.raw) for c in report.comparisons if c.stage == "forward"}


def _fused_models():
    (base, inputs), (raw, _) = fused_projections.base(), fused_projections.raw()
    return base, raw, inputs


@pytest.mark.parametrize("direction", ["split->fused", "fused->split"])
def test_a_fused_layer_is_compared_with_its_parts_joined(direction: str) -> None:
    base, raw, inputs = _fused_models()
    if direction == "fused->split":
        base, raw = raw, base
    report = pg.diff(base, raw, inputs)
    assert report.ok, report.first_divergence
    assert report.not_compared == []
    fused = {(f"layers.{i}.attn.{{q_proj,k_proj,v_proj}}", f"layers.{i}.attn.qkv_proj") for i in range(2)} | {
        (f"layers.{i}.mlp.{{gate_proj,up_proj}}", f"layers.{i}.mlp.gate_up_fused_proj") for i in range(2)
    }
    if direction == "fused->split":
        fused = {(fused_side, split) for split, fused_side in fused}
    containers = {(f"layers.{i}{inner}", f"layers.{i}{inner}") for i in range(2) for inner in ("", ".attn", ".mlp")}
    assert fused | containers <= _forward_pairs(report)
    stages = {c.stage for c in report.comparisons if (c.base, c.raw) in fused}
    split_side = "q_proj" if direction == "split->fused" else "qkv_proj"
    assert {"forward", "backward", f"grad:{split_side}.weight", f"grad:{split_side}.bias"} <= stages
    assert not any(c.stage.startswith("grad:") for c in report.comparisons if c.base == "")  # not under the root


@pytest.mark.parametrize(
    ("plant", "where"),
    [
        (lambda model: setattr(model.layers[1].attn.k_proj, "__class__", TransposedLinear), QKV),
        (lambda model: setattr(model.layers[0].mlp.up_proj, "__class__", ShiftedLinear), GATE_UP),
    ],
    ids=["transposed-k", "bias-in-up"],
)
def test_a_fault_in_one_part_of_the_split_base_is_named_at_the_fused_pair(plant, where) -> None:
    base, raw, inputs = _fused_models()
    layer_map = pg.suggest_map(base, raw, inputs)  # the map of the correct port, as a user keeps it
    plant(base)
    report = pg.diff(base, raw, inputs, layer_map)
    assert tuple(report.first_divergence) == (*where, "forward")
    assert [tuple(d) for d in report.divergences] == [(*where, "forward")]  # its containers are not blamed too


@pytest.mark.parametrize("mode", ["strict", "mean"])
def test_a_fault_in_one_part_of_the_split_raw_is_named_at_the_fused_pair(mode: str) -> None:
    torch_model, paddle_model, inputs = _fused_models()
    layer_map = pg.suggest_map(paddle_model, torch_model, inputs)
    torch_model.layers[1].attn.k_proj.__class__ = TransposedLinear
    report = pg.diff(paddle_model, torch_model, inputs, layer_map, mode=mode)
    assert tuple(report.first_divergence) == (QKV[1], QKV[0], "forward")  # the fused base named first


def test_a_single_step_run_compares_the_fused_pairs_and_feeds_their_inputs() -> None:
    base, raw, inputs = _fused_models()
    report = pg.diff(base, raw, inputs, single_step=True)
    layers = [c for c in report.comparisons if c.kind in ("input", "forward", "backward")]
    assert all(c.ok for c in layers), [c for c in layers if not c.ok]
    assert {c.kind for c in layers if (c.base, c.raw) == QKV} == {"input", "forward", "backward"}


def test_a_squeeze_excitation_block_of_1x1_convolutions_is_compared_and_its_own_fault_named_there() -> None:
    (base, inputs), (raw, _) = conv1x1_linear.base(), conv1x1_linear.raw()
    report = pg.diff(base, raw, inputs)
    assert report.ok and report.not_compared == [], report.first_divergence
    assert {("se", "se"), ("mix", "mix"), ("se.fc1", "se.fc1"), ("se.fc2", "se.fc2")} <= _forward_pairs(report)

    layer_map = report.layer_map
    gate = paddle.nn.functional.hardsigmoid  # a port bug: the gate's activation, between the layers
    se = raw.se
    se.forward = lambda x: x * gate(se.fc2(paddle.nn.functional.relu(se.fc1(x.mean([2, 3])))))[:, :, None, None]
    report = pg.diff(base, raw, inputs, layer_map)
    assert tuple(report.first_divergence) == ("se", "se", "forward")


def test_a_lora_wrapper_is_compared_with_the_adapter_holding_layer_and_a_scaling_fault_named_there() -> None:
    (base, inputs), (raw, _) = lora_linear.base(), lora_linear.raw()
    report = pg.diff(base, raw, inputs)
    assert report.ok and report.not_compared == [], report.first_divergence
    assert {("", ""), ("q_proj", "q_proj"), ("v_proj", "v_proj"), ("o_proj", "o_proj")} == _forward_pairs(report)

    layer_map = report.layer_map
    raw.v_proj.scaling = lora_linear.ALPHA  # a port bug: alpha where peft scales by alpha / rank
    report = pg.diff(base, raw, inputs, layer_map)
    assert tuple(report.first_divergence) == ("v_proj", "v_proj", "forward")


def test_a_one_sided_layer_never_called_leaves_its_container_compared() -> None:
    (base, inputs), (raw, _) = extra_layer.base(), extra_layer.raw()
    report = pg.diff(base, raw, inputs)
    assert report.ok and report.not_compared == [], report.not_compared
    assert _forward_pairs(report) == {("", ""), ("encoder", "encoder"), ("head", "head")}


class TorchCalledExtra(extra_layer.TorchNet):
    """The base-only head runs: its output is added, a computation the port lacks."""

    def forward(self, x):
        hidden = torch.relu(self.encoder(x))
        return self.head(hidden) + self.aux_head(hidden)


def test_a_one_sided_layer_that_runs_still_leaves_its_container_uncompared() -> None:
    (_, inputs), (raw, _) = extra_layer.base(), extra_layer.raw()
    base = TorchCalledExtra()
    report = pg.diff(base, raw, inputs)
    assert [(n.base, n.raw) for n in report.not_compared] == [("", "")]
    assert report.not_compared[0].why.startswith("base 'aux_head' holds tensors and has no partner")
    assert ("", "") not in _forward_pairs(report)


def test_the_terminal_report_shows_each_part_with_the_fused_pair_s_error_and_marks_the_fault() -> None:
    base, raw, inputs = _fused_models()
    layer_map = pg.suggest_map(base, raw, inputs)
    base.layers[1].attn.k_proj.__class__ = TransposedLinear
    report = pg.diff(base, raw, inputs, layer_map)
    console = Console(file=io.StringIO(), width=200)
    print_diff(console, report, pg.export_tree(base, inputs), pg.export_tree(raw, inputs))
    lines = console.file.getvalue().splitlines()
    parts = [line for line in lines if "absorbed ↔ qkv_proj" in line and "first divergence" in line]
    assert [line.split()[0] for line in parts] == ["q_proj", "k_proj", "v_proj"]
    assert all("e+00" in line for line in parts)  # the pair's max abs error (2.4), the fault's


def test_the_offline_compare_joins_the_parts_as_the_live_diff_does(tmp_path) -> None:
    base, raw, inputs = _fused_models()
    layer_map = pg.suggest_map(base, raw, inputs)
    base.layers[1].attn.k_proj.__class__ = TransposedLinear
    live = pg.diff(base, raw, inputs, layer_map)  # copies the weights, so the dumps start alike
    pg.dump(base, inputs, tmp_path / "torch")
    pg.dump(raw, inputs, tmp_path / "paddle")
    offline = pg.compare_dumps(tmp_path / "torch", tmp_path / "paddle", layer_map)
    assert tuple(offline.first_divergence) == tuple(live.first_divergence) == (*QKV, "forward")
    assert _forward_pairs(offline) == _forward_pairs(live)
    grads = {(c.base, c.raw, c.stage) for c in offline.comparisons if c.kind == "grad" and "{" in c.base}
    assert grads == {(c.base, c.raw, c.stage) for c in live.comparisons if c.kind == "grad" and "{" in c.base}


def _shift_output(model, path: str) -> None:
    """Plant a fault: the layer at ``path`` adds 0.5 to its output (in its own forward, inside its hooks)."""
    layers = dict(model.named_modules() if isinstance(model, torch.nn.Module) else model.named_sublayers())
    forward = layers[path].forward
    layers[path].forward = lambda *args, **kwargs: forward(*args, **kwargs) + 0.5


@pytest.mark.parametrize(
    ("example", "raw_layer", "where"),
    [
        ("fused_projections", "layers.1.attn.qkv_proj", QKV),
        ("conv1x1_linear", "se.fc2", ("se.fc2", "se.fc2")),
        ("lora_linear", "q_proj", ("q_proj", "q_proj")),
        ("custom_linear", "c_fc", ("c_fc", "c_fc")),
        ("tied_head", "norm", ("norm", "norm")),
        ("index_offset", "blocks.1.conv", ("features.2.conv", "blocks.1.conv")),
        ("extra_layer", "encoder", ("encoder", "encoder")),
    ],
)
def test_a_fault_planted_in_a_zoo_pair_is_named_at_its_layer(example: str, raw_layer: str, where) -> None:
    module = load_example(example)
    (base, inputs), (raw, raw_inputs) = module.base(), module.raw()
    layer_map = pg.suggest_map(base, raw, pg.InputPair(inputs, raw_inputs))
    _shift_output(raw, raw_layer)
    report = pg.diff(base, raw, pg.InputPair(inputs, raw_inputs), layer_map)
    assert tuple(report.first_divergence) == (*where, "forward")
