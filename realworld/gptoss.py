"""GPT-OSS (mixture of experts): HuggingFace ``transformers.GptOssModel`` against paddleformers' ``GptOssModel``.

Same attribute names on both sides: attention with biases and one learned sink
logit per head (``self_attn.sinks``), a top-k router with a bias
(``mlp.router``), and all experts in one layer (``mlp.experts``) holding stacked
``gate_up_proj`` / ``down_proj`` tensors (``[experts, in, out]`` on both sides,
so no layout change), one ``rotary_emb`` on the model.

Both models run in training mode (every dropout is 0): in eval mode
paddleformers 0.4.1's ``GptOssExperts`` weighs the experts' outputs with
``routing_weights.transpose([0, 1])``, which in paddle is the identity (torch's
``transpose(0, 1)`` swaps the axes), so the two libraries disagree there by
construction (see FINDINGS.md); the training path loops over the experts alike.
"""

from __future__ import annotations

import numpy as np
import paddle
import torch

from realworld.common import Family, alike, decoder_pairs, token_ids, transpose_linear
from realworld.libs import GptOssConfig, GptOssModel, PaddleGptOssConfig, PaddleGptOssModel

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, POSITIONS, BATCH, SEQUENCE = 64, 32, 2, 4, 2, 8, 32, 2, 16
EXPERTS, TOP_K, EXPERT_FFN = 4, 2, 32
_CONFIG = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "head_dim": HEAD_DIM,
    "intermediate_size": EXPERT_FFN,
    "num_local_experts": EXPERTS,  # HuggingFace's name
    "num_experts": EXPERTS,  # paddleformers' name
    "num_experts_per_tok": TOP_K,
    "max_position_embeddings": POSITIONS,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.2,  # weights of a trained model's size, so a planted bug shows above bfloat16 noise
    "use_cache": False,
    "tie_word_embeddings": False,
    "output_router_logits": False,
    "attention_dropout": 0.0,
}
_LAYER = [
    "",
    "self_attn",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp",
    "mlp.router",
    "mlp.experts",
    "input_layernorm",
    "post_attention_layernorm",
]


def torch_model() -> torch.nn.Module:
    """HuggingFace's GptOssModel, tiny, training mode."""
    return GptOssModel(GptOssConfig(**_CONFIG)).train()


def paddle_model() -> paddle.nn.Layer:
    """paddleformers' GptOssModel, tiny, training mode."""
    model = PaddleGptOssModel(PaddleGptOssConfig(**_CONFIG))
    model.train()
    return model


def inputs() -> dict[str, np.ndarray]:
    """Random token ids."""
    return token_ids(8, VOCAB, BATCH, SEQUENCE)


BUGS = (
    alike(
        "transposed-weight",
        "layer 1's output projection multiplies by its weight transposed",
        "layers.1.self_attn.o_proj",
        transpose_linear,
    ),
)

FAMILY = Family(
    "gpt-oss",
    torch_model,
    paddle_model,
    inputs,
    decoder_pairs(["embed_tokens", "layers", "norm", "rotary_emb"], [_LAYER] * LAYERS),
    BUGS,
)
