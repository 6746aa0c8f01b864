"""Random calls inside a forward (functional dropout, sampling) are found during the run."""

import numpy as np
import paddle
import torch

from padiff_graph import diff
from padiff_graph.core.records import Severity

X = [np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32)]


class TorchNet(torch.nn.Module):
    def __init__(self, noise=False):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.head = torch.nn.Linear(8, 2)
        self.noise = noise

    def forward(self, x):
        h = torch.nn.functional.dropout(self.fc(x), 0.5, self.training)
        if self.noise:
            h = h + torch.randn_like(h)
        return self.head(h)


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc = paddle.nn.Linear(8, 8)
        self.head = paddle.nn.Linear(8, 2)

    def forward(self, x):
        return self.head(paddle.nn.functional.dropout(self.fc(x), 0.5, training=self.training))


def test_functional_dropout_stops_the_run_with_its_layer_path() -> None:
    report = diff(TorchNet(), PaddleNet(), X)
    assert not report.ok and report.first_divergence.stage == "preflight"
    assert report.first_divergence.base == ""  # called in the root's forward
    found = [f for f in report.findings if f.code.value == "random-op"]
    assert found and "torch.nn.functional.dropout" in found[0].message
    assert not report.comparisons


def test_functional_dropout_is_switched_off_on_request_and_only_for_the_run() -> None:
    original = paddle.nn.functional.dropout
    report = diff(TorchNet(), PaddleNet(), X, random_ops="disable")
    assert report.ok, report.first_divergence
    infos = {(f.base, f.raw) for f in report.findings if f.code.value == "random-op"}
    assert infos == {("", None), (None, "")}
    assert all(f.severity is Severity.INFO for f in report.findings if f.code.value == "random-op")
    assert paddle.nn.functional.dropout is original
    assert not torch._C._is_torch_function_mode_enabled()
    # in eval mode, dropout is not random: nothing to report
    quiet = diff(TorchNet().eval(), PaddleNet().eval(), X)
    assert quiet.ok and not [f for f in quiet.findings if f.code.value == "random-op"]


def test_sampling_cannot_be_switched_off_and_is_reported() -> None:
    report = diff(TorchNet(noise=True), PaddleNet(), X, random_ops="disable")
    sampling = [f for f in report.findings if "randn_like" in f.message]
    assert sampling and sampling[0].severity is Severity.ERROR and sampling[0].base == ""
