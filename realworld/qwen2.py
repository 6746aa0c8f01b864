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

from realworld import llama
from realworld.common import Bug, Family, alike, decoder_pairs, layer_at, token_ids, transpose_linear
from realworld.libs import PaddleQwen2Config, PaddleQwen2ForCausalLM, Qwen2Config, Qwen2ForCausalLM

#: Llama's tiny configuration (the same sizes), the head tied
CONFIG = {**llama.CONFIG, "tie_word_embeddings": True}
#: Llama's per-layer pairs, and the MLP's activation layer, which both Qwen2 libraries hold
LAYER = [*llama.LAYER, "mlp.act_fn"]


def torch_model() -> torch.nn.Module:
    """HuggingFace's Qwen2ForCausalLM, tiny, tied head, eval mode."""
    return Qwen2ForCausalLM(Qwen2Config(**CONFIG)).eval()


def paddle_model() -> paddle.nn.Layer:
    """paddleformers' Qwen2ForCausalLM, tiny, tied head, eval mode."""
    model = PaddleQwen2ForCausalLM(PaddleQwen2Config(**CONFIG))
    model.eval()
    return model


def inputs() -> dict[str, np.ndarray]:
    """Random token ids."""
    return token_ids(5, llama.VOCAB, llama.BATCH, llama.SEQUENCE)


def _pairs() -> dict[str, str]:
    decoder = decoder_pairs(["embed_tokens", "layers", "norm", "rotary_emb"], [LAYER] * llama.LAYERS)
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
