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


class TorchAttention(torch.nn.Module):
    """Dropout inside ``scaled_dot_product_attention``, as HF's attention layers pass it in training mode."""

    def __init__(self, positional: bool = False) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(8, 24)
        self.head = torch.nn.Linear(8, 2)
        self.positional = positional

    def forward(self, x):
        q, k, v = self.qkv(x).unsqueeze(0).chunk(3, dim=-1)
        rate = 0.5 if self.training else 0.0
        sdpa = torch.nn.functional.scaled_dot_product_attention
        attended = sdpa(q, k, v, None, rate) if self.positional else sdpa(q, k, v, dropout_p=rate)
        return self.head(attended[0])


class PaddleAttention(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = paddle.nn.Linear(8, 24)
        self.head = paddle.nn.Linear(8, 2)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, axis=-1)
        weights = paddle.nn.functional.softmax(q @ k.T / 8**0.5, axis=-1)
        weights = paddle.nn.functional.dropout(weights, 0.5, training=self.training)
        return self.head(weights @ v)


def test_attention_dropout_is_found_and_switched_off_on_request() -> None:
    """HF's BERT in training mode passes its attention dropout to SDPA: unseen, it was a false divergence."""
    for positional in (False, True):
        stopped = diff(TorchAttention(positional), PaddleAttention(), X)
        assert not stopped.ok and stopped.first_divergence.stage == "preflight"
        found = [f for f in stopped.findings if f.code.value == "random-op"]
        assert found and "scaled_dot_product_attention" in found[0].message
        report = diff(TorchAttention(positional), PaddleAttention(), X, random_ops="disable")
        assert report.ok, report.first_divergence
    quiet = diff(TorchAttention().eval(), PaddleAttention().eval(), X)  # no dropout rate: nothing random
    assert quiet.ok and not [f for f in quiet.findings if f.code.value == "random-op"]
