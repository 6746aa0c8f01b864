"""Op-level comparison names the first differing API call, and stays out of the way when off."""

import subprocess
import sys

import numpy as np
import paddle
import torch

from padiff_graph import diff
from padiff_graph.knowledge.apis import API_EQUIVALENTS

X = [np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32) * 4]


class TorchMlp(torch.nn.Module):
    """A leaf layer with functional internals: no sublayer to blame."""

    def __init__(self):
        super().__init__()
        self.w1 = torch.nn.Parameter(torch.randn(32, 8) / 3)
        self.w2 = torch.nn.Parameter(torch.randn(4, 32) / 6)

    def forward(self, x):
        hidden = torch.nn.functional.softmax(torch.nn.functional.linear(x, self.w1), dim=-1)
        return torch.nn.functional.linear(hidden, self.w2)


class PaddleMlp(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.w1 = self.create_parameter([8, 32])
        self.w2 = self.create_parameter([32, 4])

    def forward(self, x):
        hidden = paddle.nn.functional.softmax(paddle.nn.functional.linear(x, self.w1), axis=0)  # the wrong axis
        return paddle.nn.functional.linear(hidden, self.w2)


def models():
    return (
        torch.nn.Sequential(torch.nn.Linear(8, 8), TorchMlp()),
        paddle.nn.Sequential(paddle.nn.Linear(8, 8), PaddleMlp()),
    )


def test_the_first_differing_op_inside_the_diverging_layer_is_named() -> None:
    base, raw = models()
    report = diff(base, raw, X, op_level=True)
    first = report.first_divergence
    assert (first.base, first.stage) == ("1", "forward")
    assert (first.op.base_api, first.op.raw_api) == ("torch.nn.functional.softmax", "paddle.nn.functional.softmax")
    assert first.op.position == 1  # the linear before it agreed
    assert "first differing op: torch.nn.functional.softmax vs paddle.nn.functional.softmax" in first.message
    assert diff(*models(), X).first_divergence.op is None  # off by default


def test_a_fault_between_layers_is_traced_to_the_op_in_the_caller() -> None:
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_diff import GluePaddle, GlueTorch

    report = diff(GlueTorch(), GluePaddle(), X, single_step=True, diff_phase="forward", op_level=True)
    (divergence,) = report.divergences
    assert (divergence.base, divergence.stage) == ("", "forward")
    assert divergence.op.base_api == "torch.nn.functional.gelu"


def test_the_api_table_can_be_overridden() -> None:
    table = {name: names for name, names in API_EQUIVALENTS.items() if name != "softmax"}
    report = diff(*models(), X, op_level=True, api_table=table)
    assert report.first_divergence.op.base_api == "torch.nn.functional.linear"  # the next op it knows


PROBE = """
import sys
sys.path.insert(0, {root!r})
import numpy as np, paddle, torch
originals = {{name: getattr(paddle.nn.functional, name) for name in ("gelu", "linear", "dropout")}}
originals["matmul"] = paddle.matmul
import padiff_graph
def unchanged():
    return (
        all(getattr(paddle.nn.functional, n) is f for n, f in originals.items() if n != "matmul")
        and paddle.matmul is originals["matmul"]
        and not torch._C._is_torch_function_mode_enabled()
    )
print("after import", unchanged())
captured = []
class Late(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc = paddle.nn.Linear(8, 8)
    def forward(self, x):
        from paddle.nn.functional import gelu  # imported while recording is active
        captured.append(gelu)
        return gelu(self.fc(x))
class TorchLate(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
    def forward(self, x):
        return torch.nn.functional.gelu(self.fc(x))
x = [np.ones((2, 8), np.float32)]
print("diff ok", padiff_graph.diff(TorchLate(), Late(), x, op_level=True).ok)
print("after op-level run", unchanged())
value = captured[0](paddle.to_tensor(1.0))  # the captured wrapper still works, and records nothing
print("captured works", abs(float(value) - 0.8413) < 1e-3)
print("plain diff ok", padiff_graph.diff(TorchLate(), Late(), x).ok, unchanged())
"""


def test_frameworks_are_untouched_unless_op_level_is_running() -> None:
    root = str(__import__("pathlib").Path(__file__).resolve().parent.parent)
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(root=root)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines == [
        "after import True",
        "diff ok True",
        "after op-level run True",
        "captured works True",
        "plain diff ok True True",
    ]
