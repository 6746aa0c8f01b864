"""Bad input and faults: never a traceback, never a wrong answer, never a changed model."""

import hashlib
import importlib
import json
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from padiff_graph.cli import main

STATEFUL_MODELS = textwrap.dedent(
    """
    import numpy as np, paddle, torch

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.bn = torch.nn.BatchNorm2d(4)
            self.drop = torch.nn.Dropout(0.5)
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.drop(self.bn(self.conv(x))).mean((2, 3)))

    class PaddleNet(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 4, 3)
            self.bn = paddle.nn.BatchNorm2D(4)
            self.drop = paddle.nn.Dropout(0.5)
            self.fc = paddle.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.drop(self.bn(self.conv(x))).mean((2, 3)))

    INPUTS = {"x": np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype("float32") * 3 + 1}
    BASE, RAW = TorchNet(), PaddleNet()   # training mode, as built
    RAW.bn.eval()                         # a mixed-mode model: each layer's mode must come back as it was

    def base():
        return BASE, INPUTS

    def raw():
        return RAW, INPUTS
    """
)


def state_hash(model) -> str:
    """Every parameter and buffer, names and bytes, plus every layer's mode."""
    digest = hashlib.sha256()
    tensors = dict(model.state_dict())
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(tensors[name].numpy()).tobytes())
    named = model.named_modules() if hasattr(model, "named_modules") else model.named_sublayers(include_self=True)
    for path, layer in named:
        digest.update(f"{path}:{layer.training}".encode())
    return digest.hexdigest()


@pytest.fixture
def stateful(tmp_path, monkeypatch):
    (tmp_path / "stateful_models.py").write_text(STATEFUL_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("stateful_models")
    yield module
    importlib.sys.modules.pop("stateful_models", None)


@pytest.mark.parametrize(
    "command",
    [
        ["suggest-map", "stateful_models:base", "stateful_models:raw"],
        ["check", "stateful_models:base", "stateful_models:raw"],
        ["show", "stateful_models:base"],
        ["show", "stateful_models:raw"],
    ],
)
def test_commands_leave_weights_statistics_and_modes_unchanged(stateful, command) -> None:
    before = state_hash(stateful.BASE), state_hash(stateful.RAW)
    result = CliRunner().invoke(main, command)
    assert result.exit_code in (0, 1), result.output
    assert (state_hash(stateful.BASE), state_hash(stateful.RAW)) == before
    assert stateful.BASE.bn.training and not stateful.RAW.bn.training


BAD_MODELS = textwrap.dedent(
    """
    import numpy as np, paddle, torch

    X = {"x": np.linspace(-1, 1, 8, dtype="float32").reshape(2, 4)}

    class Act(torch.nn.Module):
        def __init__(self, fault=None):
            super().__init__()
            self.fault = fault

        def forward(self, x):
            if self.fault == "nan":
                return torch.log(x)        # NaN for the negative entries
            if self.fault == "inf":
                return x / (x - x)         # Inf (and NaN at 0/0)
            return x

    class Net(torch.nn.Module):
        def __init__(self, fault=None, shared=False):
            super().__init__()
            self.a = torch.nn.Linear(4, 4)
            self.b = self.a if shared else torch.nn.Linear(4, 4)
            self.act = Act(fault)
            self.out = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.act(self.b(self.a(x))))

    class PaddleShared(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.a = paddle.nn.Linear(4, 4)
            self.b = self.a
            self.act = paddle.nn.Identity()
            self.out = paddle.nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.act(self.b(self.a(x))))

    def clean():
        torch.manual_seed(0)
        return Net(), X

    def nan():
        torch.manual_seed(0)
        return Net("nan"), X

    def inf():
        torch.manual_seed(0)
        return Net("inf"), X

    def shared():
        torch.manual_seed(0)
        return Net(shared=True), X

    def paddle_shared():
        return PaddleShared(), X

    def wide_inputs():
        return Net(), {"x": np.ones((2, 5), "float32")}

    def no_parameters():
        return torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh()), [X["x"]]

    def paddle_no_parameters():
        return paddle.nn.Sequential(paddle.nn.ReLU(), paddle.nn.Tanh()), [X["x"]]

    def not_a_model():
        return {"weights": [1, 2, 3]}

    class Detached(Net):
        def forward(self, x):
            return super().forward(x).detach()

    def detached():
        torch.manual_seed(0)
        return Detached(), X
    """
)


@pytest.fixture
def bad(tmp_path):
    path = tmp_path / "bad_models.py"
    path.write_text(BAD_MODELS)
    (tmp_path / "broken.py").write_text("def base(:\n")
    return lambda factory: f"{path}:{factory}"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def write_map(tmp_path, pairs: str) -> str:
    path = tmp_path / "map.yaml"
    path.write_text(f"version: 1\npairs:\n{textwrap.indent(textwrap.dedent(pairs), '  ')}")
    return str(path)


def test_inputs_of_the_wrong_shape_name_the_layer_and_the_inputs(bad) -> None:
    code, output = cli("diff", bad("wide_inputs"), bad("clean"))
    assert code == 2
    assert "the base model's forward failed in layer 'a'" in output and "shapes" in output


def test_broken_file_and_non_model_factory(bad, tmp_path) -> None:
    code, output = cli("show", f"{tmp_path / 'broken.py'}:base")
    assert code == 2 and "importing" in output and "SyntaxError" in output
    code, output = cli("show", bad("not_a_model"))
    assert code == 2 and "neither a torch.nn.Module nor a paddle.nn.Layer" in output


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ("- {base: a, raw: missing}\n", "the map pairs raw layer 'missing', which the raw model (Net) does not have"),
        ("- {base: a, raw: a}\n- {base: b, raw: a}\n", "raw layer 'a' is paired twice"),
        ("- {base: a, raw: a, tensors: ['weight -> nothing']}\n", "names raw tensor 'a.nothing', which does not exist"),
    ],
)
def test_a_map_naming_what_the_models_lack_is_an_input_error(bad, tmp_path, pairs, message) -> None:
    code, output = cli("check", bad("clean"), bad("clean"), "--map", write_map(tmp_path, pairs))
    assert code == 2 and message in output


