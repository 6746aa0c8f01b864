"""A LLaMA decoder: HuggingFace ``transformers.LlamaModel`` against ``paddleformers.transformers.LlamaModel``.

Same attribute names on both sides; HuggingFace keeps one ``rotary_emb`` on the
model and a ``SiLU`` layer in each MLP, paddleformers one ``rotary_emb`` per
attention layer and SiLU as a function, so neither of those is paired.
"""

from __future__ import annotations

import numpy as np
import paddle
import torch

from realworld.common import Family, alike, decoder_pairs, drop_skip, token_ids, transpose_linear
from realworld.libs import LlamaConfig, LlamaModel, PaddleLlamaConfig, PaddleLlamaModel

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, POSITIONS, BATCH, SEQUENCE = 64, 32, 2, 4, 2, 64, 32, 2, 16
CONFIG = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "intermediate_size": FFN,
    "max_position_embeddings": POSITIONS,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.2,  # weights of a trained model's size, so a planted bug shows above bfloat16 noise
    "use_cache": False,
    "tie_word_embeddings": False,
}
LAYER = [
    "",
    "self_attn",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
    "input_layernorm",
    "post_attention_layernorm",
]


def torch_model() -> torch.nn.Module:
    """HuggingFace's LlamaModel, tiny, eval mode."""
    return LlamaModel(LlamaConfig(**CONFIG)).eval()


def paddle_model() -> paddle.nn.Layer:
    """paddleformers' LlamaModel, tiny, eval mode."""
    model = PaddleLlamaModel(PaddleLlamaConfig(**CONFIG))
    model.eval()
    return model


def inputs() -> dict[str, np.ndarray]:
    """Random token ids."""
    return token_ids(4, VOCAB, BATCH, SEQUENCE)


BUGS = (
    alike(
        "transposed-weight",
        "layer 0's q_proj multiplies by its weight transposed",
        "layers.0.self_attn.q_proj",
        transpose_linear,
    ),
    alike(
        "missing-residual", "decoder layer 1 drops its input's skip connection from its output", "layers.1", drop_skip
    ),
)

FAMILY = Family(
    "llama",
    torch_model,
    paddle_model,
    inputs,
    decoder_pairs(["embed_tokens", "layers", "norm"], [LAYER] * LAYERS),
    BUGS,
)
