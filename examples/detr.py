"""A DETR-style detector: small conv backbone, a transformer decoder written with
plain Linear/LayerNorm layers, class and box heads; torch (base) against paddle (raw).

The torch side names its decoder layers like ``nn.TransformerDecoderLayer``
(``self_attn``, ``multihead_attn``, ``linear1/2``, ``norm1/2/3``) and holds the
object queries as a raw ``nn.Parameter`` (``query_embed``); the paddle side
names them like ``paddle.nn.TransformerDecoderLayer`` (``cross_attn`` for the
second attention) and holds the queries in an ``nn.Embedding``. Every
attention owns four same-shaped projections, and both attentions of a layer
are alike: names and call order are all that tell them apart.

The variant is the paddle network with other names, defined out of call
order: ``queries`` for the embedding, ``proj`` for the input projection,
``class_head``/``box_head`` defined box head first, and decoder layers that
define their norms first and the cross attention before the self attention.
"""

import itertools

import numpy as np
import paddle
import torch

DIM, HEADS, FFN, LAYERS, QUERIES, CLASSES = 32, 4, 64, 3, 6, 5

_ATTENTION = ("q_proj", "k_proj", "v_proj", "out_proj")


def _expected(variant: bool) -> tuple[dict[str, str], dict[str, str]]:
    """torch path -> paddle path for every layer holding tensors, and the query tensor."""
    pairs = {"": "", "backbone.0": "backbone.0", "backbone.1": "backbone.1"}
    pairs |= {"backbone.3": "backbone.3", "backbone.4": "backbone.4"}
    pairs["input_proj"] = "proj" if variant else "input_proj"
    for index in range(LAYERS):
        layer = f"decoder.layers.{index}"
        for torch_name, paddle_name in (("self_attn", "self_attn"), ("multihead_attn", "cross_attn")):
            for projection in _ATTENTION:
                pairs[f"{layer}.{torch_name}.{projection}"] = f"{layer}.{paddle_name}.{projection}"
        for name in ("linear1", "linear2", "norm1", "norm2", "norm3"):
            pairs[f"{layer}.{name}"] = f"{layer}.{name}"
    pairs["decoder.norm"] = "decoder.norm"
    pairs["class_embed"] = "class_head" if variant else "class_embed"
    for index in range(3):
        pairs[f"bbox_embed.layers.{index}"] = f"{'box_head' if variant else 'bbox_embed'}.layers.{index}"
    return pairs, {"query_embed": "queries.weight" if variant else "query_embed.weight"}


EXPECTED_PAIRS, EXPECTED_TENSORS = _expected(variant=False)
EXPECTED_FINDINGS = {"kind-mismatch"}
EXPECTED_VARIANT_PAIRS, EXPECTED_VARIANT_TENSORS = _expected(variant=True)
EXPECTED_VARIANT_FINDINGS = {"kind-mismatch", "order-mismatch"}


# --- torch -----------------------------------------------------------------------------


class TorchAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = torch.nn.Linear(DIM, DIM)
        self.k_proj = torch.nn.Linear(DIM, DIM)
        self.v_proj = torch.nn.Linear(DIM, DIM)
        self.out_proj = torch.nn.Linear(DIM, DIM)

    def heads(self, x):
        return x.view(x.shape[0], x.shape[1], HEADS, DIM // HEADS).transpose(1, 2)

    def forward(self, query, key, value):
        query, key, value = self.heads(self.q_proj(query)), self.heads(self.k_proj(key)), self.heads(self.v_proj(value))
        weights = (query @ key.transpose(-1, -2) / (DIM // HEADS) ** 0.5).softmax(-1)
        return self.out_proj((weights @ value).transpose(1, 2).flatten(2))


class TorchDecoderLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = TorchAttention()
        self.multihead_attn = TorchAttention()
        self.linear1 = torch.nn.Linear(DIM, FFN)
        self.linear2 = torch.nn.Linear(FFN, DIM)
        self.norm1 = torch.nn.LayerNorm(DIM)
        self.norm2 = torch.nn.LayerNorm(DIM)
        self.norm3 = torch.nn.LayerNorm(DIM)
        self.activation = torch.nn.ReLU()

    def forward(self, target, memory, query_pos):
        query = target + query_pos
        target = self.norm1(target + self.self_attn(query, query, target))
        target = self.norm2(target + self.multihead_attn(target + query_pos, memory, memory))
        return self.norm3(target + self.linear2(self.activation(self.linear1(target))))


class TorchDecoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList(TorchDecoderLayer() for _ in range(LAYERS))
        self.norm = torch.nn.LayerNorm(DIM)

    def forward(self, target, memory, query_pos):
        for layer in self.layers:
            target = layer(target, memory, query_pos)
        return self.norm(target)


class TorchMLP(torch.nn.Module):
    """DETR's box head: Linear layers with ReLU between them."""

    def __init__(self, sizes):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in itertools.pairwise(sizes))

    def forward(self, x):
        for index, layer in enumerate(self.layers):
            x = layer(x) if index == len(self.layers) - 1 else torch.relu(layer(x))
        return x


class TorchDetr(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, 2, 1, bias=False),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, 2, 1, bias=False),
            torch.nn.BatchNorm2d(32),
            torch.nn.ReLU(),
        )
        self.input_proj = torch.nn.Conv2d(32, DIM, 1)
        self.query_embed = torch.nn.Parameter(torch.randn(QUERIES, DIM))
        self.decoder = TorchDecoder()
        self.class_embed = torch.nn.Linear(DIM, CLASSES + 1)
        self.bbox_embed = TorchMLP([DIM, DIM, DIM, 4])

    def forward(self, image):
        memory = self.input_proj(self.backbone(image)).flatten(2).transpose(1, 2)
        query_pos = self.query_embed.unsqueeze(0).expand(image.shape[0], -1, -1)
        hidden = self.decoder(torch.zeros_like(query_pos), memory, query_pos)
        return self.class_embed(hidden), self.bbox_embed(hidden).sigmoid()


# --- paddle ----------------------------------------------------------------------------


