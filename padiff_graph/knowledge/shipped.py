"""The conversions padiff_graph ships, registered torch -> paddle (each serves both ways).

Every entry is tested numerically in both directions (``tests/test_conversions.py``):
copy, run both layers on one input, outputs agree to fp32 precision. The
list with notes is in ``docs/conversions.md``.

Layouts, checked against the frameworks rather than assumed:

- Linear: torch ``weight`` is ``[out, in]``, paddle's ``[in, out]``.
- Conv*/ConvTranspose*, LayerNorm, GroupNorm, Embedding: same layout and names.
- BatchNorm*/SyncBatchNorm: statistics are torch buffers ``running_mean`` /
  ``running_var`` and paddle parameters ``_mean`` / ``_variance``.
- InstanceNorm*: torch ``weight`` (only with ``affine=True``, off by
  default), paddle ``scale`` (on by default).
- PReLU: torch ``weight``, paddle ``_weight``.
- MultiheadAttention: torch fuses q, k, v into ``in_proj_weight`` ``[3E, E]``
  (rows q | k | v; separate ``q/k/v_proj_weight`` when kdim/vdim differ) and
  ``in_proj_bias``; paddle has four Linear children ``q/k/v/out_proj``.
- LSTM/GRU/SimpleRNN: paddle uses torch's names (``weight_ih_l0``,
  ``..._reverse``) and gate orders (LSTM i, f, g, o; GRU r, z, n), so the
  copy is the identity; paddle's per-layer cell children hold no tensors of
  their own and are covered by the root.
- Transformer encoder/decoder layers need nothing of their own: their
  attention, Linear and LayerNorm children convert through the entries above.

Tensors a layer may lack (``bias=False``, ``affine=False``) pair with a
``const(...)`` neutral value on the other side.
"""

from __future__ import annotations

from padiff_graph.core.transforms import IDENTITY, TRANSPOSE, TensorPair, Transform
from padiff_graph.knowledge.conversions import Conversion, ConversionRegistry, LayerSide, linked, renamed
from padiff_graph.knowledge.families import BATCHNORM_FAMILIES

_WEIGHT_BIAS_NEUTRAL = {"weight": 1.0, "bias": 0.0}
_BIAS_NEUTRAL = {"bias": 0.0}


def multihead_attention(base: LayerSide, raw: LayerSide) -> list[TensorPair]:
    """torch ``MultiheadAttention`` (fused q|k|v rows) -> paddle ``MultiHeadAttention`` (q/k/v/out Linears)."""
    size = int(base.config.get("embed_dim", 0))
    links: list[tuple[str, Transform, str, float | None]] = []
    for index, name in enumerate("qkv"):
        rows = (slice(index * size, (index + 1) * size),)
        if "in_proj_weight" in base.tensors:
            weight = ("in_proj_weight", Transform(op="transpose", base_index=rows))
        else:
            weight = (f"{name}_proj_weight", TRANSPOSE)
        links.append((*weight, f"{name}_proj.weight", None))
        links.append(("in_proj_bias", Transform(base_index=rows), f"{name}_proj.bias", 0.0))
    links.append(("out_proj.weight", TRANSPOSE, "out_proj.weight", None))
    links.append(("out_proj.bias", IDENTITY, "out_proj.bias", 0.0))
    pairs = []
    for base_name, transform, raw_name, neutral in links:
        pair = linked(base, raw, base_name, raw_name, transform, neutral)
        if pair is not None:
            pairs.append(pair)
    return pairs


def same_names(base: LayerSide, raw: LayerSide) -> list[TensorPair]:
    """Every tensor of the base subtree paired with the raw tensor of the same name (RNNs)."""
    return [TensorPair(name, name) for name in base.subtree_tensors if name in raw.subtree_tensors]


def register_shipped(registry: ConversionRegistry) -> None:
    """Register every shipped conversion into ``registry``."""

    def both(family: str, conversion: Conversion, paddle_family: str | None = None) -> None:
        registry.register("torch", family, "paddle", paddle_family or family, conversion)

    both(
        "linear",
        Conversion("linear-transpose", renamed({"weight": ("weight", TRANSPOSE), "bias": "bias"}, _BIAS_NEUTRAL)),
    )
    batchnorm = Conversion(
        "batchnorm-statistics",
        renamed(
            {"weight": "weight", "bias": "bias", "running_mean": "_mean", "running_var": "_variance"},
            _WEIGHT_BIAS_NEUTRAL,
        ),
    )
    for family in BATCHNORM_FAMILIES:
        both(family, batchnorm)
    for family in BATCHNORM_FAMILIES[1:]:
        both(family, batchnorm, "batchnorm")  # paddle's generic BatchNorm may face any of them
    convolution = renamed({"weight": "weight", "bias": "bias"}, _BIAS_NEUTRAL)
    for family in ("conv1d", "conv2d", "conv3d", "convtranspose1d", "convtranspose2d", "convtranspose3d"):
        both(family, Conversion(f"{family}-identity", convolution))
    affine = renamed({"weight": "weight", "bias": "bias"}, _WEIGHT_BIAS_NEUTRAL)
    for family in ("layernorm", "groupnorm"):
        both(family, Conversion(f"{family}-identity", affine))
    both("embedding", Conversion("embedding-identity", renamed({"weight": "weight"})))
    instance = Conversion("instancenorm-scale", renamed({"weight": "scale", "bias": "bias"}, _WEIGHT_BIAS_NEUTRAL))
    for family in ("instancenorm1d", "instancenorm2d", "instancenorm3d"):
        both(family, instance)
    both("prelu", Conversion("prelu-weight", renamed({"weight": "_weight"})))
    both("multiheadattention", Conversion("multihead-attention-split", multihead_attention, covers_subtree=True))
    recurrent = Conversion("rnn-identity", same_names, covers_subtree=True)
    for torch_class, paddle_class in (("LSTM", "LSTM"), ("GRU", "GRU"), ("RNN", "SimpleRNN")):
        registry.register("torch", torch_class, "paddle", paddle_class, recurrent)
