"""suggest-map --format padiff: set_layer_map plus add_special_init registrations PaDiff users paste."""

from __future__ import annotations

import types

import numpy as np
import paddle
import torch
from test_conversions import PaddleSequenceNet, TorchSequenceNet, randomize

from padiff_graph import LayerMap, LayerPair, TensorPair, export_tree, suggest_map
from padiff_graph.layermap.padiff_code import padiff_code, set_layer_map_snippet


def test_generated_special_inits_run_under_padiffs_api(monkeypatch) -> None:
    base, raw = TorchSequenceNet(), PaddleSequenceNet()
    code = padiff_code(suggest_map(base, raw), export_tree(base), export_tree(raw))
    registered: dict[tuple[str, str, str, str], object] = {}
    fake_padiff = types.ModuleType("padiff")
    fake_padiff.add_special_init = lambda *args: registered.__setitem__(args[:4], args[4])  # type: ignore[attr-defined]
    monkeypatch.setitem(__import__("sys").modules, "padiff", fake_padiff)
    layer_maps: dict[str, list[object]] = {}
    proxies = {
        side: types.SimpleNamespace(
            model=model, set_layer_map=lambda layers, side=side: layer_maps.__setitem__(side, layers)
        )
        for side, model in (("base", base), ("raw", raw))
    }
    exec(code, {"base_model": proxies["base"], "raw_model": proxies["raw"]})
    assert set(registered) == {("torch", "MultiheadAttention", "paddle", "MultiHeadAttention")}
    assert layer_maps["base"][2] is base.attn and layer_maps["raw"][2] is raw.attn
    init = registered[("torch", "MultiheadAttention", "paddle", "MultiHeadAttention")]
    randomize(base, 21)
    init(base.attn, raw.attn)  # type: ignore[operator]
    x = np.random.default_rng(2).standard_normal((2, 5, 16)).astype(np.float32)
    with torch.no_grad():
        expected = base.attn(*[torch.from_numpy(x)] * 3, need_weights=False)[0].numpy()
    actual = raw.attn(*[paddle.to_tensor(x)] * 3).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5)


def test_maps_that_need_no_special_init_print_only_set_layer_map() -> None:
    base, raw = torch.nn.Sequential(torch.nn.Linear(2, 3)), paddle.nn.Sequential(paddle.nn.Linear(2, 3))
    code = padiff_code(suggest_map(base, raw), export_tree(base), export_tree(raw))
    assert "add_special_init" not in code and "set_layer_map" in code


def test_set_layer_map_snippet_uses_attribute_paths() -> None:
    layer_map = LayerMap([LayerPair("layer1.0.conv", "blocks.0.conv", 1.0, (TensorPair("weight", "weight"),))])
    snippet = set_layer_map_snippet(layer_map)
    assert "base_model.model.layer1[0].conv" in snippet and "raw_model.model.blocks[0].conv" in snippet
