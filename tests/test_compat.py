"""``padiff_graph.compat``: PaDiff's documented API on top of the matcher, the copy and the diff.

Written from PaDiff's documentation (Interfaces, Tutorial, SpecialInit, FAQs)
with our own models: each test calls the API the way the documentation
shows and checks what it returns, prints and copies.
"""

import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import torch

import padiff_graph.compat as compat
from padiff_graph import DEFAULT_REGISTRY
from padiff_graph.compat import (
    add_special_init,
    assign_weight,
    auto_diff,
    check_dataloader,
    check_grads,
    check_params,
    check_report,
    check_weights,
    create_model,
    get_dump_root_path,
    set_dump_root_path,
)
from padiff_graph.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
X = np.random.default_rng(0).standard_normal((4, 8)).astype("float32") * 3


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 8)
        self.act = torch.nn.GELU()
        self.fc2 = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)) + x)


class PaddleNet(paddle.nn.Layer):
    """The port, its layers defined in another order (PaDiff zips definition order)."""

    def __init__(self, approximate=False, slope=None):
        super().__init__()
        self.fc2 = paddle.nn.Linear(8, 4)
        self.fc1 = paddle.nn.Linear(8, 8)
        self.act = paddle.nn.GELU(approximate=approximate) if slope is None else paddle.nn.LeakyReLU(slope)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)) + x)


def pair(x=X, name="x"):
    return {name: torch.as_tensor(x)}, {name: paddle.to_tensor(x)}


@pytest.fixture(autouse=True)
def dump_root(tmp_path):
    saved = get_dump_root_path()
    set_dump_root_path(str(tmp_path / "padiff_dump"))
    yield tmp_path / "padiff_dump"
    set_dump_root_path(saved)


# --- auto_diff -----------------------------------------------------------------------------------


def test_auto_diff_copies_through_the_matcher_and_says_success(capsys) -> None:
    assert auto_diff(TorchNet(), PaddleNet(), pair(), atol=1e-4, compare_mode="strict") is True
    out = capsys.readouterr().out
    assert "[AutoDiff] Assign weight success !!!" in out and "[AutoDiff] SUCCESS !!!" in out
    assert "  compare_mode: `strict`" in out and "  atol: `0.0001`" in out


def test_auto_diff_names_the_first_diff_as_padiff_users_read_it(capsys) -> None:
    assert auto_diff(TorchNet(), PaddleNet(approximate=True), pair(), atol=1e-4, compare_mode="strict") is False
    out = capsys.readouterr().out
    assert "[AutoDiff]     Diff found in Forward Stage" in out
    assert "[AutoDiff]     Type of layer is: GELU vs GELU" in out
    assert "[AutoDiff]     Route: TorchNet(base_model).act\n[AutoDiff]            PaddleNet(raw_model).act" in out
    assert "Max absolute difference: " in out and "GELU    <---  *** HERE ***" in out
    assert "[AutoDiff] The forward stage comparing failed !!!" in out
    assert tuple(compat.last_report().first_divergence) == ("act", "act", "forward")


def test_padiff_defaults_are_kept_and_mean_mode_misses_a_mean_preserving_fault(capsys) -> None:
    auto_diff(TorchNet(), PaddleNet(), pair())
    out = capsys.readouterr().out
    assert "  atol: `0.0`" in out and "  rtol: `1e-07`" in out and "  compare_mode: `mean`" in out
    assert compat.last_report().settings["mode"] == "mean"
    # the approximate GELU keeps the means: PaDiff's default mode lets it through, strict mode does not
    assert auto_diff(TorchNet(), PaddleNet(approximate=True), pair(), atol=1e-4) is True
    assert auto_diff(TorchNet(), PaddleNet(approximate=True), pair(), atol=1e-4, compare_mode="strict") is False


def test_auto_init_and_its_older_name_auto_weights_skip_the_copy(capsys) -> None:
    for option in ("auto_init", "auto_weights"):
        assert auto_diff(TorchNet(), PaddleNet(), pair(), atol=1e-4, **{option: False}) is False
        assert "Assign weight" not in capsys.readouterr().out


def test_a_training_run_with_losses_and_optimizers_over_several_steps(capsys) -> None:
    def run(paddle_lr):
        base, raw = TorchNet(), PaddleNet()
        target = np.ones((4, 4), dtype="float32")
        losses = [
            lambda out: torch.nn.functional.mse_loss(out, torch.as_tensor(target)),
            lambda out: paddle.nn.functional.mse_loss(out, paddle.to_tensor(target)),
        ]
        optimizers = [
            torch.optim.SGD(base.parameters(), lr=0.1),
            paddle.optimizer.SGD(learning_rate=paddle_lr, parameters=raw.parameters()),
        ]
        return auto_diff(base, raw, pair(), losses, optimizers, atol=1e-4, rtol=1e-3, steps=3)

    assert run(0.1) is True
    assert {c.step for c in compat.last_report().comparisons} == {0, 1, 2}
    assert "use_loss: `True`" in capsys.readouterr().out
    assert run(0.2) is False  # the optimizers differ: the weights after the first step say so
    out = capsys.readouterr().out
    assert "[AutoDiff] Diff found when compare weights" in out and "weights value is different." in out
    assert "base_model param path:\n    TorchNet(base_model).fc" in out


