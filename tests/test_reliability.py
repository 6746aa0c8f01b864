"""Bad input and faults: never a traceback, never a wrong answer, never a changed model."""

import hashlib
import importlib
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
