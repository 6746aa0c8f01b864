"""A Mixtral-style mixture-of-experts decoder with over 20,000 layers a side.

Torch (base) uses Mixtral's names (``block_sparse_moe.experts.N.w1/w2/w3``),
paddle (raw) another port's (``mlp.experts.N.gate_proj/down_proj/up_proj``):
``w1`` and ``w3`` have the same shape, so only call order can tell which is
``gate_proj`` and which is ``up_proj``; without a traced run the matcher
reports them ambiguous. Built without memory, like ``llama.py``.
"""

from dataclasses import dataclass

import paddle
import torch


@dataclass(frozen=True)
class Config:
    layers: int = 32
    experts: int = 128
    hidden: int = 1024
    ffn: int = 512

    @property
    def layers_per_side(self) -> int:
        """Layers in the torch tree (root included)."""
        per_layer = 1 + 5 + 2 + 1 + self.experts * 5 + 2  # block, attn+4, moe+gate, list, experts, norms
        return 1 + 1 + 1 + 1 + self.layers * per_layer + 1 + 1  # root, model, embed, layers list, norm, head


TWENTY_K = Config()
TINY = Config(layers=2, experts=4, hidden=16, ffn=8)


def expected_pairs(config: Config = TWENTY_K) -> dict[str, str]:
    pairs = {"model.embed_tokens": "model.embed_tokens", "model.norm": "model.norm", "lm_head": "lm_head"}
    for layer in range(config.layers):
        base, raw = f"model.layers.{layer}", f"model.layers.{layer}"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            pairs[f"{base}.self_attn.{name}"] = f"{raw}.self_attn.{name}"
        pairs[f"{base}.block_sparse_moe.gate"] = f"{raw}.mlp.router"
        for expert in range(config.experts):
            for torch_name, paddle_name in (("w1", "gate_proj"), ("w2", "down_proj"), ("w3", "up_proj")):
                pairs[f"{base}.block_sparse_moe.experts.{expert}.{torch_name}"] = (
                    f"{raw}.mlp.experts.{expert}.{paddle_name}"
                )
        pairs[f"{base}.input_layernorm"] = f"{raw}.input_layernorm"
        pairs[f"{base}.post_attention_layernorm"] = f"{raw}.post_attention_layernorm"
    return pairs


class TorchAttention(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self, name, torch.nn.Linear(c.hidden, c.hidden, bias=False))


class TorchExpert(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.w1 = torch.nn.Linear(c.hidden, c.ffn, bias=False)
        self.w2 = torch.nn.Linear(c.ffn, c.hidden, bias=False)
        self.w3 = torch.nn.Linear(c.hidden, c.ffn, bias=False)
        self.act_fn = torch.nn.SiLU()

    def forward(self, x):
        return self.w2(self.act_fn(self.w1(x)) * self.w3(x))


class TorchSparseMoe(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.gate = torch.nn.Linear(c.hidden, c.experts, bias=False)
        self.experts = torch.nn.ModuleList([TorchExpert(c) for _ in range(c.experts)])

    def forward(self, x):
        weights = torch.softmax(self.gate(x), dim=-1)
        return sum(weights[..., i : i + 1] * expert(x) for i, expert in enumerate(self.experts))


class TorchLayer(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.self_attn = TorchAttention(c)
        self.block_sparse_moe = TorchSparseMoe(c)
        self.input_layernorm = torch.nn.LayerNorm(c.hidden)
        self.post_attention_layernorm = torch.nn.LayerNorm(c.hidden)

    def forward(self, x):
        h = self.input_layernorm(x)
        a = self.self_attn
        x = x + a.o_proj(a.q_proj(h) * torch.sigmoid(a.k_proj(h)) + a.v_proj(h))
        return x + self.block_sparse_moe(self.post_attention_layernorm(x))


class TorchModel(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(100, c.hidden)
        self.layers = torch.nn.ModuleList([TorchLayer(c) for _ in range(c.layers)])
        self.norm = torch.nn.LayerNorm(c.hidden)


class TorchMixtral(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.model = TorchModel(c)
        self.lm_head = torch.nn.Linear(c.hidden, 100, bias=False)

    def forward(self, tokens):
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x)
        return self.lm_head(self.model.norm(x))


class PaddleAttention(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self, name, paddle.nn.Linear(c.hidden, c.hidden, bias_attr=False))


class PaddleExpert(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        self.gate_proj = paddle.nn.Linear(c.hidden, c.ffn, bias_attr=False)
        self.up_proj = paddle.nn.Linear(c.hidden, c.ffn, bias_attr=False)
        self.down_proj = paddle.nn.Linear(c.ffn, c.hidden, bias_attr=False)
        self.act = paddle.nn.Silu()

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class PaddleMoe(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        self.experts = paddle.nn.LayerList([PaddleExpert(c) for _ in range(c.experts)])
        self.router = paddle.nn.Linear(c.hidden, c.experts, bias_attr=False)

    def forward(self, x):
        weights = paddle.nn.functional.softmax(self.router(x), axis=-1)
        return sum(weights[..., i : i + 1] * expert(x) for i, expert in enumerate(self.experts))


class PaddleLayer(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        self.input_layernorm = paddle.nn.LayerNorm(c.hidden)
        self.self_attn = PaddleAttention(c)
        self.post_attention_layernorm = paddle.nn.LayerNorm(c.hidden)
        self.mlp = PaddleMoe(c)

    def forward(self, x):
        h = self.input_layernorm(x)
        a = self.self_attn
        x = x + a.o_proj(a.q_proj(h) * paddle.nn.functional.sigmoid(a.k_proj(h)) + a.v_proj(h))
        return x + self.mlp(self.post_attention_layernorm(x))


class PaddleModel(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        self.embed_tokens = paddle.nn.Embedding(100, c.hidden)
        self.layers = paddle.nn.LayerList([PaddleLayer(c) for _ in range(c.layers)])
        self.norm = paddle.nn.LayerNorm(c.hidden)


class PaddleMixtral(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        self.model = PaddleModel(c)
        self.lm_head = paddle.nn.Linear(c.hidden, 100, bias_attr=False)

    def forward(self, tokens):
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x)
        return self.lm_head(self.model.norm(x))


def base(config: Config = TWENTY_K, meta: bool = True):
    if not meta:
        return TorchMixtral(config)
    with torch.device("meta"):
        return TorchMixtral(config)


def raw(config: Config = TWENTY_K, meta: bool = True):
    if not meta:
        return PaddleMixtral(config)
    with paddle.LazyGuard():
        return PaddleMixtral(config)