def test_loss_fn_as_one_tutorial_example_spells_it(capsys) -> None:
    def torch_loss(out):
        return out.mean() * 0

    def paddle_loss(out):
        return out.mean() * 0

    assert auto_diff(TorchNet(), PaddleNet(), pair(), atol=1e-4, loss_fn=[torch_loss, paddle_loss]) is True
    assert "use_loss: `True`" in capsys.readouterr().out


def test_single_step_finds_every_diverging_layer(capsys) -> None:
    def base():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(8, 8), torch.nn.GELU(), torch.nn.Linear(8, 8), torch.nn.LeakyReLU(0.2)
        )

    raw = paddle.nn.Sequential(
        paddle.nn.Linear(8, 8), paddle.nn.GELU(approximate=True), paddle.nn.Linear(8, 8), paddle.nn.LeakyReLU(0.1)
    )
    assert auto_diff(base(), raw, pair(name="input"), atol=1e-4, compare_mode="strict", single_step=True) is False
    assert {(d.base, d.stage) for d in compat.last_report().divergences} >= {("1", "forward"), ("3", "forward")}
    assert "In single step mode, " in capsys.readouterr().out
    assert auto_diff(TorchNet(), PaddleNet(), pair(), atol=1e-4, rtol=1e-3, single_step=True) is True


def test_diff_phase_forward_and_backward(capsys) -> None:
    assert auto_diff(TorchNet(), PaddleNet(), pair(), atol=1e-4, diff_phase="forward") is True
    assert {c.kind for c in compat.last_report().comparisons} == {"forward"}
    assert auto_diff(TorchNet(), PaddleNet(), pair(), atol=1e-4, rtol=1e-3, diff_phase="backward") is True
    assert "forward" not in {c.kind for c in compat.last_report().comparisons}


def test_unknown_options_are_reported_and_bad_ones_fail_cleanly(capsys) -> None:
    assert auto_diff(TorchNet(), PaddleNet(), pair(), atol=1e-4, colour="red") is True
    assert "ignoring unknown option colour" in capsys.readouterr().out
    assert auto_diff(TorchNet(), PaddleNet(), pair(), compare_mode="median") is False
    assert "mode must be 'strict' or 'mean'" in capsys.readouterr().out
    assert auto_diff(TorchNet(), PaddleNet(), pair(), atol="tight") is False
    assert "atol must be a number, not 'tight'" in capsys.readouterr().out
    assert auto_diff(object(), PaddleNet(), pair()) is False
    assert "neither a torch.nn.Module nor a paddle.nn.Layer" in capsys.readouterr().out


def test_a_random_layer_stops_the_run_with_its_reason(capsys) -> None:
    base = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5))
    raw = paddle.nn.Sequential(paddle.nn.Linear(8, 8), paddle.nn.Dropout(0.5))
    assert auto_diff(base, raw, pair(name="input"), atol=1e-4) is False
    assert "dropout" in capsys.readouterr().out.lower()


# --- proxies: black and white lists, layer maps ------------------------------------------------


def test_black_and_white_lists_choose_what_is_compared() -> None:
    base = create_model(TorchNet(), "base")
    raw = create_model(PaddleNet(approximate=True), "raw")
    base.update_white_list([base.model.fc1], "self")
    assert auto_diff(base, raw, pair(), atol=1e-4, compare_mode="strict", diff_phase="forward") is True
    assert {c.base for c in compat.last_report().comparisons} == {"fc1"}

    base = create_model(TorchNet())
    base.update_black_list_with_class(torch.nn.Linear, "self")
    base.update_black_list([base.model], "self")
    auto_diff(base, PaddleNet(), pair(), atol=1e-4, diff_phase="forward")
    assert {c.base for c in compat.last_report().comparisons} == {"act"}
    with pytest.raises(InputError, match="scope must be one of self, sublayers, all"):
        base.update_white_list([base.model.fc1], "children")


