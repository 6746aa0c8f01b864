"""Export of real torch and paddle models into trees."""

import paddle
import pytest
import torch

from padiff_graph import TensorKind, export_tree
from padiff_graph.core.tree import full_tensor_names


def kinds(tree, path):
    return {t.name: t.kind for t in tree.nodes[path]["tensors"]}


def test_torch_paths_kinds_and_order() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Embedding(5, 2))
    model[0].bias.requires_grad_(False)
    tree = export_tree(model)
    assert list(tree.nodes) == [name for name, _ in model.named_modules()]
    assert tree.nodes["0"]["class_name"] == "Conv2d" and tree.nodes["1"]["index"] == 1
    assert kinds(tree, "0") == {"weight": TensorKind.PARAMETER, "bias": TensorKind.FROZEN}
    assert kinds(tree, "1")["running_mean"] is TensorKind.BUFFER
    assert kinds(tree, "2") == {"weight": TensorKind.EMBEDDING}
    names = set(dict(model.named_parameters())) | set(dict(model.named_buffers()))
    assert set(full_tensor_names(tree)) == names


def test_paddle_batchnorm_statistics_are_frozen_parameters() -> None:
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    tree = export_tree(model)
    assert list(tree.nodes) == [name for name, _ in model.named_sublayers(include_self=True)]
    assert kinds(tree, "1") == {
        "weight": TensorKind.PARAMETER,
        "bias": TensorKind.PARAMETER,
        "_mean": TensorKind.FROZEN,
        "_variance": TensorKind.FROZEN,
    }
    assert tree.nodes["1"]["config"]["epsilon"] == pytest.approx(1e-5)


def test_shared_submodule_is_exported_once() -> None:
    class Shared(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(2, 2)
            self.b = self.a

    tree = export_tree(Shared())
    assert list(tree.nodes) == ["", "a"]


def test_torch_meta_device_export_needs_no_memory() -> None:
    with torch.device("meta"):
        model = torch.nn.Sequential(*[torch.nn.Linear(4096, 4096) for _ in range(4)])
    tree = export_tree(model)
    assert tree.nodes["3"]["tensors"][0].shape == (4096, 4096)


def test_paddle_lazy_guard_export_needs_no_memory() -> None:
    with paddle.LazyGuard():
        model = paddle.nn.Sequential(*[paddle.nn.Linear(4096, 4096) for _ in range(4)])
    tree = export_tree(model)
    assert tree.nodes["3"]["tensors"][0].shape == (4096, 4096)


def test_call_order_is_traced_with_inputs() -> None:
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.second = torch.nn.Linear(2, 2)
            self.first = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.second(self.first(x))

    import numpy as np

    tree = export_tree(Net(), {"x": np.ones((1, 2), np.float32)})
    assert tree.graph["call_order"] == ["", "first", "second"]
