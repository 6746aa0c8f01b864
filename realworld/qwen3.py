"""Qwen3: HuggingFace ``transformers.Qwen3Model`` against ``paddleformers.transformers.Qwen3Model``.

Same attribute names on both sides: a Llama-style decoder with an RMSNorm over
each query and key head (``self_attn.q_norm``, ``self_attn.k_norm``), SiLU as a
layer (``mlp.act_fn``) in every MLP and one ``rotary_emb`` on the model.
"""

from __future__ import annotations

import numpy as np
import paddle
import torch

from realworld.common import Bug, Family, decoder_pairs, set_eps
from realworld.libs import PaddleQwen3Config, PaddleQwen3Model, Qwen3Config, Qwen3Model

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN, POSITIONS, BATCH, SEQUENCE = 64, 32, 2, 4, 2, 8, 64, 32, 2, 16
_CONFIG = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "head_dim": HEAD_DIM,
    "intermediate_size": FFN,
    "max_position_embeddings": POSITIONS,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.2,  # weights of a trained model's size, so a planted bug shows above bfloat16 noise
    "use_cache": False,
    "tie_word_embeddings": False,
}
_LAYER = [
    "",
    "self_attn",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "self_attn.q_norm",
    "self_attn.k_norm",
    "mlp",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
    "mlp.act_fn",
    "input_layernorm",
    "post_attention_layernorm",
]


def torch_model() -> torch.nn.Module:
    """HuggingFace's Qwen3Model, tiny, eval mode."""
    return Qwen3Model(Qwen3Config(**_CONFIG)).eval()


def paddle_model() -> paddle.nn.Layer:
    """paddleformers' Qwen3Model, tiny, eval mode."""
    model = PaddleQwen3Model(PaddleQwen3Config(**_CONFIG))
    model.eval()
    return model


def inputs() -> dict[str, np.ndarray]:
    """Random token ids."""
    return {"input_ids": np.random.default_rng(6).integers(1, VOCAB, (BATCH, SEQUENCE), dtype=np.int64)}


BUGS = (
    Bug(
        "eps",
        "layer 0's per-head key RMSNorm has eps 1 instead of 1e-6",
        lambda m: set_eps(m, "layers.0.self_attn.k_norm", 1.0),
        lambda m: set_eps(m, "layers.0.self_attn.k_norm", 1.0),
        "layers.0.self_attn.k_norm",
        "layers.0.self_attn.k_norm",
    ),
)

FAMILY = Family(
    "qwen3",
    torch_model,
    paddle_model,
    inputs,
    decoder_pairs(["embed_tokens", "layers", "norm", "rotary_emb"], LAYERS, _LAYER),
    BUGS,
)