class TorchTwin(torch.nn.Module):
    """Two same-shaped blocks whose outputs are summed: call order cannot tell which is which."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh())
        self.dec = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh())

    def forward(self, x):
        return self.enc(x) + self.dec(x)


class PaddleTwin(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.first = paddle.nn.Sequential(paddle.nn.Linear(8, 8), paddle.nn.Tanh())
        self.second = paddle.nn.Sequential(paddle.nn.Linear(8, 8), paddle.nn.Tanh())

    def forward(self, x):
        return self.second(x) + self.first(x)


def test_set_layer_map_pairs_win_and_their_insides_are_not_compared(capsys) -> None:
    base, raw = create_model(TorchTwin()), create_model(PaddleTwin())
    base.set_layer_map([base.model.enc, base.model.dec])
    raw.set_layer_map([raw.model.first, raw.model.second])
    assert auto_diff(base, raw, pair(), atol=1e-4, compare_mode="strict") is True
    report = compat.last_report()
    assert {(p.base, p.raw) for p in report.layer_map.pairs} >= {("enc", "first"), ("dec", "second")}
    assert {("enc.0", "first.0"), ("dec.0", "second.0")} <= {(p.base, p.raw) for p in report.layer_map.pairs}
    inside = {c.kind for c in report.comparisons if c.base.startswith("enc.")}
    assert not inside & {"forward", "backward"}  # PaDiff: the layers inside a mapped layer are black-listed
    raw.set_layer_map([raw.model.first])
    assert auto_diff(base, raw, pair(), atol=1e-4) is False
    assert "set_layer_map lists 2 layers of 'TorchTwin' and 1 of 'PaddleTwin'" in capsys.readouterr().out
    assert base.auto_layer_map("base") is True
    with pytest.raises(InputError, match="'base' or 'raw'"):
        base.auto_layer_map("left")
    with pytest.raises(InputError, match="not part of the model"):
        base.set_layer_map([raw.model.first])


class TorchAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, q):
        return self.attn(q, q, q)[0]


class PaddleAttention(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.attn = paddle.nn.MultiHeadAttention(16, 2)

    def forward(self, q):
        return self.attn(q, q, q)


def test_set_layer_map_is_kept_in_the_dumps_and_pinned_by_the_checks() -> None:
    base, raw = create_model(TorchTwin()), create_model(PaddleTwin())
    base.set_layer_map([base.model.enc, base.model.dec])
    raw.set_layer_map([raw.model.second, raw.model.first])
    assert assign_weight(base, raw) is True
    np.testing.assert_array_equal(raw.model.second[0].bias.numpy(), base.model.enc[0].bias.detach().numpy())
    run_steps(base, "torch", 1)
    run_steps(raw, "paddle", 1)
    assert check_report(base.dump_path, raw.dump_path, {"atol": 1e-4, "compare_mode": "strict"}) is True
    pairs = {(p.base, p.raw) for p in compat.last_report().layer_map.pairs}
    assert {("enc", "second"), ("dec", "first"), ("enc.0", "second.0")} <= pairs


def test_set_layer_map_on_builtin_attention_as_padiffs_own_tests_use_it() -> None:
    module, layer = create_model(TorchAttention()), create_model(PaddleAttention())
    module.set_layer_map([module.model.attn])
    layer.set_layer_map([layer.model.attn])
    q = np.random.default_rng(1).standard_normal((2, 3, 16)).astype("float32")
    assert auto_diff(module, layer, pair(q, name="q"), atol=1e-4) is True
    assert ("attn", "attn") in {(p.base, p.raw) for p in compat.last_report().layer_map.pairs}


# --- assign_weight: where PaDiff's order-based copy fails ---------------------------------------


class TorchQuery(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.query = torch.nn.Parameter(torch.randn(5, 8))  # a parameter here ...
        self.bn = torch.nn.BatchNorm1d(8)
        self.proj = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.proj(self.bn(x + self.query.mean(0)))


class PaddleQuery(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.proj = paddle.nn.Linear(8, 4)
        self.bn = paddle.nn.BatchNorm1D(8)
        self.query = paddle.nn.Embedding(5, 8)  # ... an Embedding in the port

    def forward(self, x):
        return self.proj(self.bn(x + self.query.weight.mean(0)))


def test_assign_weight_copies_reordered_kind_mismatched_models_and_batchnorm_statistics(capsys) -> None:
    base, raw = TorchQuery(), PaddleQuery()
    base.bn.running_mean.fill_(0.5)
    base.bn.running_var.fill_(2.0)
    assert assign_weight(base, raw) is True
    assert "[AutoDiff] Assign weight success !!!" in capsys.readouterr().out
    np.testing.assert_array_equal(raw.query.weight.numpy(), base.query.detach().numpy())
    np.testing.assert_array_equal(raw.proj.weight.numpy(), base.proj.weight.detach().numpy().T)
    np.testing.assert_array_equal(raw.bn._mean.numpy(), np.full(8, 0.5, "float32"))
    np.testing.assert_array_equal(raw.bn._variance.numpy(), np.full(8, 2.0, "float32"))
    base.eval()
    raw.eval()
    assert auto_diff(base, raw, pair(), atol=1e-4, compare_mode="strict", auto_init=False) is True


def test_assign_weight_copies_through_wrappers_and_renamed_layers() -> None:
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))

    class Port(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.body = paddle.nn.Sequential(("project_in", paddle.nn.Linear(8, 16)), ("relu", paddle.nn.ReLU()))
            self.head = paddle.nn.Sequential(("project_out", paddle.nn.Linear(16, 4)))

        def forward(self, input):
            return self.head(self.body(input))

    raw = Port()
    assert assign_weight(base, raw) is True
    np.testing.assert_array_equal(raw.body.project_in.weight.numpy(), base[0].weight.detach().numpy().T)
    np.testing.assert_array_equal(raw.head.project_out.bias.numpy(), base[2].bias.detach().numpy())
    assert auto_diff(base, raw, pair(name="input"), atol=1e-4, compare_mode="strict", auto_init=False) is True


def test_assign_weight_says_why_it_cannot_copy_and_returns_false(capsys) -> None:
    base = torch.nn.Sequential(torch.nn.Linear(8, 4))
    raw = paddle.nn.Sequential(paddle.nn.Linear(8, 5))
    assert assign_weight(base, raw) is False
    out = capsys.readouterr().out
    assert "[AutoDiff] Assign weight Failed !!!" in out and "cannot copy base '' into raw ''" in out
    assert "base 0.weight [4, 8], 0.bias [4]; raw 0.weight [8, 5], 0.bias [5]" in out
    assert "Traceback" not in out and "AttributeError" not in out
    assert assign_weight(object(), raw) is False
    assert "neither a torch.nn.Module nor a paddle.nn.Layer" in capsys.readouterr().out


def test_unassigned_weights_are_left_alone() -> None:
    base, raw = create_model(TorchNet()), create_model(PaddleNet())
    raw.update_unassigned_weights_list([raw.model.fc2])
    before = raw.model.fc2.weight.numpy().copy()
    assert assign_weight(base, raw) is True
    np.testing.assert_array_equal(raw.model.fc2.weight.numpy(), before)
    np.testing.assert_array_equal(raw.model.fc1.weight.numpy(), base.model.fc1.weight.detach().numpy().T)


class TorchScale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.randn(8))

    def forward(self, x):
        return x * self.gamma


class PaddleScale(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.w = self.create_parameter([1, 8])

    def forward(self, x):
        return x * self.w[0]


def copy_scale(module, layer):
    """A special init in PaDiff's signature: base (torch) into raw (paddle)."""
    layer.w.set_value(paddle.to_tensor(module.gamma.detach().numpy()[None, :]))


