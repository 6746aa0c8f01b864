"""Matched containers whose contents do not correspond are not compared, and the report says so."""

import io

import numpy as np
import paddle
import pytest
import torch
from rich.console import Console

import padiff_graph as pg
from padiff_graph import compare_dumps, dump, export_tree, suggest_map
from padiff_graph.layermap import LayerMap, LayerPair
from padiff_graph.report.document import diff_document, schema
from padiff_graph.report.html import render_html
from padiff_graph.report.terminal import print_diff
from padiff_graph.run.containers import NotCompared, unlike_containers

X = np.random.default_rng(3).standard_normal((4, 8), dtype=np.float32)


class TorchBlock(torch.nn.Module):
    """``attn`` holds the projection and the norm (as HuggingFace's ``BertAttention`` does)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.attn(x))


class PaddleBlock(paddle.nn.Layer):
    """The same computation, with the norm outside ``attn`` (as paddle's ``MultiHeadAttention``)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = paddle.nn.Sequential(paddle.nn.Linear(8, 8))
        self.norm = paddle.nn.LayerNorm(8)
        self.head = paddle.nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.norm(self.attn(x)))


def _hand_map(base, raw) -> LayerMap:
    """A user's map pairing the two ``attn`` containers; tensor pairs taken from the matcher's leaves."""
    tensors = {pair.base: pair.tensors for pair in suggest_map(base, raw, [X]).pairs}
    leaves = {"attn.0": "attn.0", "attn.1": "norm", "head": "head"}
    pairs = [LayerPair("", ""), LayerPair("attn", "attn")]
    pairs += [LayerPair(b, r, tensors=tensors[b]) for b, r in leaves.items()]
    return LayerMap(pairs)


def _forward_pairs(report) -> set[tuple[str, str]]:
    return {(c.base, c.raw) for c in report.comparisons if c.stage == "forward"}


WHY = "base 'attn.1' is matched to raw 'norm', outside raw 'attn'"


def test_a_container_whose_contents_differ_is_not_compared_and_the_report_says_why() -> None:
    torch.manual_seed(0)
    base, raw = TorchBlock(), PaddleBlock()
    report = pg.diff(base, raw, [X], _hand_map(base, raw))
    assert report.ok, report.first_divergence
    assert report.not_compared == [NotCompared("attn", "attn", WHY)]
    compared = _forward_pairs(report)
    assert ("attn", "attn") not in compared
    assert {("", ""), ("attn.0", "attn.0"), ("attn.1", "norm"), ("head", "head")} <= compared

    document = diff_document(report)
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(schema()).validate(document)
    assert document["not_compared"] == [{"base": "attn", "raw": "attn", "why": WHY}]

    console = Console(file=io.StringIO(), width=200)
    print_diff(console, report)
    line = next(line for line in console.file.getvalue().splitlines() if line.startswith("not compared"))
    assert "base 'attn' / raw 'attn'" in line and WHY in line

    page = render_html(export_tree(base, [X]), export_tree(raw, [X]), report.layer_map, report.findings, report)
    assert 'id="not-compared"' in page and "outside raw &#39;attn&#39;" in page


def test_the_offline_compare_leaves_out_the_same_containers(tmp_path) -> None:
    torch.manual_seed(0)
    base, raw = TorchBlock(), PaddleBlock()
    layer_map = _hand_map(base, raw)
    live = pg.diff(base, raw, [X], layer_map)  # copies the weights, so the dumps start alike
    dump(base, [X], tmp_path / "torch", loss_fn=lambda out: (out**2).mean())
    dump(raw, [X], tmp_path / "paddle", loss_fn=lambda out: (out**2).mean())
    offline = compare_dumps(tmp_path / "torch", tmp_path / "paddle", layer_map)
    assert offline.ok, offline.first_divergence
    assert offline.not_compared == live.not_compared == [NotCompared("attn", "attn", WHY)]
    assert _forward_pairs(offline) == _forward_pairs(live)


class TorchExtra(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8))

    def forward(self, x):
        return self.block(x)


class PaddleExtra(paddle.nn.Layer):
    """The port lacks the block's second Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.block = paddle.nn.Sequential(paddle.nn.Linear(8, 8), paddle.nn.Tanh())

    def forward(self, x):
        return self.block(x)


def test_a_tensor_layer_without_partner_inside_a_container_leaves_it_uncompared() -> None:
    base, raw = TorchExtra(), PaddleExtra()
    proposed = suggest_map(base, raw, [X])
    assert proposed.raw_of("block.2") is None
    layer_map = LayerMap([*proposed.pairs, LayerPair("block", "block")])  # pinned by the user
    found = unlike_containers(layer_map, export_tree(base, [X]), export_tree(raw, [X]))
    why = "base 'block.2' holds tensors and has no partner in raw "
    assert {(n.base, n.raw) for n in found} == {("", ""), ("block", "block")}
    assert all(n.why.startswith(why) for n in found)
    layer_map.ignore_base.append("block.2")  # what the user says does not count
    assert unlike_containers(layer_map, export_tree(base, [X]), export_tree(raw, [X])) == []


def test_a_correct_port_compares_every_pair() -> None:
    torch.manual_seed(0)
    base, raw = TorchBlock(), PaddleBlock()
    report = pg.diff(base, raw, [X])
    assert report.ok and report.not_compared == [], report.not_compared
    assert {(pair.base, pair.raw) for pair in report.layer_map.active_pairs()} == _forward_pairs(report)


class PaddleBlockFault(PaddleBlock):
    """A fault in the root's code between ``attn`` and ``norm``."""

    def forward(self, x):
        return self.head(self.norm(paddle.tanh(self.attn(x))))


def test_a_fault_between_layers_moves_past_an_uncompared_container_to_the_caller() -> None:
    torch.manual_seed(0)
    base, raw = TorchBlock(), PaddleBlockFault()
    report = pg.diff(base, raw, [X], _hand_map(base, raw), backward=False)
    assert report.not_compared == [NotCompared("attn", "attn", WHY)]
    assert tuple(report.first_divergence) == ("", "", "forward"), report.first_divergence
    assert "the forward of base <root> / raw <root>" in report.first_divergence.message
