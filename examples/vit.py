"""A ViT encoder: torch ``nn.MultiheadAttention`` (fused ``in_proj_weight``, base)
against paddle ``nn.MultiHeadAttention`` (``q_proj``/``k_proj``/``v_proj``/``out_proj``, raw).

Both sides use timm's names (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.N.norm1/attn/norm2/mlp.fc1/mlp.fc2``, ``norm``,
``head``). The attention pair needs the fused/split conversion: the torch
layer's ``in_proj_weight`` is three paddle Linears' weights stacked and
transposed, and its ``out_proj`` child is covered by that conversion (so it is
listed under ``EXPECTED_TENSORS``, not as a pair of its own).

The variant is the paddle network with torchvision's names: ``conv_proj``,
``class_token``, ``encoder.pos_embedding`` (the position embedding moves from
the root into ``encoder``), ``encoder.layers.encoder_layer_N.ln_1/
self_attention/ln_2/mlp.0/mlp.3``, ``encoder.ln`` and ``heads.head``.
"""

import numpy as np
import paddle
import torch

DIM, HEADS, DEPTH, PATCH, IMAGE, CLASSES = 32, 4, 2, 4, 16, 10
TOKENS = (IMAGE // PATCH) ** 2 + 1


#: a block's tensor layers: timm's names -> torchvision's
_BLOCK = {"norm1": "ln_1", "attn": "self_attention", "norm2": "ln_2", "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3"}


def _expected(variant: bool) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Layer pairs, tensor pairs by full name, and map-file tensor links, torch -> paddle."""
    pairs = {"": "", "patch_embed.proj": "conv_proj" if variant else "patch_embed.proj"}
    pairs |= {"norm": "encoder.ln" if variant else "norm", "head": "heads.head" if variant else "head"}
    tensors = {"cls_token": "class_token", "pos_embed": "encoder.pos_embedding"} if variant else {}
    links = []
    for index in range(DEPTH):
        block = f"blocks.{index}"
        raw_block = f"encoder.layers.encoder_layer_{index}" if variant else block
        for name, torchvision_name in _BLOCK.items():
            pairs[f"{block}.{name}"] = f"{raw_block}.{torchvision_name if variant else name}"
        attn, raw_attn = f"{block}.attn", pairs[f"{block}.attn"]
        for part, projection in enumerate(("q_proj", "k_proj", "v_proj")):
            rows = f"{part * DIM}:{(part + 1) * DIM}"
            links.append(f"{attn}.in_proj_weight[{rows}] -> {raw_attn}.{projection}.weight: transpose")
            links.append(f"{attn}.in_proj_bias[{rows}] -> {raw_attn}.{projection}.bias")
        links.append(f"{attn}.out_proj.weight -> {raw_attn}.out_proj.weight: transpose")
        links.append(f"{attn}.out_proj.bias -> {raw_attn}.out_proj.bias")
        tensors[f"{attn}.out_proj.weight"] = f"{raw_attn}.out_proj.weight"
    return pairs, tensors, links


EXPECTED_PAIRS, EXPECTED_TENSORS, EXPECTED_TENSOR_LINKS = _expected(variant=False)
EXPECTED_FINDINGS = {"needs-special-init"}  # info: the MultiheadAttention conversion will be used
EXPECTED_VARIANT_PAIRS, EXPECTED_VARIANT_TENSORS, EXPECTED_VARIANT_TENSOR_LINKS = _expected(variant=True)
EXPECTED_VARIANT_FINDINGS = {"needs-special-init", "wrap-layer"}


class TorchPatchEmbed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Conv2d(3, DIM, PATCH, PATCH)

    def forward(self, image):
        return self.proj(image).flatten(2).transpose(1, 2)


class TorchMlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(DIM, 4 * DIM)
        self.act = torch.nn.GELU()
        self.fc2 = torch.nn.Linear(4 * DIM, DIM)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(DIM, eps=1e-6)
        self.attn = torch.nn.MultiheadAttention(DIM, HEADS, batch_first=True)
        self.norm2 = torch.nn.LayerNorm(DIM, eps=1e-6)
        self.mlp = TorchMlp()

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TorchViT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.patch_embed = TorchPatchEmbed()
        self.cls_token = torch.nn.Parameter(torch.randn(1, 1, DIM) * 0.02)
        self.pos_embed = torch.nn.Parameter(torch.randn(1, TOKENS, DIM) * 0.02)
        self.blocks = torch.nn.Sequential(*[TorchBlock() for _ in range(DEPTH)])
        self.norm = torch.nn.LayerNorm(DIM, eps=1e-6)
        self.head = torch.nn.Linear(DIM, CLASSES)

    def forward(self, image):
        x = self.patch_embed(image)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


class PaddlePatchEmbed(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.proj = paddle.nn.Conv2D(3, DIM, PATCH, PATCH)

    def forward(self, image):
        return self.proj(image).flatten(2).transpose([0, 2, 1])


class PaddleMlp(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc1 = paddle.nn.Linear(DIM, 4 * DIM)
        self.act = paddle.nn.GELU()
        self.fc2 = paddle.nn.Linear(4 * DIM, DIM)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class PaddleBlock(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.norm1 = paddle.nn.LayerNorm(DIM, epsilon=1e-6)
        self.attn = paddle.nn.MultiHeadAttention(DIM, HEADS)
        self.norm2 = paddle.nn.LayerNorm(DIM, epsilon=1e-6)
        self.mlp = PaddleMlp()

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attn(y, y, y)
        return x + self.mlp(self.norm2(x))


def _embedding(shape):
    return paddle.create_parameter(shape, "float32", default_initializer=paddle.nn.initializer.Normal(std=0.02))


class PaddleViT(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.patch_embed = PaddlePatchEmbed()
        self.cls_token = _embedding([1, 1, DIM])
        self.pos_embed = _embedding([1, TOKENS, DIM])
        self.blocks = paddle.nn.Sequential(*[PaddleBlock() for _ in range(DEPTH)])
        self.norm = paddle.nn.LayerNorm(DIM, epsilon=1e-6)
        self.head = paddle.nn.Linear(DIM, CLASSES)

    def forward(self, image):
        x = self.patch_embed(image)
        x = paddle.concat([self.cls_token.expand([x.shape[0], -1, -1]), x], axis=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


class EncoderBlock(paddle.nn.Layer):
    """torchvision's ViT EncoderBlock, in paddle."""

    def __init__(self):
        super().__init__()
        self.ln_1 = paddle.nn.LayerNorm(DIM, epsilon=1e-6)
        self.self_attention = paddle.nn.MultiHeadAttention(DIM, HEADS)
        self.dropout = paddle.nn.Dropout(0.0)
        self.ln_2 = paddle.nn.LayerNorm(DIM, epsilon=1e-6)
        self.mlp = paddle.nn.Sequential(
            paddle.nn.Linear(DIM, 4 * DIM),
            paddle.nn.GELU(),
            paddle.nn.Dropout(0.0),
            paddle.nn.Linear(4 * DIM, DIM),
            paddle.nn.Dropout(0.0),
        )

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.dropout(self.self_attention(y, y, y))
        return x + self.mlp(self.ln_2(x))


class Encoder(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.pos_embedding = _embedding([1, TOKENS, DIM])
        self.dropout = paddle.nn.Dropout(0.0)
        self.layers = paddle.nn.Sequential(*[(f"encoder_layer_{i}", EncoderBlock()) for i in range(DEPTH)])
        self.ln = paddle.nn.LayerNorm(DIM, epsilon=1e-6)

    def forward(self, x):
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


class TorchvisionStyleViT(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv_proj = paddle.nn.Conv2D(3, DIM, PATCH, PATCH)
        self.class_token = _embedding([1, 1, DIM])
        self.encoder = Encoder()
        self.heads = paddle.nn.Sequential(("head", paddle.nn.Linear(DIM, CLASSES)))

    def forward(self, image):
        x = self.conv_proj(image).flatten(2).transpose([0, 2, 1])
        x = paddle.concat([self.class_token.expand([x.shape[0], -1, -1]), x], axis=1)
        return self.heads(self.encoder(x)[:, 0])


def inputs():
    return {"image": np.random.default_rng(30).standard_normal((2, 3, IMAGE, IMAGE), dtype=np.float32)}


def base():
    torch.manual_seed(30)
    return TorchViT().eval(), inputs()


def raw():
    paddle.seed(30)
    model = PaddleViT()
    model.eval()
    return model, inputs()


def variant():
    paddle.seed(31)
    model = TorchvisionStyleViT()
    model.eval()
    return model, inputs()