def test_add_special_init_makes_two_custom_classes_pair_in_either_order() -> None:
    add_special_init("torch", "TorchScale", "paddle", "PaddleScale", copy_scale)
    try:
        base, raw = TorchScale(), PaddleScale()
        assert auto_diff(base, raw, pair(), atol=1e-6, compare_mode="strict") is True
        torch_model, paddle_model = TorchScale(), PaddleScale()
        assert assign_weight(paddle_model, torch_model) is True  # registered torch -> paddle, run backwards
        np.testing.assert_array_equal(torch_model.gamma.detach().numpy(), paddle_model.w.numpy()[0])
    finally:
        DEFAULT_REGISTRY.unregister("torch", "TorchScale", "paddle", "PaddleScale")


def batchnorm_by_state_dict(module, layer):
    """SpecialInit.md's kind of init: the torch state dict, renamed to paddle's names, set on the paddle layer."""
    names = {"running_mean": "_mean", "running_var": "_variance"}
    state = {names.get(key, key): paddle.to_tensor(value.cpu().numpy()) for key, value in module.state_dict().items()}
    state.pop("num_batches_tracked")
    layer.set_state_dict(state)


class TorchConvBN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


class PaddleConvBN(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3, padding=1)
        self.bn = paddle.nn.BatchNorm2D(4)

    def forward(self, x):
        return self.bn(self.conv(x))


def test_padiffs_documented_special_init_flow_works_unchanged() -> None:
    add_special_init("torch", "BatchNorm2d", "paddle", "BatchNorm2D", batchnorm_by_state_dict)
    try:
        module, layer = TorchConvBN(), PaddleConvBN()
        module.bn.running_mean.uniform_()
        module.eval(), layer.eval()
        module, layer = create_model(module), create_model(layer)
        module.set_layer_map([module.model.bn])
        layer.set_layer_map([layer.model.bn])
        images = np.random.default_rng(2).standard_normal((2, 3, 5, 5)).astype("float32")
        assert auto_diff(module, layer, pair(images), atol=1e-4, compare_mode="strict") is True
        np.testing.assert_array_equal(layer.model.bn._mean.numpy(), module.model.bn.running_mean.numpy())
        assert compat.last_report().layer_map.pair_for_base("bn").init.endswith(":batchnorm_by_state_dict")
    finally:  # the shipped conversion (registered for the BatchNorm family) serves again
        DEFAULT_REGISTRY.unregister("torch", "BatchNorm2d", "paddle", "BatchNorm2D")


# --- create_model, dumps and the offline checks -------------------------------------------------


