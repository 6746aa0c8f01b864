"""GLM-4-MoE: HuggingFace ``transformers.Glm4MoeModel`` against ``paddleformers.transformers.Glm4MoeModel``.

Same attribute names on both sides: attention with an RMSNorm over
each query and key head (``use_qk_norm``), rotary embedding on half of each
head (``partial_rotary_factor``); layer 0 is dense (``first_k_dense_replace=1``),
layer 1 a mixture of experts with a sigmoid top-k router (``mlp.gate``, a plain
``[experts, hidden]`` weight on both sides), routed ``mlp.experts.N`` and
``mlp.shared_experts``; SiLU is a layer (``act_fn``) in every MLP.
"""

from __future__ import annotations

import numpy as np
import paddle
import torch

from realworld.common import Family, alike, dense_then_moe_pairs, drop_skip, token_ids
from realworld.libs import Glm4MoeConfig, Glm4MoeModel, PaddleGlm4MoeConfig, PaddleGlm4MoeModel

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
    "moe_intermediate_size": EXPERT_FFN,
    "n_routed_experts": EXPERTS,
    "num_experts_per_tok": TOP_K,
    "n_shared_experts": 1,
    "first_k_dense_replace": 1,
    "n_group": 1,
    "topk_group": 1,
    "partial_rotary_factor": 0.5,
    "use_qk_norm": True,
    "max_position_embeddings": POSITIONS,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.2,  # weights of a trained model's size, so a planted bug shows above bfloat16 noise
    "use_cache": False,
    "tie_word_embeddings": False,
}
_ATTENTION = ["", "q_proj", "k_proj", "v_proj", "o_proj", "q_norm", "k_norm"]


def torch_model() -> torch.nn.Module:
    """HuggingFace's Glm4MoeModel, tiny, eval mode."""
    return Glm4MoeModel(Glm4MoeConfig(**_CONFIG)).eval()


def paddle_model() -> paddle.nn.Layer:
    """paddleformers' Glm4MoeModel, tiny, eval mode."""
    model = PaddleGlm4MoeModel(PaddleGlm4MoeConfig(**_CONFIG))
    model.eval()
    return model


def inputs() -> dict[str, np.ndarray]:
    """Random token ids."""
    return token_ids(10, VOCAB, BATCH, SEQUENCE)


BUGS = (
    alike(
        "missing-residual", "decoder layer 0 drops its input's skip connection from its output", "layers.0", drop_skip
    ),
)

FAMILY = Family(
    "glm4-moe",
    torch_model,
    paddle_model,
    inputs,
    dense_then_moe_pairs(_ATTENTION, EXPERTS, LAYERS),
    BUGS,
)
