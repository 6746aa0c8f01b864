"""A Qwen2 language model with its head tied to the embedding: HuggingFace ``transformers.Qwen2ForCausalLM``
against ``paddleformers.transformers.Qwen2ForCausalLM``, both with ``tie_word_embeddings``.

Same attribute names on both sides (the decoder under ``model``); both
``lm_head`` layers hold the embedding's tensor, so the map pairs them with no
tensor of their own (the tensor is copied once, through ``embed_tokens``).
paddleformers adds a ``criterion`` layer for the loss, which HF lacks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import paddle
import torch

from realworld.common import Bug, Family, alike, decoder_pairs, layer_at, token_ids, transpose_linear
from realworld.libs import PaddleQwen2Config, PaddleQwen2ForCausalLM, Qwen2Config, Qwen2ForCausalLM

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, POSITIONS, BATCH, SEQUENCE = 64, 32, 2, 4, 2, 64, 32, 2, 16
_CONFIG = {
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
    "tie_word_embeddings": True,
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
    """HuggingFace's Qwen2ForCausalLM, tiny, tied head, eval mode."""
    return Qwen2ForCausalLM(Qwen2Config(**_CONFIG)).eval()


def paddle_model() -> paddle.nn.Layer:
    """paddleformers' Qwen2ForCausalLM, tiny, tied head, eval mode."""
    model = PaddleQwen2ForCausalLM(PaddleQwen2Config(**_CONFIG))
    model.eval()
    return model


def inputs() -> dict[str, np.ndarray]:
    """Random token ids."""
    return token_ids(5, VOCAB, BATCH, SEQUENCE)


def _pairs() -> dict[str, str]:
    decoder = decoder_pairs(["embed_tokens", "layers", "norm", "rotary_emb"], [_LAYER] * LAYERS)
    return {"": "", "model": "model", "lm_head": "lm_head", **{f"model.{b}": f"model.{r}" for b, r in decoder.items()}}


def scale_output(model: Any, path: str) -> None:
    """Make the layer at ``path`` return its output times 1.5: a logit scale the port added."""
    layer = layer_at(model, path)
    forward = layer.forward
    layer.forward = lambda *args, **kwargs: forward(*args, **kwargs) * 1.5


BUGS: tuple[Bug, ...] = (
    alike(
        "transposed-weight",
        "layer 1's q_proj multiplies by its weight transposed",
        "model.layers.1.self_attn.q_proj",
        transpose_linear,
    ),
    alike("scaled-head", "the tied lm_head scales its logits by 1.5", "lm_head", scale_output),
)

FAMILY = Family("qwen2-lm", torch_model, paddle_model, inputs, _pairs(), BUGS)