def run_steps(proxy, framework, steps, optimizer=None, dump=True):
    for _ in range(steps):
        x = torch.as_tensor(X) if framework == "torch" else paddle.to_tensor(X)
        proxy.backward(proxy(x).mean())
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad() if framework == "torch" else optimizer.clear_grad()
        if dump:
            proxy.try_dump()


def test_try_dump_writes_the_documented_layout_and_the_checks_walk_steps_and_ranks(dump_root, capsys) -> None:
    module, layer = create_model(TorchNet(), dump_freq=2), create_model(PaddleNet(), dump_freq=2)
    assert module.dump_path == str(dump_root / "TorchNet")
    assert assign_weight(module, layer)
    run_steps(module, "torch", 4)
    run_steps(layer, "paddle", 4)
    steps = sorted(p.name for p in Path(module.dump_path).glob("step_*"))
    assert steps == ["step_0", "step_2"]
    assert (Path(module.dump_path) / "step_2" / "rank_0" / "report.npz").is_file()
    # a second rank's shard, dumped where PaDiff's layout puts rank 1
    for proxy, x in ((module, torch.as_tensor(X[:2])), (layer, paddle.to_tensor(X[:2]))):
        proxy.backward(proxy(x).mean())
        proxy.dump_report(f"{proxy.dump_path}/step_0/rank_1")
        proxy.dump_params(f"{proxy.dump_path}/step_0/rank_1")
        proxy.clear_report()
    capsys.readouterr()
    cfg = {"atol": 1e-4, "rtol": 1e-3, "compare_mode": "strict"}
    assert check_report(module.dump_path, layer.dump_path, cfg) is True
    out = capsys.readouterr().out
    assert "[AutoDiff] check cfg {'atol': 0.0001, 'rtol': 0.001, 'compare_mode': 'strict'}" in out
    checked = [line.split(" in ")[1].split(" and ")[0] for line in out.splitlines() if "Checking report" in line]
    assert [str(Path(p).relative_to(module.dump_path)) for p in checked] == [
        "step_0/rank_0",
        "step_0/rank_1",
        "step_2/rank_0",
    ]
    assert check_report(module.dump_path, layer.dump_path, cfg, diff_phase="forward") is True
    assert {c.kind for c in compat.last_report().comparisons} == {"forward"}
    assert check_params(module.dump_path, layer.dump_path, cfg) is True
    assert check_grads(f"{module.dump_path}/step_2", f"{layer.dump_path}/step_2", cfg) is True
    assert check_weights(f"{module.dump_path}/step_0/rank_1", f"{layer.dump_path}/step_0/rank_1", cfg) is True
    assert "[AutoDiff] grads compared." in capsys.readouterr().out
    assert check_report(f"{module.dump_path}/step_1", f"{layer.dump_path}/step_1") is False
    assert "share no step and rank to compare among steps [1]" in capsys.readouterr().out  # not dumped: dump_freq 2
    with pytest.raises(InputError, match="cfg takes atol, rtol and compare_mode"):
        check_report(module.dump_path, layer.dump_path, {"tolerance": 1})


def test_the_checks_name_a_diverging_layer_and_a_diverging_parameter(capsys) -> None:
    module, layer = create_model(TorchNet(), "torch_net"), create_model(PaddleNet(approximate=True), "paddle_net")
    assign_weight(module, layer)
    run_steps(module, "torch", 1)
    run_steps(layer, "paddle", 1)
    cfg = {"atol": 1e-4, "compare_mode": "strict"}
    assert check_report(module.dump_path, layer.dump_path, cfg) is False
    out = capsys.readouterr().out
    assert "Diff found in Forward Stage" in out and "Route: torch_net.act\n[AutoDiff]            paddle_net.act" in out
    layer.model.fc1.bias.set_value(layer.model.fc1.bias + 1)
    layer.dump_weights(f"{layer.dump_path}/step_0")
    module.dump_weights(f"{module.dump_path}/step_0")
    assert check_weights(module.dump_path, layer.dump_path, cfg) is False
    out = capsys.readouterr().out
    assert "[AutoDiff] Diff found when compare weights" in out
    assert "base_model param path:\n    torch_net.fc1.bias\nraw_model param path:\n    paddle_net.fc1.bias" in out


