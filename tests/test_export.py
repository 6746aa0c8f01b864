"""Export of real torch and paddle models into trees."""

import numpy as np
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

    tree = export_tree(Net(), {"x": np.ones((1, 2), np.float32)})
    assert tree.graph["call_order"] == ["", "first", "second"]


class Gated(torch.nn.Module):
    """Runs ``head`` only on a batch with samples (``skip_empty``), or rejects an empty one (``reject_empty``)."""

    def __init__(self, skip_empty: bool = False, reject_empty: bool = False) -> None:
        super().__init__()
        self.body, self.head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        self.skip_empty, self.reject_empty = skip_empty, reject_empty
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        if self.reject_empty and not x.shape[0]:
            raise ValueError("expected a non-empty batch")
        x = self.body(x)
        return self.head(x) if x.shape[0] or not self.skip_empty else x


class Listed(torch.nn.Module):
    """Its blocks sit in a ModuleList, a container whose own forward never runs, beside a ReLU it never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(2))
        self.unused = torch.nn.ReLU()
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        for block in self.blocks:
            x = block(x)
        return x


class PaddleSequence(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.second = paddle.nn.Linear(2, 2)
        self.first = paddle.nn.Linear(2, 2)
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return self.second(paddle.nn.functional.relu(self.first(x)))


BATCH = {"x": np.ones((3, 2), np.float32)}


@pytest.mark.parametrize(
    ("model_class", "order"),
    [(Gated, ["body", "head"]), (PaddleSequence, ["first", "second"]), (Listed, ["blocks.0", "blocks.1"])],
)
def test_call_order_alone_is_traced_on_an_empty_batch(model_class, order: list[str]) -> None:
    """No arithmetic for the order: every layer holding tensors runs on a batch of none (a container or a
    parameter-less layer that never runs does not count)."""
    model = model_class()
    tree = export_tree(model, BATCH)
    assert model.batches == [0]
    assert tree.graph["call_order"] == ["", *order]


@pytest.mark.parametrize("gate", ["skip_empty", "reject_empty"])
def test_a_model_that_skips_a_layer_or_fails_on_an_empty_batch_is_traced_on_one_sample(gate: str) -> None:
    """The empty batch's order is kept only where every layer holding tensors ran: one it skipped would be
    missing from the order."""
    model = Gated(**{gate: True})
    tree = export_tree(model, BATCH)
    assert model.batches == [0, 1]
    assert tree.graph["call_order"] == ["", "body", "head"]


def test_a_batch_of_one_is_traced_empty_and_a_layer_it_skips_on_the_whole_batch() -> None:
    model = Gated(skip_empty=True)
    tree = export_tree(model, {"x": np.ones((1, 2), np.float32)})
    assert model.batches == [0, 1]
    assert tree.graph["call_order"] == ["", "body", "head"]
