"""A BERT encoder: torch with HuggingFace's names (base) against paddle's builtin
``TransformerEncoderLayer`` stack, as PaddleNLP ports it (raw).

The four attention projections have one shape; only names (``query`` ~
``q_proj``, ``attention.output.dense`` ~ ``out_proj``) and call order tell
them apart. HuggingFace nests ``attention.self``/``attention.output``/
``intermediate``/``output`` where paddle's layer is flat, and puts each
residual LayerNorm next to its dense layer, where paddle has ``norm1``/``norm2``.
Both sides compute the same thing (post-norm, exact GELU, eps 1e-12, no dropout).

The variant is a hand-written paddle port with other names, defined out of
call order: each layer defines its norms first, the feed-forward before the
attention, and the projections as ``o_proj``, ``v_proj``, ``k_proj``, ``q_proj``.
"""

import numpy as np
import paddle
import torch

VOCAB, POSITIONS, TYPES, DIM, HEADS, FFN, DEPTH, SEQUENCE = 50, 16, 2, 32, 4, 64, 3, 8
EPS = 1e-12

_LAYER = {  # HuggingFace name -> (paddle TransformerEncoderLayer name, variant name)
    "attention.self.query": ("self_attn.q_proj", "attn.q_proj"),
    "attention.self.key": ("self_attn.k_proj", "attn.k_proj"),
    "attention.self.value": ("self_attn.v_proj", "attn.v_proj"),
    "attention.output.dense": ("self_attn.out_proj", "attn.o_proj"),
    "attention.output.LayerNorm": ("norm1", "attn_norm"),
    "intermediate.dense": ("linear1", "ffn.up"),
    "output.dense": ("linear2", "ffn.down"),
    "output.LayerNorm": ("norm2", "ffn_norm"),
}
_EMBEDDINGS = {
    "word_embeddings": ("word_embeddings", "token"),
    "position_embeddings": ("position_embeddings", "position"),
    "token_type_embeddings": ("token_type_embeddings", "segment"),
    "LayerNorm": ("layer_norm", "norm"),
}


def _expected_pairs(variant: bool) -> dict[str, str]:
    side = int(variant)
    pairs = {f"embeddings.{hf}": f"embeddings.{names[side]}" for hf, names in _EMBEDDINGS.items()}
    for index in range(DEPTH):
        for hf, names in _LAYER.items():
            pairs[f"encoder.layer.{index}.{hf}"] = f"encoder.layers.{index}.{names[side]}"
    pairs["pooler.dense"] = "pooler.dense"
    return pairs


EXPECTED_PAIRS = _expected_pairs(variant=False)
#: each layer's two LayerNorms: one shape, no shared name (``LayerNorm`` vs ``norm1``/``norm2``);
#: without inputs only definition order tells them apart, as it does the parameter-less dropouts
#: (paddle defines ``dropout1``/``dropout2`` after both norms)
EXPECTED_STATIC_AMBIGUOUS = [
    f"encoder.layer.{index}.{name}"
    for index in range(DEPTH)
    for name in ("attention.output.LayerNorm", "output.LayerNorm", "output.dropout")
]
EXPECTED_FINDINGS = {"order-mismatch", "wrap-layer"}
EXPECTED_VARIANT_PAIRS = _expected_pairs(variant=True)
EXPECTED_VARIANT_FINDINGS = {"order-mismatch", "wrap-layer"}


# --- torch, HuggingFace's BertModel layout ---------------------------------------------


