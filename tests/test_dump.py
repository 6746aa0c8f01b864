"""Offline mode: dump each model on its own (per step, per rank), compare the dumps later."""

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import paddle
import pytest
import torch
from click.testing import CliRunner

import padiff_graph as pg
from padiff_graph import DumpError, InputError, ModelRunError, Recording, compare_dumps, dump, suggest_map
from padiff_graph.cli import main
from padiff_graph.offline.reader import load_dump

ROOT = Path(__file__).resolve().parent.parent
X = np.random.default_rng(0).standard_normal((4, 8), dtype=np.float32) * 4


def torch_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))


def paddle_like(base, approximate=False):
    """The paddle port, with the torch model's weights (a dump is compared without copying weights)."""
    model = paddle.nn.Sequential(
        paddle.nn.Linear(8, 16), paddle.nn.GELU(approximate=approximate), paddle.nn.Linear(16, 4)
    )
    for index in (0, 2):
        model[index].weight.set_value(base[index].weight.detach().numpy().T)
        model[index].bias.set_value(base[index].bias.detach().numpy())
    return model


def train_torch(tmp, model, steps=2):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return dump(model, [X], tmp / "torch", optimizer=optimizer, steps=steps, loss_fn=lambda out: (out**2).mean())


def train_paddle(tmp, model, steps=2, name="paddle", loss_fn=None):
    optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters())
    loss_fn = loss_fn or (lambda out: (out**2).mean())
    return dump(model, [X], tmp / name, optimizer=optimizer, steps=steps, loss_fn=loss_fn)


def test_dump_layout_is_npz_and_json_keyed_by_dotted_paths(tmp_path) -> None:
    directory = train_torch(tmp_path, torch_model())
    header = json.loads((directory / "rank_0.json").read_text())
    assert header["format"] == "padiff-graph-dump" and header["steps"] == 2 and header["framework"] == "torch"
    manifest = json.loads((directory / "step_1" / "rank_0" / "manifest.json").read_text())
    names = [record["name"] for record in manifest["records"]]
    assert "forward:0:0:0" in names and "backward:2:0:0" in names and "loss::0:0" in names
    assert "grad:0.weight:0:0" in names and "weights:2.bias:0:0" in names
    with np.load(directory / "step_1" / "rank_0" / "tensors.npz", allow_pickle=False) as arrays:
        assert sorted(arrays.files) == sorted(names)
        assert arrays["forward:0:0:0"].shape == (4, 16)


def test_two_dumps_compare_through_the_map_without_the_models(tmp_path) -> None:
    base = torch_model()
    raw = paddle_like(base)
    layer_map = suggest_map(base, raw)
    layer_map.save(tmp_path / "map.yaml")
    train_torch(tmp_path, base)
    train_paddle(tmp_path, raw)
    report = compare_dumps(tmp_path / "torch", tmp_path / "paddle")
    assert report.ok, report.first_divergence
    assert {(c.step, c.kind) for c in report.comparisons} == {
        (s, k) for s in (0, 1) for k in ("forward", "loss", "backward", "grad", "weights")
    }
    result = CliRunner().invoke(
        main, ["compare", str(tmp_path / "torch"), str(tmp_path / "paddle"), "--map", str(tmp_path / "map.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert "aligned" in result.output


def test_a_fault_in_the_dumps_is_named_with_its_layer(tmp_path) -> None:
    base = torch_model()
    train_torch(tmp_path, base, steps=1)
    train_paddle(tmp_path, paddle_like(torch_model(), approximate=True), steps=1)
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "torch"), str(tmp_path / "paddle"), "--json"])
    assert result.exit_code == 1, result.output
    document = json.loads(result.output)
    assert (document["first_divergence"]["base"], document["first_divergence"]["stage"]) == ("1", "forward")


