"""BatchNorm's running variance after a training step: torch blends in the unbiased batch variance, paddle
the biased one. Found training torchvision's ResNet-18 against paddle.vision's with an optimizer: every
correct port failed at the last BatchNorm's running variance (a few values per channel there)."""

import numpy as np
import paddle
import torch

import padiff_graph as pg

IMAGES = np.random.default_rng(0).standard_normal((2, 3, 4, 4), dtype=np.float32)


class TorchNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.norm = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(self.norm(self.conv(x)).flatten(1))


class PaddleNet(paddle.nn.Layer):
    def __init__(self, momentum: float = 0.9) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3)
        self.norm = paddle.nn.BatchNorm2D(4, momentum=momentum)
        self.fc = paddle.nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(self.norm(self.conv(x)).flatten(1))


def sgd(model):
    if isinstance(model, torch.nn.Module):
        return torch.optim.SGD(model.parameters(), lr=0.1)
    return paddle.optimizer.SGD(0.1, parameters=model.parameters())


def test_running_variances_apart_by_the_unbiased_correction_agree() -> None:
    for base, raw in ((TorchNet(), PaddleNet()), (PaddleNet(), TorchNet())):
        report = pg.diff(base, raw, {"x": IMAGES}, optimizers=(sgd(base), sgd(raw)), steps=3)
        assert report.ok, report.first_divergence
        variances = [c for c in report.comparisons if c.stage in ("weights:running_var", "weights:_variance")]
        assert len(variances) == 3 and any("unbiased batch variance" in c.verdict.note for c in variances)


def test_a_momentum_given_the_other_framework_s_way_is_still_named() -> None:
    base, raw = TorchNet(), PaddleNet(momentum=0.1)  # paddle's momentum weighs the running value: 0.9 is torch's 0.1
    report = pg.diff(base, raw, {"x": IMAGES}, optimizers=(sgd(base), sgd(raw)), steps=2)
    first = report.first_divergence
    assert first is not None and (first.base, first.stage, first.step) == ("norm", "weights", 0), first


def test_the_offline_compare_allows_the_same_difference(tmp_path) -> None:
    base, raw = TorchNet(), PaddleNet()
    pg.assign_weights(base, raw)
    pg.dump(base, {"x": IMAGES}, tmp_path / "base", optimizer=sgd(base), steps=2)
    pg.dump(raw, {"x": IMAGES}, tmp_path / "raw", optimizer=sgd(raw), steps=2)
    report = pg.compare_dumps(tmp_path / "base", tmp_path / "raw")
    assert report.ok, report.first_divergence
    assert any("unbiased batch variance" in c.verdict.note for c in report.comparisons if c.stage.startswith("weights"))


def test_the_checks_that_run_the_models_again_leave_the_statistics_of_the_run() -> None:
    """A training run checks its first step alone first, and replays run the models again: the running
    statistics were updated once more each time, on one side (paddle holds them as frozen parameters)."""
    import copy

    base, raw = TorchNet(), PaddleNet()
    reference = copy.deepcopy(base)
    for _ in range(2):  # the two steps of the run, whose optimizers leave the weights as they are
        reference(torch.from_numpy(IMAGES))
    still = (torch.optim.SGD(base.parameters(), lr=0.0), paddle.optimizer.SGD(0.0, parameters=raw.parameters()))
    report = pg.diff(base, raw, {"x": IMAGES}, optimizers=still, steps=2)
    assert report.ok, report.first_divergence
    np.testing.assert_allclose(base.norm.running_mean.numpy(), reference.norm.running_mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(raw.norm._mean.numpy(), reference.norm.running_mean.numpy(), rtol=1e-5)
