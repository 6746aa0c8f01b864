"""Candidate layouts from shapes: what a probe chooses among."""

from __future__ import annotations

from padiff_graph.core.fused import fused_links
from padiff_graph.core.transforms import layout_candidates


def texts(links: list) -> list[str]:
    return [link.describe() for link in links]


def test_layout_candidates_list_every_layout_shapes_allow() -> None:
    assert [t.op_text for t in layout_candidates((4, 4), (4, 4))] == ["identity", "transpose"]
    assert [t.op_text for t in layout_candidates((3, 4), (4, 3))] == ["transpose"]
    assert [t.op_text for t in layout_candidates((8, 4), (8, 4, 1, 1))] == ["reshape(8,4,1,1)"]
    assert [t.op_text for t in layout_candidates((4, 8), (8, 4, 1, 1))] == ["transpose, reshape(8,4,1,1)"]
    assert [t.op_text for t in layout_candidates((8, 4, 1, 1), (4, 8))] == ["reshape(8,4), transpose"]
    assert [t.op_text for t in layout_candidates((3,), (3,))] == ["identity"]
    assert layout_candidates((3, 4), (5, 4)) == []


def test_fused_tensors_are_cut_into_sibling_parts_in_order() -> None:
    fused = {"attn.qkv.weight": (8, 24), "attn.qkv.bias": (24,)}
    split = {f"attn.{n}.{t}": (8, 8) if t == "weight" else (8,) for n in "qkv" for t in ("weight", "bias")}
    cuts = [texts(links) for links in fused_links(fused, split)]
    assert cuts == [
        [
            "attn.qkv.weight[:, 0:8] -> attn.q.weight",
            "attn.qkv.weight[:, 8:16] -> attn.k.weight",
            "attn.qkv.weight[:, 16:24] -> attn.v.weight",
            "attn.qkv.bias[0:8] -> attn.q.bias",
            "attn.qkv.bias[8:16] -> attn.k.bias",
            "attn.qkv.bias[16:24] -> attn.v.bias",
        ],
        [
            "attn.qkv.weight[:, 0:8] -> attn.q.weight: transpose",
            "attn.qkv.weight[:, 8:16] -> attn.k.weight: transpose",
            "attn.qkv.weight[:, 16:24] -> attn.v.weight: transpose",
            "attn.qkv.bias[0:8] -> attn.q.bias",
            "attn.qkv.bias[8:16] -> attn.k.bias",
            "attn.qkv.bias[16:24] -> attn.v.bias",
        ],
    ]
    # the other direction: the split side is the base, the fused tensor is written by regions
    back = [texts(links) for links in fused_links(split, fused)]
    assert back[1][0] == "attn.q.weight -> attn.qkv.weight[:, 0:8]: transpose"


def test_parts_come_from_the_fused_tensor_s_own_block() -> None:
    fused = {f"layers.{i}.mlp.gate_up.weight": (8, 32) for i in range(2)}
    split = {f"layers.{i}.mlp.{n}.weight": (16, 8) for i in range(2) for n in ("gate", "up")}
    (cut,) = [texts(links) for links in fused_links(fused, split)]
    assert cut == [
        "layers.0.mlp.gate_up.weight[:, 0:16] -> layers.0.mlp.gate.weight: transpose",
        "layers.0.mlp.gate_up.weight[:, 16:32] -> layers.0.mlp.up.weight: transpose",
        "layers.1.mlp.gate_up.weight[:, 0:16] -> layers.1.mlp.gate.weight: transpose",
        "layers.1.mlp.gate_up.weight[:, 16:32] -> layers.1.mlp.up.weight: transpose",
    ]
