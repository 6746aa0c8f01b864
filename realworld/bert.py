"""BERT: HuggingFace ``transformers.BertModel`` against ``paddleformers.transformers.BertModel``.

paddleformers builds its encoder from paddle's ``TransformerEncoderLayer``: flat
(``self_attn.q_proj``, ``linear1``, ``norm1``) where HuggingFace nests
``attention.self.query``, ``intermediate.dense``, ``attention.output.LayerNorm``,
and its GELU is a plain function (``activation``), not a layer.
"""

from __future__ import annotations

import numpy as np
import paddle
import torch

from realworld.common import Bug, Family, replace, token_ids, transpose_linear
from realworld.libs import BertConfig, BertModel, PaddleBertConfig, PaddleBertModel

VOCAB, HIDDEN, LAYERS, HEADS, FFN, POSITIONS, BATCH, SEQUENCE = 64, 32, 2, 4, 64, 32, 2, 16
_CONFIG = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "intermediate_size": FFN,
    "max_position_embeddings": POSITIONS,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-12,
    "initializer_range": 0.2,  # weights of a trained model's size, so a planted bug shows above bfloat16 noise
}

_EMBEDDINGS = {
    "word_embeddings": "word_embeddings",
    "position_embeddings": "position_embeddings",
    "token_type_embeddings": "token_type_embeddings",
    "LayerNorm": "layer_norm",
}
_LAYER = {
    "": "",
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "linear1",
    "output.dense": "linear2",
    "output.LayerNorm": "norm2",
}


def _pairs() -> dict[str, str]:
    pairs = {"embeddings": "embeddings", "encoder": "encoder", "pooler": "pooler", "pooler.dense": "pooler.dense"}
    pairs["pooler.activation"] = "pooler.activation"
    pairs |= {f"embeddings.{hf}": f"embeddings.{pf}" for hf, pf in _EMBEDDINGS.items()}
    for index in range(LAYERS):
        for hf, pf in _LAYER.items():
            pairs[f"encoder.layer.{index}{'.' if hf else ''}{hf}"] = f"encoder.layers.{index}{'.' if pf else ''}{pf}"
    return pairs


def torch_model() -> torch.nn.Module:
    """HuggingFace's BertModel, tiny, eval mode."""
    return BertModel(BertConfig(**_CONFIG), add_pooling_layer=True).eval()


def paddle_model() -> paddle.nn.Layer:
    """paddleformers' BertModel, tiny, eval mode."""
    model = PaddleBertModel(PaddleBertConfig(**_CONFIG))
    model.eval()
    return model


def inputs() -> dict[str, np.ndarray]:
    """Token ids without the pad id 0 (paddleformers masks pad tokens when no mask is given; HuggingFace does not)."""
    return token_ids(3, VOCAB, BATCH, SEQUENCE)


BUGS = (
    Bug(
        "relu-for-gelu",
        "layer 1's feed-forward activation is ReLU instead of GELU",
        lambda m: replace(m, "encoder.layer.1.intermediate.intermediate_act_fn", torch.nn.ReLU()),
        lambda m: replace(m, "encoder.layers.1.activation", paddle.nn.functional.relu),
        # HuggingFace's activation layer has no paddle counterpart (a function inside TransformerEncoderLayer):
        # the innermost pair holding it is the encoder layer
        "encoder.layer.1",
        "encoder.layers.1",
    ),
    Bug(
        "transposed-weight",
        "layer 0's value projection multiplies by its weight transposed",
        lambda m: transpose_linear(m, "encoder.layer.0.attention.self.value"),
        lambda m: transpose_linear(m, "encoder.layers.0.self_attn.v_proj"),
        "encoder.layer.0.attention.self.value",
        "encoder.layers.0.self_attn.v_proj",
    ),
)

FAMILY = Family("bert", torch_model, paddle_model, inputs, _pairs(), BUGS)
