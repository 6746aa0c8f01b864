"""A LLaMA-style decoder: HuggingFace's names in torch (base), PaddleNLP's in paddle (raw).

Built without memory (torch's meta device, paddle's LazyGuard), so the
7B-parameter shapes (32 layers, hidden 4096) map on a laptop. The paddle side
calls the trunk ``llama`` instead of ``model`` and keeps its LM head as a
custom layer with a transposed weight, as PaddleNLP does.
"""

from dataclasses import dataclass

import paddle
import torch


@dataclass(frozen=True)
class Config:
    layers: int = 32
    hidden: int = 4096
    intermediate: int = 11008
    vocab: int = 32000
    heads: int = 32


SEVEN_B = Config()
TINY = Config(layers=2, hidden=32, intermediate=64, vocab=50, heads=4)

_LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
_LINEARS += ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"]


def expected_pairs(config: Config = SEVEN_B) -> dict[str, str]:
    pairs = {"model.embed_tokens": "llama.embed_tokens", "model.norm": "llama.norm", "lm_head": "lm_head"}
    for layer in range(config.layers):
        for name in _LINEARS:
            pairs[f"model.layers.{layer}.{name}"] = f"llama.layers.{layer}.{name}"
    return pairs


EXPECTED_PAIRS = expected_pairs()
EXPECTED_FINDINGS: set[str] = set()


class TorchRMSNorm(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(hidden))

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)


class TorchAttention(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.q_proj = torch.nn.Linear(c.hidden, c.hidden, bias=False)
        self.k_proj = torch.nn.Linear(c.hidden, c.hidden, bias=False)
        self.v_proj = torch.nn.Linear(c.hidden, c.hidden, bias=False)
        self.o_proj = torch.nn.Linear(c.hidden, c.hidden, bias=False)


class TorchMlp(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.gate_proj = torch.nn.Linear(c.hidden, c.intermediate, bias=False)
        self.up_proj = torch.nn.Linear(c.hidden, c.intermediate, bias=False)
        self.down_proj = torch.nn.Linear(c.intermediate, c.hidden, bias=False)
        self.act_fn = torch.nn.SiLU()


class TorchDecoderLayer(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.self_attn = TorchAttention(c)
        self.mlp = TorchMlp(c)
        self.input_layernorm = TorchRMSNorm(c.hidden)
        self.post_attention_layernorm = TorchRMSNorm(c.hidden)


class TorchRotary(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        dim = c.hidden // c.heads
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, dim, 2).float() / dim), persistent=False)


class TorchLlamaModel(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(c.vocab, c.hidden)
        self.layers = torch.nn.ModuleList([TorchDecoderLayer(c) for _ in range(c.layers)])
        self.norm = TorchRMSNorm(c.hidden)
        self.rotary_emb = TorchRotary(c)


class TorchLlamaForCausalLM(torch.nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.model = TorchLlamaModel(c)
        self.lm_head = torch.nn.Linear(c.hidden, c.vocab, bias=False)


class PaddleRMSNorm(paddle.nn.Layer):
    def __init__(self, hidden):
        super().__init__()
        self.weight = self.create_parameter([hidden], default_initializer=paddle.nn.initializer.Constant(1.0))


class PaddleAttention(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        self.q_proj = paddle.nn.Linear(c.hidden, c.hidden, bias_attr=False)
        self.k_proj = paddle.nn.Linear(c.hidden, c.hidden, bias_attr=False)
        self.v_proj = paddle.nn.Linear(c.hidden, c.hidden, bias_attr=False)
        self.o_proj = paddle.nn.Linear(c.hidden, c.hidden, bias_attr=False)


class PaddleMlp(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        self.gate_proj = paddle.nn.Linear(c.hidden, c.intermediate, bias_attr=False)
        self.up_proj = paddle.nn.Linear(c.hidden, c.intermediate, bias_attr=False)
        self.down_proj = paddle.nn.Linear(c.intermediate, c.hidden, bias_attr=False)


class PaddleDecoderLayer(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        self.self_attn = PaddleAttention(c)
        self.mlp = PaddleMlp(c)
        self.input_layernorm = PaddleRMSNorm(c.hidden)
        self.post_attention_layernorm = PaddleRMSNorm(c.hidden)


class PaddleLlamaModel(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        self.embed_tokens = paddle.nn.Embedding(c.vocab, c.hidden)
        self.layers = paddle.nn.LayerList([PaddleDecoderLayer(c) for _ in range(c.layers)])
        self.norm = PaddleRMSNorm(c.hidden)


class PaddleLMHead(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        self.weight = self.create_parameter([c.hidden, c.vocab])


class PaddleLlamaForCausalLM(paddle.nn.Layer):
    def __init__(self, c: Config):
        super().__init__()
        self.llama = PaddleLlamaModel(c)
        self.lm_head = PaddleLMHead(c)


def base(config: Config = SEVEN_B):
    """The torch model on the meta device: shapes only, no memory."""
    with torch.device("meta"):
        return TorchLlamaForCausalLM(config)


def raw(config: Config = SEVEN_B):
    """The paddle model under LazyGuard: parameters are never materialised."""
    with paddle.LazyGuard():
        return PaddleLlamaForCausalLM(config)