def test_the_manual_dump_calls_and_an_optimizer_check(capsys) -> None:
    module, layer = create_model(TorchNet()), create_model(PaddleNet())
    assign_weight(module, layer)
    optimizers = {
        "torch": torch.optim.SGD(module.model.parameters(), lr=0.1),
        "paddle": paddle.optimizer.SGD(learning_rate=0.3, parameters=layer.model.parameters()),
    }
    for proxy, framework in ((module, "torch"), (layer, "paddle")):
        folder = f"{proxy.dump_path}/manual"
        x = torch.as_tensor(X) if framework == "torch" else paddle.to_tensor(X)
        proxy.backward(proxy(x).mean())
        proxy.dump_report(folder)
        proxy.dump_params(folder)
        proxy.dump_grads(folder)
        optimizers[framework].step()
        proxy.dump_weights(folder)
        proxy.clear_report()
    cfg = {"atol": 1e-4, "rtol": 1e-3}
    assert check_report(f"{module.dump_path}/manual", f"{layer.dump_path}/manual", cfg) is True
    assert check_grads(f"{module.dump_path}/manual", f"{layer.dump_path}/manual", cfg) is True
    assert check_weights(f"{module.dump_path}/manual", f"{layer.dump_path}/manual", cfg) is False  # lr 0.1 vs 0.3


def test_check_dataloader() -> None:
    batches = [(X[:2], {"y": X[2:]}), (X[:2], {"y": X[2:]})]
    torch_batches = [(torch.as_tensor(a), {"y": torch.as_tensor(b["y"])}) for a, b in batches]
    assert check_dataloader(batches, torch_batches) is True
    assert check_dataloader(batches, torch_batches[:1]) is False
    assert check_dataloader(batches, [(X[:2] + 1, b) for _, b in batches], compare_mode="strict") is False


# --- environment switches, imports, a whole script -----------------------------------------------


def test_wrap_layer_path_log_and_api_check_switches(monkeypatch, capsys) -> None:
    wrapped = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU()))
    port = paddle.nn.Sequential(paddle.nn.Sequential(paddle.nn.Linear(8, 8), paddle.nn.GELU(approximate=True)))
    inputs = pair(name="input")
    auto_diff(wrapped, port, inputs, atol=1e-4, compare_mode="strict", diff_phase="forward")
    assert "0" in {c.base for c in compat.last_report().comparisons}
    assert compat.last_report().first_divergence.op is None and "(Sequential(base_model)" not in capsys.readouterr().out
    monkeypatch.setenv("PADIFF_SIKP_WRAP_LAYER", "TRUE")
    monkeypatch.setenv("PADIFF_PATH_LOG", "ON")
    monkeypatch.setenv("PADIFF_API_CHECK", "ON")
    assert auto_diff(wrapped, port, inputs, atol=1e-4, compare_mode="strict", diff_phase="forward") is False
    report = compat.last_report()
    assert "0" not in {c.base for c in report.comparisons}  # the parameter-less wrapper is skipped
    assert report.first_divergence.op is not None  # op-level: the first differing framework call
    assert "GELU  (Sequential(base_model).0.1)    <---  *** HERE ***" in capsys.readouterr().out