class PaddleAttention(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.q_proj = paddle.nn.Linear(DIM, DIM)
        self.k_proj = paddle.nn.Linear(DIM, DIM)
        self.v_proj = paddle.nn.Linear(DIM, DIM)
        self.out_proj = paddle.nn.Linear(DIM, DIM)

    def heads(self, x):
        return x.reshape([x.shape[0], x.shape[1], HEADS, DIM // HEADS]).transpose([0, 2, 1, 3])

    def forward(self, query, key, value):
        query, key, value = self.heads(self.q_proj(query)), self.heads(self.k_proj(key)), self.heads(self.v_proj(value))
        scores = query @ key.transpose([0, 1, 3, 2]) / (DIM // HEADS) ** 0.5
        weights = paddle.nn.functional.softmax(scores, -1)
        return self.out_proj((weights @ value).transpose([0, 2, 1, 3]).flatten(2))


class PaddleDecoderLayer(paddle.nn.Layer):
    def __init__(self, norms_first=False):
        super().__init__()
        if norms_first:  # the variant: norms, then cross before self attention, then the feed-forward
            self.norm1 = paddle.nn.LayerNorm(DIM)
            self.norm2 = paddle.nn.LayerNorm(DIM)
            self.norm3 = paddle.nn.LayerNorm(DIM)
            self.cross_attn = PaddleAttention()
            self.self_attn = PaddleAttention()
        else:
            self.self_attn = PaddleAttention()
            self.cross_attn = PaddleAttention()
        self.linear1 = paddle.nn.Linear(DIM, FFN)
        self.linear2 = paddle.nn.Linear(FFN, DIM)
        if not norms_first:
            self.norm1 = paddle.nn.LayerNorm(DIM)
            self.norm2 = paddle.nn.LayerNorm(DIM)
            self.norm3 = paddle.nn.LayerNorm(DIM)
        self.activation = paddle.nn.ReLU()

    def forward(self, target, memory, query_pos):
        query = target + query_pos
        target = self.norm1(target + self.self_attn(query, query, target))
        target = self.norm2(target + self.cross_attn(target + query_pos, memory, memory))
        return self.norm3(target + self.linear2(self.activation(self.linear1(target))))


class PaddleDecoder(paddle.nn.Layer):
    def __init__(self, norms_first=False):
        super().__init__()
        self.layers = paddle.nn.LayerList(PaddleDecoderLayer(norms_first) for _ in range(LAYERS))
        self.norm = paddle.nn.LayerNorm(DIM)

    def forward(self, target, memory, query_pos):
        for layer in self.layers:
            target = layer(target, memory, query_pos)
        return self.norm(target)


class PaddleMLP(paddle.nn.Layer):
    def __init__(self, sizes):
        super().__init__()
        self.layers = paddle.nn.LayerList(paddle.nn.Linear(a, b) for a, b in itertools.pairwise(sizes))

    def forward(self, x):
        for index, layer in enumerate(self.layers):
            x = layer(x) if index == len(self.layers) - 1 else paddle.nn.functional.relu(layer(x))
        return x


def _paddle_backbone():
    return paddle.nn.Sequential(
        paddle.nn.Conv2D(3, 16, 3, 2, 1, bias_attr=False),
        paddle.nn.BatchNorm2D(16),
        paddle.nn.ReLU(),
        paddle.nn.Conv2D(16, 32, 3, 2, 1, bias_attr=False),
        paddle.nn.BatchNorm2D(32),
        paddle.nn.ReLU(),
    )


class PaddleDetr(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.backbone = _paddle_backbone()
        self.input_proj = paddle.nn.Conv2D(32, DIM, 1)
        self.query_embed = paddle.nn.Embedding(QUERIES, DIM)
        self.decoder = PaddleDecoder()
        self.class_embed = paddle.nn.Linear(DIM, CLASSES + 1)
        self.bbox_embed = PaddleMLP([DIM, DIM, DIM, 4])

    def forward(self, image):
        memory = self.input_proj(self.backbone(image)).flatten(2).transpose([0, 2, 1])
        query_pos = self.query_embed.weight.unsqueeze(0).expand([image.shape[0], -1, -1])
        hidden = self.decoder(paddle.zeros_like(query_pos), memory, query_pos)
        return self.class_embed(hidden), paddle.nn.functional.sigmoid(self.bbox_embed(hidden))


class RenamedPaddleDetr(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.backbone = _paddle_backbone()
        self.queries = paddle.nn.Embedding(QUERIES, DIM)
        self.proj = paddle.nn.Conv2D(32, DIM, 1)
        self.decoder = PaddleDecoder(norms_first=True)
        self.box_head = PaddleMLP([DIM, DIM, DIM, 4])
        self.class_head = paddle.nn.Linear(DIM, CLASSES + 1)

    def forward(self, image):
        memory = self.proj(self.backbone(image)).flatten(2).transpose([0, 2, 1])
        query_pos = self.queries.weight.unsqueeze(0).expand([image.shape[0], -1, -1])
        hidden = self.decoder(paddle.zeros_like(query_pos), memory, query_pos)
        return self.class_head(hidden), paddle.nn.functional.sigmoid(self.box_head(hidden))


def inputs():
    return {"image": np.random.default_rng(60).standard_normal((2, 3, 16, 16), dtype=np.float32)}


def base():
    torch.manual_seed(60)
    model = TorchDetr().eval()
    with torch.no_grad():  # trained-looking statistics, so a missed copy shows
        for module in model.backbone:
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model, inputs()


def raw():
    paddle.seed(60)
    model = PaddleDetr()
    model.eval()
    return model, inputs()


def variant():
    paddle.seed(61)
    model = RenamedPaddleDetr()
    model.eval()
    return model, inputs()