def test_an_interrupted_dump_is_detected_and_never_read_as_complete(tmp_path) -> None:
    calls = []

    def failing_loss(out):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return (out**2).mean()

    model = paddle_like(torch_model())
    train_paddle(tmp_path, model, steps=1)  # a complete earlier dump of the same directory
    assert load_dump(tmp_path / "paddle").ranks[0].steps
    with pytest.raises(ModelRunError, match="killed"):
        train_paddle(tmp_path, model, steps=3, loss_fn=failing_loss)
    assert (tmp_path / "paddle" / "step_1" / ".rank_0.partial").exists()
    with pytest.raises(DumpError, match="incomplete dump"):
        load_dump(tmp_path / "paddle")
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "paddle"), str(tmp_path / "paddle")])
    assert result.exit_code == 2 and "incomplete dump" in result.output


def record_own_loop(model, framework, directory, saved_steps, black_list=None):
    """Train ``model`` three SGD steps in a plain loop, saving the steps in ``saved_steps`` through a Recording."""
    recording = Recording(model, black_list=black_list)
    if framework == "torch":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        x = torch.from_numpy(X)
    else:
        optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters())
        x = paddle.to_tensor(X)
    for step in range(3):
        loss = (recording.forward(x) ** 2).mean()
        recording.backward(loss)
        if step in saved_steps:
            recording.save(directory, step, "report")
            recording.save(directory, step, "grads")
        optimizer.step()
        if framework == "torch":
            optimizer.zero_grad()
        else:
            optimizer.clear_grad()
        if step in saved_steps:
            recording.save(directory, step, "weights")
        recording.clear()
    return recording


def test_a_recording_of_your_own_loop_is_a_dump_compared_like_any_other(tmp_path) -> None:
    base = torch_model()
    raw = paddle_like(base)
    record_own_loop(base, "torch", tmp_path / "torch", saved_steps=(0, 2))
    record_own_loop(raw, "paddle", tmp_path / "paddle", saved_steps=(0, 2))
    header = json.loads((tmp_path / "torch" / "rank_0.json").read_text())
    assert header["steps"] == [0, 2]
    folder = tmp_path / "torch" / "step_2" / "rank_0"
    assert sorted(p.name for p in folder.iterdir()) == ["grads.npz", "manifest.json", "report.npz", "weights.npz"]
    report = compare_dumps(tmp_path / "torch", tmp_path / "paddle")
    assert report.ok, report.first_divergence
    assert {(c.step, c.kind) for c in report.comparisons} == {
        (s, k) for s in (0, 2) for k in ("input", "forward", "loss", "backward", "grad", "weights")
    }
    only = compare_dumps(tmp_path / "torch", tmp_path / "paddle", steps={2}, stages={"grad"})
    assert {(c.step, c.kind) for c in only.comparisons} == {(2, "grad")}
    with pytest.raises(DumpError, match=r"share no step and rank to compare among steps \[1\]"):
        compare_dumps(tmp_path / "torch", tmp_path / "paddle", steps={1})
    with pytest.raises(InputError, match="stages must be among"):
        compare_dumps(tmp_path / "torch", tmp_path / "paddle", stages={"outputs"})


def test_a_recording_finds_a_fault_and_skips_black_listed_layers(tmp_path) -> None:
    base = torch_model()
    raw = paddle_like(torch_model(), approximate=True)
    record_own_loop(base, "torch", tmp_path / "torch", saved_steps=(0,), black_list=[base[2]])
    recording = record_own_loop(raw, "paddle", tmp_path / "paddle", saved_steps=(0,), black_list=[raw[2]])
    assert "2" not in recording.layers
    manifest = json.loads((tmp_path / "paddle" / "step_0" / "rank_0" / "manifest.json").read_text())
    assert not [r for r in manifest["records"] if r["path"].startswith("2")]
    report = compare_dumps(tmp_path / "torch", tmp_path / "paddle")
    assert tuple(report.first_divergence) == ("1", "1", "forward")


