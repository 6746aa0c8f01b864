"""A sequence classifier: Embedding, a 2-layer bidirectional LSTM, a GRU and a Linear
head, in torch (base) and paddle (raw).

torch's ``nn.LSTM``/``nn.GRU`` and paddle's ``nn.LSTM``/``nn.GRU`` name their
weights alike (``weight_ih_l0``, ``bias_hh_l1_reverse``...) and stack the
gates in the same order (LSTM: input, forget, cell, output; GRU: reset,
update, candidate), so the tensors copy one to one. paddle's layers hold
parameter-less sublayers of their own (``lstm.0`` a ``BiRNN`` with
``cell_fw``/``cell_bw``, ``gru.0`` an ``RNN`` with ``cell``) that torch's do not.

The variant is the paddle network nested and renamed, defined head first:
``classifier``, ``decoder.rnn`` (the GRU), ``encoder.embed`` and ``encoder.rnn``.

The models are in eval mode, as most users align them. paddle's RNN kernels
keep no state for the backward pass in eval mode; these layers have no dropout,
so ``diff`` runs them in training mode for the run (the same numbers) and
compares forward and backward (``settings["trained_for_backward"]``).
"""

import numpy as np
import paddle
import torch

VOCAB, EMBED, HIDDEN, CLASSES, LENGTH = 40, 12, 16, 5, 7

EXPECTED_PAIRS = {"embedding": "embedding", "lstm": "lstm", "gru": "gru", "fc": "fc"}
EXPECTED_FINDINGS: set[str] = set()
EXPECTED_VARIANT_PAIRS = {
    "embedding": "encoder.embed",
    "lstm": "encoder.rnn",
    "gru": "decoder.rnn",
    "fc": "classifier",
}
EXPECTED_VARIANT_FINDINGS = {"order-mismatch", "wrap-layer"}


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(VOCAB, EMBED)
        self.lstm = torch.nn.LSTM(EMBED, HIDDEN, num_layers=2, bidirectional=True, batch_first=True)
        self.gru = torch.nn.GRU(2 * HIDDEN, HIDDEN, batch_first=True)
        self.fc = torch.nn.Linear(HIDDEN, CLASSES)

    def forward(self, tokens):
        sequence, _ = self.lstm(self.embedding(tokens))
        _, last = self.gru(sequence)
        return self.fc(last[-1])


class PaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.embedding = paddle.nn.Embedding(VOCAB, EMBED)
        self.lstm = paddle.nn.LSTM(EMBED, HIDDEN, num_layers=2, direction="bidirect")
        self.gru = paddle.nn.GRU(2 * HIDDEN, HIDDEN)
        self.fc = paddle.nn.Linear(HIDDEN, CLASSES)

    def forward(self, tokens):
        sequence, _ = self.lstm(self.embedding(tokens))
        _, last = self.gru(sequence)
        return self.fc(last[-1])


class Encoder(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.embed = paddle.nn.Embedding(VOCAB, EMBED)
        self.rnn = paddle.nn.LSTM(EMBED, HIDDEN, num_layers=2, direction="bidirect")

    def forward(self, tokens):
        sequence, _ = self.rnn(self.embed(tokens))
        return sequence


class Decoder(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.rnn = paddle.nn.GRU(2 * HIDDEN, HIDDEN)

    def forward(self, sequence):
        _, last = self.rnn(sequence)
        return last[-1]


class NestedPaddleNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.classifier = paddle.nn.Linear(HIDDEN, CLASSES)
        self.decoder = Decoder()
        self.encoder = Encoder()

    def forward(self, tokens):
        return self.classifier(self.decoder(self.encoder(tokens)))


def inputs():
    return {"tokens": np.random.default_rng(50).integers(0, VOCAB, (3, LENGTH), dtype=np.int64)}


def evaluated(model):
    model.eval()
    return model


def base():
    torch.manual_seed(50)
    return evaluated(TorchNet()), inputs()


def raw():
    paddle.seed(50)
    return evaluated(PaddleNet()), inputs()


def variant():
    paddle.seed(51)
    return evaluated(NestedPaddleNet()), inputs()
