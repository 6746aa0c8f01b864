"""DeepSeek-V3: HuggingFace ``transformers.DeepseekV3Model`` against ``paddleformers.transformers.DeepseekV3Model``.

Multi-head latent attention (MLA) on both sides under the same names: queries
through a low-rank ``q_a_proj`` → ``q_a_layernorm`` → ``q_b_proj``, keys and
values through ``kv_a_proj_with_mqa`` → ``kv_a_layernorm`` → ``kv_b_proj``, with
YaRN rotary embeddings. Layer 0 is dense (``first_k_dense_replace=1``), layer 1 a
mixture of experts: a sigmoid top-k router (``mlp.gate``, a plain weight, ``[experts,
hidden]`` in HuggingFace and ``[hidden, experts]`` in paddleformers), routed
``mlp.experts.N`` and ``mlp.shared_experts``. paddleformers' config needs the
sequence length (``seq_length``: its attention reshapes to it) and a YaRN
``rope_scaling`` (its rotary embedding accepts no other), and both run
``sdpa`` attention (paddleformers 0.4.1's eager MLA attention leaves the scores
unscaled; see FINDINGS.md).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import paddle
import torch

from realworld.common import Family, alike, dense_then_moe_pairs, set_eps, token_ids
from realworld.libs import DeepseekV3Config, DeepseekV3Model, PaddleDeepseekV3Config, PaddleDeepseekV3Model

VOCAB, HIDDEN, LAYERS, HEADS, FFN, POSITIONS, BATCH, SEQUENCE = 64, 32, 2, 4, 64, 32, 2, 16
EXPERTS, TOP_K, EXPERT_FFN = 4, 2, 16
_CONFIG = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": HEADS,
    "intermediate_size": FFN,
    "moe_intermediate_size": EXPERT_FFN,
    "n_routed_experts": EXPERTS,
    "num_experts_per_tok": TOP_K,
    "n_shared_experts": 1,
    "first_k_dense_replace": 1,
    # DeepSeek-V3's router, spelled out: paddleformers' defaults are DeepSeek-V2's (softmax, greedy, scale 1)
    "scoring_func": "sigmoid",
    "topk_method": "noaux_tc",
    "norm_topk_prob": True,
    "routed_scaling_factor": 2.5,
    "n_group": 1,
    "topk_group": 1,
    "q_lora_rank": 24,
    "kv_lora_rank": 16,
    "qk_rope_head_dim": 4,
    "head_dim": 4,  # HuggingFace's rotary embedding takes its size from head_dim: the rope part of a head
    "qk_nope_head_dim": 8,
    "v_head_dim": 8,
    "rope_scaling": {
        "type": "yarn",
        "rope_type": "yarn",
        "factor": 1.0,
        "original_max_position_embeddings": POSITIONS,
        "beta_fast": 32,
        "beta_slow": 1,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
    },
    "seq_length": SEQUENCE,
    # paddleformers' eager attention for DeepSeek scales the query by softmax_scale * sqrt(head_dim) for a flash
    # kernel that divides by sqrt(head_dim), then multiplies the scores by that same factor instead: no 1/sqrt(d)
    "_attn_implementation": "sdpa",
    "max_position_embeddings": POSITIONS,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.2,  # weights of a trained model's size, so a planted bug shows above bfloat16 noise
    "use_cache": False,
    "tie_word_embeddings": False,
}
_ATTENTION = [
    "",
    "q_a_proj",
    "q_a_layernorm",
    "q_b_proj",
    "kv_a_proj_with_mqa",
    "kv_a_layernorm",
    "kv_b_proj",
    "o_proj",
]


def torch_model() -> torch.nn.Module:
    """HuggingFace's DeepseekV3Model, tiny, eval mode."""
    return DeepseekV3Model(DeepseekV3Config(**_CONFIG)).eval()


def paddle_model() -> paddle.nn.Layer:
    """paddleformers' DeepseekV3Model, tiny, eval mode."""
    model = PaddleDeepseekV3Model(PaddleDeepseekV3Config(**_CONFIG))
    model.eval()
    return model


def inputs() -> dict[str, np.ndarray]:
    """Random token ids."""
    return token_ids(9, VOCAB, BATCH, SEQUENCE)


BUGS = (
    alike(
        "eps",
        "layer 0's latent key/value RMSNorm has eps 1 instead of 1e-6",
        "layers.0.self_attn.kv_a_layernorm",
        partial(set_eps, eps=1.0),
    ),
)

FAMILY = Family(
    "deepseek-v3",
    torch_model,
    paddle_model,
    inputs,
    dense_then_moe_pairs(_ATTENTION, EXPERTS, LAYERS),
    BUGS,
)
