"""Mixture of experts: HuggingFace ``transformers.Qwen2MoeModel`` against ``paddleformers.transformers.Qwen2MoeModel``.

Same attribute names on both sides: a top-k router (``mlp.gate``), routed
experts, a shared expert with its sigmoid gate, SiLU as a layer (``act_fn``) in
every expert, and one ``rotary_emb`` on the model. HuggingFace also keeps an
unused ``rotary_emb`` in each attention layer, which is not paired.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import paddle
import torch

from realworld.common import Family, alike, decoder_pairs, set_eps, swap_activation, token_ids, under
from realworld.libs import PaddleQwen2MoeConfig, PaddleQwen2MoeModel, Qwen2MoeConfig, Qwen2MoeModel

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, POSITIONS, BATCH, SEQUENCE = 64, 32, 2, 4, 2, 32, 2, 16
EXPERTS, TOP_K, EXPERT_FFN, SHARED_FFN = 4, 2, 16, 32
_CONFIG = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "intermediate_size": 64,
    "moe_intermediate_size": EXPERT_FFN,
    "shared_expert_intermediate_size": SHARED_FFN,
    "num_experts": EXPERTS,
    "num_experts_per_tok": TOP_K,
    "decoder_sparse_step": 1,
    "norm_topk_prob": False,
    "max_position_embeddings": POSITIONS,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.2,  # weights of a trained model's size, so a planted bug shows above bfloat16 noise
    "use_cache": False,
    "tie_word_embeddings": False,
    "output_router_logits": False,
}
_MLP = ["", "gate_proj", "up_proj", "down_proj", "act_fn"]
_LAYER = [
    "",
    "self_attn",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp",
    "mlp.gate",
    "mlp.experts",
    "mlp.shared_expert_gate",
    "input_layernorm",
    "post_attention_layernorm",
    *under(["mlp.shared_expert", *(f"mlp.experts.{expert}" for expert in range(EXPERTS))], _MLP),
]


def torch_model() -> torch.nn.Module:
    """HuggingFace's Qwen2MoeModel, tiny, eval mode."""
    return Qwen2MoeModel(Qwen2MoeConfig(**_CONFIG)).eval()


def paddle_model() -> paddle.nn.Layer:
    """paddleformers' Qwen2MoeModel, tiny, eval mode."""
    model = PaddleQwen2MoeModel(PaddleQwen2MoeConfig(**_CONFIG))
    model.eval()
    return model


def inputs() -> dict[str, np.ndarray]:
    """Random token ids."""
    return token_ids(5, VOCAB, BATCH, SEQUENCE)


BUGS = (
    alike(
        "relu-for-silu",
        "layer 0's shared expert uses ReLU instead of SiLU",
        "layers.0.mlp.shared_expert.act_fn",
        swap_activation("ReLU"),
    ),
    alike(
        "eps",
        "layer 0's post-attention RMSNorm has eps 1e-1 instead of 1e-6",
        "layers.0.post_attention_layernorm",
        partial(set_eps, eps=1e-1),
    ),
)

FAMILY = Family(
    "qwen2-moe",
    torch_model,
    paddle_model,
    inputs,
    decoder_pairs(["embed_tokens", "layers", "norm", "rotary_emb"], [_LAYER] * LAYERS),
    BUGS,
)
