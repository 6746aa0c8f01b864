"""Qwen3 and Qwen3-MoE: HuggingFace ``transformers.Qwen3Model`` / ``Qwen3MoeModel`` against paddleformers' classes.

Same attribute names on both sides: a Llama-style decoder with an RMSNorm over
each query and key head (``self_attn.q_norm``, ``self_attn.k_norm``), SiLU as a
layer (``act_fn``) in every MLP and one ``rotary_emb`` on the model. Qwen3-MoE
replaces every MLP by a top-k router (``mlp.gate``, a linear layer) and routed
experts (``mlp.experts.N``), with no shared expert.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import paddle
import torch

from realworld.common import Family, alike, decoder_pairs, set_eps, swap_activation, token_ids, under
from realworld.libs import (
    PaddleQwen3Config,
    PaddleQwen3Model,
    PaddleQwen3MoeConfig,
    PaddleQwen3MoeModel,
    Qwen3Config,
    Qwen3Model,
    Qwen3MoeConfig,
    Qwen3MoeModel,
)

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN, POSITIONS, BATCH, SEQUENCE = 64, 32, 2, 4, 2, 8, 64, 32, 2, 16
EXPERTS, TOP_K, EXPERT_FFN = 4, 2, 16
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
_MOE_CONFIG = {
    **_CONFIG,
    "moe_intermediate_size": EXPERT_FFN,
    "num_experts": EXPERTS,
    "num_experts_per_tok": TOP_K,
    "decoder_sparse_step": 1,
    "norm_topk_prob": True,
    "output_router_logits": False,
}
_ATTENTION = [
    "",
    "self_attn",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "self_attn.q_norm",
    "self_attn.k_norm",
    "mlp",
    "input_layernorm",
    "post_attention_layernorm",
]
_MLP = ["gate_proj", "up_proj", "down_proj", "act_fn"]
_LAYER = [*_ATTENTION, *(f"mlp.{name}" for name in _MLP)]
_MOE_LAYER = [
    *_ATTENTION,
    "mlp.gate",
    "mlp.experts",
    *under([f"mlp.experts.{expert}" for expert in range(EXPERTS)], ["", *_MLP]),
]


def torch_model() -> torch.nn.Module:
    """HuggingFace's Qwen3Model, tiny, eval mode."""
    return Qwen3Model(Qwen3Config(**_CONFIG)).eval()


def paddle_model() -> paddle.nn.Layer:
    """paddleformers' Qwen3Model, tiny, eval mode."""
    model = PaddleQwen3Model(PaddleQwen3Config(**_CONFIG))
    model.eval()
    return model


def torch_moe_model() -> torch.nn.Module:
    """HuggingFace's Qwen3MoeModel, tiny, eval mode."""
    return Qwen3MoeModel(Qwen3MoeConfig(**_MOE_CONFIG)).eval()


def paddle_moe_model() -> paddle.nn.Layer:
    """paddleformers' Qwen3MoeModel, tiny, eval mode."""
    model = PaddleQwen3MoeModel(PaddleQwen3MoeConfig(**_MOE_CONFIG))
    model.eval()
    return model


def inputs() -> dict[str, np.ndarray]:
    """Random token ids."""
    return token_ids(6, VOCAB, BATCH, SEQUENCE)


BUGS = (
    alike(
        "eps",
        "layer 0's per-head key RMSNorm has eps 1 instead of 1e-6",
        "layers.0.self_attn.k_norm",
        partial(set_eps, eps=1.0),
    ),
)

MOE_BUGS = (
    alike(
        "relu-for-silu",
        "layer 1's routed expert 2 uses ReLU instead of SiLU",
        "layers.1.mlp.experts.2.act_fn",
        swap_activation("ReLU"),
    ),
)

FAMILY = Family(
    "qwen3",
    torch_model,
    paddle_model,
    inputs,
    decoder_pairs(["embed_tokens", "layers", "norm", "rotary_emb"], [_LAYER] * LAYERS),
    BUGS,
)

MOE_FAMILY = Family(
    "qwen3-moe",
    torch_moe_model,
    paddle_moe_model,
    inputs,
    decoder_pairs(["embed_tokens", "layers", "norm", "rotary_emb"], [_MOE_LAYER] * LAYERS),
    MOE_BUGS,
)