class BertEmbeddings(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = torch.nn.Embedding(VOCAB, DIM)
        self.position_embeddings = torch.nn.Embedding(POSITIONS, DIM)
        self.token_type_embeddings = torch.nn.Embedding(TYPES, DIM)
        self.LayerNorm = torch.nn.LayerNorm(DIM, eps=EPS)
        self.dropout = torch.nn.Dropout(0.0)

    def forward(self, input_ids, token_type_ids):
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
        embeddings = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.query = torch.nn.Linear(DIM, DIM)
        self.key = torch.nn.Linear(DIM, DIM)
        self.value = torch.nn.Linear(DIM, DIM)
        self.dropout = torch.nn.Dropout(0.0)

    def heads(self, x):
        return x.view(x.shape[0], x.shape[1], HEADS, DIM // HEADS).permute(0, 2, 1, 3)

    def forward(self, hidden):
        query, key, value = self.heads(self.query(hidden)), self.heads(self.key(hidden)), self.heads(self.value(hidden))
        scores = query @ key.transpose(-1, -2) / (DIM // HEADS) ** 0.5
        context = self.dropout(scores.softmax(-1)) @ value
        return context.permute(0, 2, 1, 3).reshape(hidden.shape)


class BertSelfOutput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = torch.nn.Linear(DIM, DIM)
        self.LayerNorm = torch.nn.LayerNorm(DIM, eps=EPS)
        self.dropout = torch.nn.Dropout(0.0)

    def forward(self, hidden, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.self = BertSelfAttention()
        self.output = BertSelfOutput()

    def forward(self, hidden):
        return self.output(self.self(hidden), hidden)


class BertIntermediate(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = torch.nn.Linear(DIM, FFN)
        self.intermediate_act_fn = torch.nn.GELU()

    def forward(self, hidden):
        return self.intermediate_act_fn(self.dense(hidden))


class BertOutput(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = torch.nn.Linear(FFN, DIM)
        self.LayerNorm = torch.nn.LayerNorm(DIM, eps=EPS)
        self.dropout = torch.nn.Dropout(0.0)

    def forward(self, hidden, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class BertLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = BertAttention()
        self.intermediate = BertIntermediate()
        self.output = BertOutput()

    def forward(self, hidden):
        attended = self.attention(hidden)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.ModuleList(BertLayer() for _ in range(DEPTH))

    def forward(self, hidden):
        for layer in self.layer:
            hidden = layer(hidden)
        return hidden


class BertPooler(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dense = torch.nn.Linear(DIM, DIM)
        self.activation = torch.nn.Tanh()

    def forward(self, hidden):
        return self.activation(self.dense(hidden[:, 0]))


class TorchBert(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = BertEmbeddings()
        self.encoder = BertEncoder()
        self.pooler = BertPooler()

    def forward(self, input_ids, token_type_ids):
        sequence = self.encoder(self.embeddings(input_ids, token_type_ids))
        return sequence, self.pooler(sequence)


# --- paddle, PaddleNLP's BertModel layout on the builtin encoder -----------------------


class PaddleBertEmbeddings(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.word_embeddings = paddle.nn.Embedding(VOCAB, DIM)
        self.position_embeddings = paddle.nn.Embedding(POSITIONS, DIM)
        self.token_type_embeddings = paddle.nn.Embedding(TYPES, DIM)
        self.layer_norm = paddle.nn.LayerNorm(DIM, epsilon=EPS)
        self.dropout = paddle.nn.Dropout(0.0)

    def forward(self, input_ids, token_type_ids):
        positions = paddle.arange(input_ids.shape[1]).unsqueeze(0)
        embeddings = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.layer_norm(embeddings))


class PaddleBertPooler(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.dense = paddle.nn.Linear(DIM, DIM)
        self.activation = paddle.nn.Tanh()

    def forward(self, hidden):
        return self.activation(self.dense(hidden[:, 0]))


class PaddleBert(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.embeddings = PaddleBertEmbeddings()
        layer = paddle.nn.TransformerEncoderLayer(
            DIM, HEADS, FFN, dropout=0.0, activation="gelu", attn_dropout=0.0, act_dropout=0.0, layer_norm_eps=EPS
        )
        self.encoder = paddle.nn.TransformerEncoder(layer, DEPTH)
        self.pooler = PaddleBertPooler()

    def forward(self, input_ids, token_type_ids):
        sequence = self.encoder(self.embeddings(input_ids, token_type_ids))
        return sequence, self.pooler(sequence)


# --- paddle, a hand-written port defined out of call order -----------------------------


class Embeddings(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.norm = paddle.nn.LayerNorm(DIM, epsilon=EPS)
        self.segment = paddle.nn.Embedding(TYPES, DIM)
        self.position = paddle.nn.Embedding(POSITIONS, DIM)
        self.token = paddle.nn.Embedding(VOCAB, DIM)

    def forward(self, input_ids, token_type_ids):
        positions = paddle.arange(input_ids.shape[1]).unsqueeze(0)
        embeddings = self.token(input_ids) + self.position(positions) + self.segment(token_type_ids)
        return self.norm(embeddings)


class Attention(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.o_proj = paddle.nn.Linear(DIM, DIM)
        self.v_proj = paddle.nn.Linear(DIM, DIM)
        self.k_proj = paddle.nn.Linear(DIM, DIM)
        self.q_proj = paddle.nn.Linear(DIM, DIM)

    def heads(self, x):
        return x.reshape([x.shape[0], x.shape[1], HEADS, DIM // HEADS]).transpose([0, 2, 1, 3])

    def forward(self, hidden):
        query, key, value = (
            self.heads(self.q_proj(hidden)),
            self.heads(self.k_proj(hidden)),
            self.heads(self.v_proj(hidden)),
        )
        scores = query @ key.transpose([0, 1, 3, 2]) / (DIM // HEADS) ** 0.5
        context = paddle.nn.functional.softmax(scores, -1) @ value
        return self.o_proj(context.transpose([0, 2, 1, 3]).reshape(hidden.shape))


class FeedForward(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.down = paddle.nn.Linear(FFN, DIM)
        self.up = paddle.nn.Linear(DIM, FFN)
        self.act = paddle.nn.GELU()

    def forward(self, hidden):
        return self.down(self.act(self.up(hidden)))


class EncoderLayer(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.attn_norm = paddle.nn.LayerNorm(DIM, epsilon=EPS)
        self.ffn_norm = paddle.nn.LayerNorm(DIM, epsilon=EPS)
        self.ffn = FeedForward()
        self.attn = Attention()

    def forward(self, hidden):
        hidden = self.attn_norm(hidden + self.attn(hidden))
        return self.ffn_norm(hidden + self.ffn(hidden))


class Encoder(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.layers = paddle.nn.LayerList(EncoderLayer() for _ in range(DEPTH))

    def forward(self, hidden):
        for layer in self.layers:
            hidden = layer(hidden)
        return hidden


class HandWrittenBert(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.pooler = PaddleBertPooler()
        self.encoder = Encoder()
        self.embeddings = Embeddings()

    def forward(self, input_ids, token_type_ids):
        sequence = self.encoder(self.embeddings(input_ids, token_type_ids))
        return sequence, self.pooler(sequence)


def inputs():
    rng = np.random.default_rng(40)
    return {
        "input_ids": rng.integers(0, VOCAB, (2, SEQUENCE), dtype=np.int64),
        "token_type_ids": rng.integers(0, TYPES, (2, SEQUENCE), dtype=np.int64),
    }


def base():
    torch.manual_seed(40)
    return TorchBert().eval(), inputs()


def raw():
    paddle.seed(40)
    model = PaddleBert()
    model.eval()
    return model, inputs()


def variant():
    paddle.seed(41)
    model = HandWrittenBert()
    model.eval()
    return model, inputs()
