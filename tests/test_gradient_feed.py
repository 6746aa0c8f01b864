"""With optimizers, the raw optimizer steps on the base's gradients (each compared first), so the weights
after a step compare the optimizers and not what Adam makes of rounding noise. Found on HF's BERT against
paddleformers' with AdamW: the key projection's bias, whose gradient softmax makes zero up to rounding, moved
by a whole learning rate in opposite directions and was named the first divergence of a correct port."""

import numpy as np
import paddle
import torch

import padiff_graph as pg

WIDTH = 8
X = np.random.default_rng(0).standard_normal((2, 5, WIDTH), dtype=np.float32)


class TorchAttention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query, self.key, self.value = (torch.nn.Linear(WIDTH, WIDTH) for _ in range(3))
        self.out = torch.nn.Linear(WIDTH, 2)

    def forward(self, x):
        scores = torch.softmax(self.query(x) @ self.key(x).transpose(-1, -2), dim=-1)
        return self.out(scores @ self.value(x))


class PaddleAttention(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.query, self.key, self.value = (paddle.nn.Linear(WIDTH, WIDTH) for _ in range(3))
        self.out = paddle.nn.Linear(WIDTH, 2)

    def forward(self, x):
        scores = paddle.nn.functional.softmax(self.query(x) @ self.key(x).transpose([0, 2, 1]), axis=-1)
        return self.out(scores @ self.value(x))


def adamw(model, lr: float = 1e-3, weight_decay: float = 0.01):
    if isinstance(model, torch.nn.Module):
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return paddle.optimizer.AdamW(lr, parameters=model.parameters(), weight_decay=weight_decay)


def _pair(base_is_torch: bool):
    torch.manual_seed(0)
    paddle.seed(0)
    models = (TorchAttention(), PaddleAttention())
    return models if base_is_torch else models[::-1]


def test_adam_on_a_gradient_that_is_rounding_noise_is_no_divergence() -> None:
    for base_is_torch in (True, False):
        base, raw = _pair(base_is_torch)
        report = pg.diff(base, raw, {"x": X}, optimizers=(adamw(base), adamw(raw)), steps=3)
        assert report.ok, report.first_divergence
        key_bias = [c for c in report.comparisons if c.base == "key" and c.stage == "weights:bias"]
        assert len(key_bias) == 3 and all(c.verdict.scaled < c.verdict.floor for c in key_bias)


def test_an_optimizer_with_another_learning_rate_is_still_named() -> None:
    for base_is_torch in (True, False):
        base, raw = _pair(base_is_torch)
        report = pg.diff(base, raw, {"x": X}, optimizers=(adamw(base), adamw(raw, lr=1.2e-3)), steps=2)
        first = report.first_divergence
        assert first is not None and (first.stage, first.step) == ("weights", 0), first


def test_offline_each_model_steps_on_its_own_gradients_and_the_report_says_it_is_unsure(tmp_path) -> None:
    base, raw = _pair(base_is_torch=True)
    pg.assign_weights(base, raw)
    pg.dump(base, {"x": X}, tmp_path / "base", optimizer=adamw(base), steps=2)
    pg.dump(raw, {"x": X}, tmp_path / "raw", optimizer=adamw(raw), steps=2)
    report = pg.compare_dumps(tmp_path / "base", tmp_path / "raw")
    first = report.first_divergence
    assert first is not None and (first.base, first.stage) == ("key", "weights"), first
    unsure = [f for f in report.findings if f.code.value == "ambiguous-divergence"]
    assert unsure and unsure[0].base == "key" and "live diff" in unsure[0].hint
    models_alone = {"steps": [0], "stages": ("forward", "backward", "loss", "grad")}
    assert pg.compare_dumps(tmp_path / "base", tmp_path / "raw", **models_alone).ok


class TorchEncoder(torch.nn.Module):
    """torch's MultiheadAttention: one fused ``in_proj`` for query, key and value, dropout inside its function."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch.nn.TransformerEncoderLayer(WIDTH, 2, 16, dropout=0.1, batch_first=True)
        self.head = torch.nn.Linear(WIDTH, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


class PaddleEncoder(paddle.nn.Layer):
    """paddle's MultiHeadAttention: separate ``q_proj``, ``k_proj`` and ``v_proj``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = paddle.nn.TransformerEncoderLayer(WIDTH, 2, 16, dropout=0.1)
        self.head = paddle.nn.Linear(WIDTH, 2)

    def forward(self, x):
        return self.head(self.encoder(x))


def test_a_fused_tensor_cut_into_parts_is_fed_through_its_regions() -> None:
    """The fused ``in_proj_bias`` was taken for a tie and kept its own gradient: its key part moved by noise."""
    for base_is_torch in (True, False):
        torch.manual_seed(0)
        paddle.seed(0)
        base, raw = (TorchEncoder(), PaddleEncoder()) if base_is_torch else (PaddleEncoder(), TorchEncoder())
        optimizers = (adamw(base), adamw(raw))
        report = pg.diff(base, raw, {"x": X}, optimizers=optimizers, steps=2, random_ops="disable")
        assert report.ok, report.first_divergence
        random_calls = [f.message for f in report.findings if f.code.value == "random-op"]
        assert not base_is_torch or any("multi_head_attention_forward" in m for m in random_calls)