def test_saving_a_part_again_replaces_it_and_a_new_recording_starts_the_rank_afresh(tmp_path) -> None:
    model = torch_model()
    recording = Recording(model)
    recording.forward(torch.from_numpy(X))
    recording.save(tmp_path, 0, "report")
    recording.save(tmp_path, 3, "weights")
    recording.save(tmp_path, 0, "report")  # again: replaces report.npz, keeps nothing twice
    names = [r["name"] for r in json.loads((tmp_path / "step_0" / "rank_0" / "manifest.json").read_text())["records"]]
    assert len(names) == len(set(names)) and "forward:0:0:0" in names
    fresh = Recording(model)
    fresh.save(tmp_path, 0, "weights")
    manifest = json.loads((tmp_path / "step_0" / "rank_0" / "manifest.json").read_text())
    assert {r["stage"] for r in manifest["records"]} == {"weights"}  # the old report is gone
    assert json.loads((tmp_path / "rank_0.json").read_text())["steps"] == [0]
    assert sorted(load_dump(tmp_path).ranks[0].steps) == [0]
    with pytest.raises(InputError, match="part must be one of report, grads, weights"):
        fresh.save(tmp_path, 0, "params")


WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    import numpy as np, torch, torch.distributed as dist
    from padiff_graph import dump
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4))
    x = np.random.default_rng(rank).standard_normal((4, 8), dtype=np.float32)  # this rank's shard
    dump(model, [x], {directory!r}, loss_fn=lambda out: (out ** 2).mean())
    dist.barrier()
    dist.destroy_process_group()
    """
)


def test_a_two_process_torch_distributed_run_is_dumped_per_rank(tmp_path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT), directory=str(tmp_path / "torch")))
    environment = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env={**__import__("os").environ, **environment, "RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    for worker in workers:
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors[-2000:]
    assert sorted(load_dump(tmp_path / "torch").ranks) == [0, 1]
    # the paddle port, each rank's shard dumped in this process
    torch.manual_seed(0)
    raw = paddle_like(torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 4)))
    for rank in (0, 1):
        x = np.random.default_rng(rank).standard_normal((4, 8), dtype=np.float32)
        dump(raw, [x], tmp_path / "paddle", loss_fn=lambda out: (out**2).mean(), rank=rank)
    report = compare_dumps(tmp_path / "torch", tmp_path / "paddle")
    assert report.ok, report.first_divergence
    assert report.settings["ranks"] == [0, 1]
    losses = [c for c in report.comparisons if c.kind == "loss"]
    assert len(losses) == 2


class TorchHeaded(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU())
        self.head = torch.nn.Sequential(torch.nn.Linear(16, 4), torch.nn.GELU())

    def forward(self, x):
        return self.head(self.block(x))


class PaddleHeaded(paddle.nn.Layer):
    """The port, with an approximate GELU planted in the head."""

    def __init__(self) -> None:
        super().__init__()
        self.block = paddle.nn.Sequential(paddle.nn.Linear(8, 16), paddle.nn.GELU())
        self.head = paddle.nn.Sequential(paddle.nn.Linear(16, 4), paddle.nn.GELU(approximate=True))

    def forward(self, x):
        return self.head(self.block(x))


def test_the_live_diff_and_the_offline_compare_agree_on_an_ignored_subtree(tmp_path) -> None:
    """``ignore`` covers the whole subtree, in the live diff and the offline compare alike."""
    torch.manual_seed(0)
    base, raw = TorchHeaded(), PaddleHeaded()
    layer_map = suggest_map(base, raw)
    layer_map.ignore_base.append("head")
    live = pg.diff(base, raw, [X], layer_map)  # copies the weights, so the dumps below start alike
    loss = lambda out: (out**2).mean()  # noqa: E731
    dump(base, [X], tmp_path / "torch", loss_fn=loss)
    dump(raw, [X], tmp_path / "paddle", loss_fn=loss)
    offline = compare_dumps(tmp_path / "torch", tmp_path / "paddle", layer_map)

    def compared(report):
        return {(c.base, c.raw, c.kind) for c in report.comparisons if c.kind != "loss"}

    assert compared(live) == compared(offline)
    assert not any(base_path.startswith("head") for base_path, _, _ in compared(live))
    assert tuple(live.first_divergence) == tuple(offline.first_divergence) == ("", "", "forward")