@pytest.mark.parametrize(
    "tensor",
    ["weight -> weight", "weight[0:1, 0:1, 0:1] -> weight"],  # [4, 4] into [2, 4]; an index the tensor lacks
)
def test_a_shape_incompatible_pair_is_a_finding_for_check_and_stops_diff(bad, tmp_path, tensor) -> None:
    mapped = write_map(tmp_path, f"- {{base: a, raw: out, tensors: ['{tensor}']}}\n")
    code, output = cli("check", bad("clean"), bad("clean"), "--map", mapped)
    assert code == 1 and "shape-mismatch" in output
    code, output = cli("diff", bad("clean"), bad("clean"), "--map", mapped)
    assert code == 2 and "cannot copy base 'a' into raw 'out'" in output


@pytest.mark.parametrize(("factory", "note"), [("nan", "NaN in raw only"), ("inf", "Inf in raw only")])
def test_nan_or_inf_in_an_output_is_the_divergence_at_its_layer(bad, tmp_path, factory, note) -> None:
    code, output = cli("diff", bad("clean"), bad(factory), "--json", "--html", str(tmp_path / "r.html"))
    assert code == 1
    document = json.loads(output)
    assert document["first_divergence"]["base"] == "act" and note in document["first_divergence"]["message"]
    assert "inf" in {layer["max_abs"] for layer in document["layers"]}
    assert 'data-path="act"' in (tmp_path / "r.html").read_text()
    code, output = cli("diff", bad("clean"), bad(factory))
    assert code == 1 and "diverged first at base act / raw act" in output


def test_a_layer_shared_under_two_names(bad) -> None:
    code, output = cli("check", bad("shared"), bad("clean"))
    assert code == 1 and "'b' is the same layer object as 'a' (shared weights)" in output
    code, output = cli("diff", bad("shared"), bad("paddle_shared"))
    assert code == 0 and "aligned" in output


def test_models_without_parameters(bad) -> None:
    torch_spec, paddle_spec = bad("no_parameters"), bad("paddle_no_parameters")
    for command in (["check"], ["suggest-map"], ["diff"]):
        code, output = cli(*command, torch_spec, paddle_spec)
        assert code == 0, output
    code, output = cli("diff", torch_spec, paddle_spec, "--json")
    assert json.loads(output)["settings"]["backward"] is False  # nothing to differentiate
    assert cli("show", paddle_spec)[0] == 0


def test_an_output_without_gradient_stops_backward_with_a_clear_error(bad) -> None:
    code, output = cli("diff", bad("clean"), bad("detached"))
    assert code == 2 and "cannot run backward on the raw model" in output and "--forward-only" in output
    assert cli("diff", bad("clean"), bad("detached"), "--forward-only")[0] == 0
