"""ERNIE 4.5 (dense): HuggingFace ``transformers.Ernie4_5Model`` against ``paddleformers.transformers.Ernie4_5Model``.

Same attribute names on both sides: a Llama-style decoder, SiLU as a layer
(``mlp.act_fn``) in every MLP, one ``rotary_emb`` on the model. paddleformers
also keeps a ``hidden_dropout`` layer in each decoder layer, which is not paired.
"""

from __future__ import annotations

import numpy as np
import paddle
import torch

from realworld.common import Family, alike, decoder_pairs, swap_activation, token_ids
from realworld.libs import Ernie4_5Config, Ernie4_5Model, PaddleErnie4_5Config, PaddleErnie4_5Model

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
    "rope_theta": 10000.0,  # the two libraries' defaults differ (HuggingFace 500000, paddleformers 10000)
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
    "mlp",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
    "mlp.act_fn",
    "input_layernorm",
    "post_attention_layernorm",
]


def torch_model() -> torch.nn.Module:
    """HuggingFace's Ernie4_5Model, tiny, eval mode."""
    return Ernie4_5Model(Ernie4_5Config(**_CONFIG)).eval()


def paddle_model() -> paddle.nn.Layer:
    """paddleformers' Ernie4_5Model, tiny, eval mode."""
    model = PaddleErnie4_5Model(PaddleErnie4_5Config(**_CONFIG))
    model.eval()
    return model


def inputs() -> dict[str, np.ndarray]:
    """Random token ids and an all-ones attention mask (without a mask paddleformers' ERNIE attends non-causally)."""
    ids = token_ids(7, VOCAB, BATCH, SEQUENCE)
    return {**ids, "attention_mask": np.ones_like(ids["input_ids"])}


BUGS = (
    alike("relu-for-silu", "layer 1's MLP uses ReLU instead of SiLU", "layers.1.mlp.act_fn", swap_activation("ReLU")),
)

FAMILY = Family(
    "ernie4.5",
    torch_model,
    paddle_model,
    inputs,
    decoder_pairs(["embed_tokens", "layers", "norm", "rotary_emb"], [_LAYER] * LAYERS),
    BUGS,
)