def test_importing_compat_touches_neither_framework() -> None:
    code = "import sys, padiff_graph.compat\nprint(sorted(m for m in ('torch', 'paddle') if m in sys.modules))"
    env = {"PADIFF_API_CHECK": "ON", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_padiff_style_script_runs_unchanged_apart_from_the_import(capsys) -> None:
    runpy.run_path(str(ROOT / "examples" / "padiff_script.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.rstrip().endswith("all checks passed")
    assert "from padiff_graph.compat import *" in (ROOT / "examples" / "padiff_script.py").read_text()


# --- PaDiff's own import surface, proxy interface, report and auto_diff dumps ---------------------


class PaddleApiNet(paddle.nn.Layer):
    """API calls in a layer's own code, one through an attribute set before any wrapping (as PaDiff's tests do)."""

    def __init__(self):
        super().__init__()
        self.linear = paddle.nn.Linear(8, 8)
        self.relu = paddle.nn.functional.relu

    def forward(self, x):
        return self.relu(self.linear(x)) * 2 + 1


class TorchApiNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(8, 8)
        self.relu = torch.nn.functional.relu

    def forward(self, x):
        return torch.matmul(self.relu(self.linear(x)) * 2, torch.eye(8)) + 1


def test_a_proxys_report_holds_padiffs_items_and_with_the_api_check_the_api_calls(monkeypatch) -> None:
    layer = create_model(PaddleApiNet())
    layer.backward(layer(paddle.to_tensor(X)).mean())
    items = layer.report.items
    assert [(i.type, i.net_str, i.net_id) for i in items] == [
        ("forward", "Linear", 1),
        ("backward", "Linear", 1),
        ("forward", "PaddleApiNet", 0),
        ("backward", "PaddleApiNet", 0),
    ]
    assert [i.step for i in items] == [0, 1, 2, 3]
    assert items[0].tensors_for_compare()[0].shape == (4, 8) and items[1].tensors[0].shape == (4, 8)  # output, grad
    layer.clear_report()
    assert layer.report.items == []

    monkeypatch.setenv("PADIFF_API_CHECK", "ON")
    relu, multiply = paddle.nn.functional.relu, paddle.Tensor.__mul__
    layer(paddle.to_tensor(X))
    names = [item.net_str for item in layer.report.items if item.type == "forward"]
    apis = ["paddle.nn.functional.relu", "paddle.Tensor.__mul__", "paddle.Tensor.__add__"]
    assert names == ["Linear", *apis, "PaddleApiNet"]
    assert len(layer.report.items) == 10  # PaDiff's count for this model: two items per call
    assert paddle.nn.functional.relu is relu and paddle.Tensor.__mul__ is multiply and layer.model.relu is relu

    module = create_model(TorchApiNet())
    module(torch.as_tensor(X))
    names = [item.net_str for item in module.report.items if item.type == "forward"]
    # torch shows an operator as the method it runs: x * 2 is Tensor.mul
    apis = ["torch.nn.functional.relu", "torch.Tensor.mul", "torch.matmul", "torch.Tensor.add"]
    assert names == ["Linear", *apis, "TorchApiNet"]
    monkeypatch.setenv("PADIFF_API_CHECK", "OFF")
    module.clear_report()
    module(torch.as_tensor(X))
    assert len(module.report.items) == 4


def test_the_proxy_offers_padiffs_model_interface() -> None:
    module, layer = create_model(TorchNet()), create_model(PaddleNet())
    params = list(module.parameters(recursively=True))
    assert [p.shape() for p in params] == [[8, 8], [8], [4, 8], [4]] and params[0].param_type == "torch"
    assert all(p.grad() is None for p in params) and all(p.grad() is None for p in layer.parameters(True))
    assert [name for name, _ in layer.named_parameters(recursively=True)][:2] == ["fc2.weight", "fc2.bias"]
    assert list(module.parameters(recursively=False)) == []
    module.backward(module(torch.as_tensor(X)).mean())
    grads = [p.grad() for p in module.parameters(recursively=True)]
    assert all(isinstance(g, np.ndarray) for g in grads) and grads[0].shape == (8, 8)
    weight = next(layer.parameters(True))
    weight.set_data(np.ones((8, 4), "float32"))
    assert np.array_equal(layer.model.fc2.weight.numpy(), np.ones((8, 4))) and weight.main_grad() is None
    assert [(n, c.model) for n, c in module.named_children()] == list(module.model.named_children())
    assert [c.model for c in layer.children()] == list(layer.model.children())
    assert [s.model for s in module.submodels()] == list(module.model.modules())
    assert [n for n, _ in layer.named_submodels()] == ["", "fc2", "fc1", "act"]
    assert str(module.get_device()) == "cpu" and layer.get_device() == "cpu"
    seen = []
    handles = [
        module.register_forward_pre_hook(lambda _m, _inputs: seen.append("pre")),
        module.register_forward_post_hook(lambda _m, _inputs, _output: seen.append("post")),
        layer.register_forward_post_hook(lambda _l, _inputs, _output: seen.append("paddle post")),
    ]
    module.model(torch.as_tensor(X)), layer.model(paddle.to_tensor(X))
    assert seen == ["pre", "post", "paddle post"]
    for handle in handles:
        handle.remove()
    module.to_cpu(), layer.to("cpu")


@pytest.fixture
def padiff_package(tmp_path, monkeypatch):
    """PaDiff's ``padiff`` package as the peer test writes it: two lines over ``padiff_graph.compat.padiff``."""
    shim = runpy.run_path(str(ROOT / "scripts" / "peer_test.py"))["SHIM"]
    (tmp_path / "padiff").mkdir()
    (tmp_path / "padiff" / "__init__.py").write_text(shim)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [name for name in sys.modules if name == "padiff" or name.startswith("padiff.")]:
        del sys.modules[name]


def test_padiffs_submodules_import_as_its_users_and_tests_import_them(padiff_package) -> None:
    import padiff
    from padiff.checker import check_grads as checker_grads
    from padiff.checker import check_weights as checker_weights
    from padiff.dump_tools import dump_grads, dump_weights, get_dump_root_path
    from padiff.interfaces import auto_diff as interfaces_auto_diff
    from padiff.interfaces.diff_utils import default_loss

    assert (checker_grads, checker_weights, interfaces_auto_diff) == (check_grads, check_weights, auto_diff)
    assert set(compat.__all__) <= set(vars(padiff)) and padiff.LayerMap is compat.LayerMap
    assert get_dump_root_path() == compat.get_dump_root_path()
    torch_out = (torch.ones(2, 2), torch.full((3,), 3.0))
    assert float(default_loss(torch_out, "torch")) == 2.0 and float(default_loss(torch_out[1], "torch")) == 3.0
    assert float(default_loss([paddle.ones([2]), paddle.zeros([2])], "paddle")) == 0.5
    with pytest.raises(InputError, match="'torch' or 'paddle'"):
        default_loss(torch_out, "jax")

    layer, module = create_model(PaddleNet()), create_model(TorchNet())
    assign_weight(layer, module)
    layer.backward(default_loss(layer(paddle.to_tensor(X)), "paddle"))
    module.backward(default_loss(module(torch.as_tensor(X)), "torch"))
    module.model.zero_grad()  # torch forgets its gradients (None), paddle keeps them
    for proxy in (layer, module):
        dump_weights(proxy, proxy.dump_path)
        dump_grads(proxy, proxy.dump_path)
    assert checker_weights(layer.dump_path, module.dump_path, cfg={"atol": 1e-4}) is True
    assert checker_grads(layer.dump_path, module.dump_path, cfg={"atol": 1e-4}) is False  # one side has none


def test_a_gradient_dumped_on_one_side_only_is_a_difference(capsys) -> None:
    layer, module = create_model(PaddleNet()), create_model(TorchNet())
    layer.update_white_list([layer.model.fc1], "self")
    assign_weight(layer, module)
    layer.backward(layer(paddle.to_tensor(X)).mean())
    module.backward(module(torch.as_tensor(X)).mean())
    module.model.fc2.weight.grad = None  # a layer the paddle proxy does not dump: not a difference
    layer.dump_grads(), module.dump_grads()
    assert check_grads(layer.dump_path, module.dump_path, cfg={"atol": 1e-4}) is True
    module.model.fc1.bias.grad = None
    module.dump_grads()
    assert check_params(layer.dump_path, module.dump_path, cfg={"atol": 1e-4}) is False
    out = capsys.readouterr().out
    assert "grads value is different." in out and "PaddleNet.fc1.bias" in out
    assert "the gradient is None in raw_model" in out


def test_auto_diff_leaves_its_dumps_where_padiff_leaves_them(dump_root) -> None:
    layer = PaddleNet()
    layer.eval()
    white = [layer.fc1, layer.fc2]
    layer = create_model(layer, "layer")
    layer.update_white_list(white, "all")
    layer.update_black_list([layer.model.fc1], "all")
    module = create_model(TorchNet().eval(), "module")
    module.update_white_list([module.model.fc1, module.model.fc2], "all")
    assert auto_diff(module, layer, pair(), atol=1e-4) is True
    assert {c.base for c in compat.last_report().comparisons if c.kind == "forward"} == {"fc1", "fc2"}  # white wins
    assert check_report(f"{layer.dump_path}/auto_diff", f"{module.dump_path}/auto_diff", cfg={"atol": 1e-4}) is True
    assert {c.base for c in compat.last_report().comparisons if c.kind != "loss"} == {"fc1", "fc2"}  # as dumped
    assert check_grads(f"{layer.dump_path}/auto_diff", f"{module.dump_path}/auto_diff", cfg={"atol": 1e-4}) is True

    base, raw = TorchNet(), PaddleNet()
    optimizers = (torch.optim.SGD(base.parameters(), lr=0.1), paddle.optimizer.SGD(0.1, parameters=raw.parameters()))
    assert auto_diff(base, raw, pair(), optimizers=optimizers, atol=1e-4, rtol=1e-3) is True
    base_dump, raw_dump = (
        dump_root / "TorchNet_base_model" / "auto_diff",
        dump_root / "PaddleNet_raw_model" / "auto_diff",
    )
    assert check_report(str(base_dump), str(raw_dump), cfg={"atol": 1e-4, "rtol": 1e-3}) is True
    assert check_weights(str(base_dump), str(raw_dump), cfg={"atol": 1e-4, "rtol": 1e-3}) is True  # after the step
    saved = np.load(base_dump / "step_0" / "rank_0" / "weights.npz")
    assert any(np.allclose(value, base.fc1.weight.detach().numpy()) for value in saved.values())

    base, raw = TorchNet(), PaddleNet(approximate=True)
    assert auto_diff(base, raw, pair(), atol=1e-4, compare_mode="strict", diff_phase="forward") is False
    assert check_report(str(base_dump), str(raw_dump), cfg={"atol": 1e-4, "compare_mode": "strict"}) is False
    assert not (base_dump / "step_0" / "rank_0" / "grads.npz").exists()
    assert all(param.grad is None for param in base.parameters())  # a forward-only diff leaves no gradient


def test_the_peer_test_runs_each_test_file_behind_the_two_line_package(tmp_path) -> None:
    tests = tmp_path / "PaDiff" / "tests"
    tests.mkdir(parents=True)
    (tests / "test_imports.py").write_text(
        "from padiff import *\nfrom padiff.checker import check_grads\n\n\n"
        "def test_names():\n    assert callable(auto_diff) and callable(check_grads)\n"
    )
    (tests / "test_fails.py").write_text("def test_fails():\n    assert False\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "peer_test.py"), str(tmp_path / "PaDiff"), "--timeout", "120"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FAIL  test_fails.py") and any(
        line.startswith("PASS  test_imports.py") for line in lines
    )
    assert lines[-1] == "passed 1 of 2 test files"
    assert sorted(p.name for p in tests.iterdir()) == ["test_fails.py", "test_imports.py"]  # nothing written there
