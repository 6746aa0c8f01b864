"""Sharded runs: each rank records its part with the engine's placements; compare merges them first."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import paddle
import pytest
import torch
from click.testing import CliRunner

import padiff_graph as pg
from padiff_graph.cli import main
from padiff_graph.core.records import Layout
from padiff_graph.errors import NotComparableError
from padiff_graph.offline.integrity import sealed_json
from padiff_graph.offline.reader import load_dump
from padiff_graph.offline.shards import Part, RunStep, merge, split_axis

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ROOT / "tests" / "workers"


def placed(rank: int, array: np.ndarray, placements: tuple[str, ...], mesh: tuple[int, ...], coordinate, shape):
    return Part(rank, array, Layout(placements, mesh, tuple(coordinate), tuple(shape)))


def test_shards_concatenate_in_mesh_order_innermost_dimension_first() -> None:
    full = np.arange(48, dtype=np.float32).reshape(4, 12)
    # a 2x3 mesh: dimension 0 splits the rows, dimension 1 the columns; ranks listed out of order
    parts = [
        placed(rank, full[2 * i : 2 * i + 2, 4 * j : 4 * j + 4], ("shard(0)", "shard(1)"), (2, 3), (i, j), (4, 12))
        for rank, (i, j) in reversed(list(enumerate((i, j) for i in range(2) for j in range(3))))
    ]
    assert np.array_equal(merge(parts), full)
    # both mesh dimensions splitting one axis: the first mesh dimension is the outer split
    rows = [
        placed(
            2 * i + j,
            full.reshape(-1)[12 * i + 6 * j : 12 * i + 6 * j + 6],
            ("shard(0)", "shard(0)"),
            (2, 2),
            (i, j),
            (24,),
        )
        for i in range(2)
        for j in range(2)
    ]
    assert np.array_equal(merge(rows), full.reshape(-1)[:24])


def test_partial_sums_add_and_replicas_must_agree() -> None:
    a, b = np.full((2, 3), 1.5, np.float32), np.full((2, 3), 2.0, np.float32)
    assert np.array_equal(
        merge([placed(r, v, ("partial(sum)",), (2,), (r,), (2, 3)) for r, v in ((0, a), (1, b))]), a + b
    )
    assert np.array_equal(merge([placed(r, a, ("replicate",), (2,), (r,), (2, 3)) for r in (0, 1)]), a)
    with pytest.raises(NotComparableError, match=r"replicas disagree \(max abs diff 0.5\)"):
        merge([placed(r, v, ("replicate",), (2,), (r,), (2, 3)) for r, v in ((0, a), (1, b))])
    with pytest.raises(NotComparableError, match=r"no rank recorded mesh coordinate \[1\]"):
        merge([placed(0, a, ("shard(0)",), (2,), (0,), (4, 3))])
    with pytest.raises(NotComparableError, match="has no merge rule"):
        merge([placed(r, a, ("other(_StridedShard)",), (2,), (r,), (4, 3)) for r in (0, 1)])


def test_an_unplaced_tensor_is_merged_only_when_the_evidence_leaves_one_reading() -> None:
    a, b = np.zeros((2, 5, 4), np.float32), np.ones((2, 5, 4), np.float32)
    # exactly one axis explains the sizes against the other run: concatenated in rank order
    assert np.array_equal(merge([Part(1, b, None), Part(0, a, None)], (2, 5, 8)), np.concatenate([a, b], axis=2))
    assert np.array_equal(merge([Part(0, a, None), Part(1, a.copy(), None)], (2, 5, 4)), a)  # a replica
    with pytest.raises(NotComparableError, match="a partial sum, or each rank's own batch"):
        merge([Part(0, a, None), Part(1, b, None)], (2, 5, 4))
    with pytest.raises(NotComparableError, match="no placement says how they combine into"):
        merge([Part(0, a, None), Part(1, b, None)], (4, 5, 8))
    assert split_axis([(2, 4), (2, 4)], (4, 4)) == 0 and split_axis([(2, 4), (2, 4)], (4, 8)) is None
    with pytest.raises(NotComparableError, match=r"ranks \[0\] recorded a placement, ranks \[1\] none"):
        merge([placed(0, a, ("shard(2)",), (2,), (0,), (2, 5, 8)), Part(1, b, None)])


def worker(name: str) -> ModuleType:
    """A module of tests/workers/ (what the workers define: models, batches)."""
    if str(WORKERS) not in sys.path:
        sys.path.insert(0, str(WORKERS))
    return importlib.import_module(name)


def launch(script: Path, out: Path, ranks: int = 2, timeout: float = 180) -> None:
    """Run ``script OUT`` in ``ranks`` processes with torchrun's environment, gloo over loopback; all stopped after."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(ranks),
        "LOCAL_WORLD_SIZE": str(ranks),
        "PYTHONPATH": str(ROOT),
    }
    logs = out / "launch_logs"
    logs.mkdir(parents=True)
    workers = []
    for rank in range(ranks):
        with open(logs / f"rank_{rank}.log", "w") as log:  # a file, not a pipe: a chatty rank never blocks
            command = [sys.executable, str(script), str(out)]
            environment.update(RANK=str(rank), LOCAL_RANK=str(rank))
            workers.append(subprocess.Popen(command, env={**environment, **_LOOPBACK}, stdout=log, stderr=log))
    deadline = time.monotonic() + timeout
    try:
        for worker in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):  # stopped below, reported as -9
                worker.wait(timeout=max(deadline - time.monotonic(), 0.1))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    _check(logs, [worker.returncode for worker in workers])


def launch_paddle(script: Path, out: Path, ranks: int = 2, timeout: float = 180) -> None:
    """Run ``script OUT`` under ``python -m paddle.distributed.launch`` (gloo on CPU); the launcher's process
    group is stopped after, whatever happened."""
    logs = out / "launch_logs"
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(ranks), "--log_dir"]
    launcher = subprocess.Popen(
        [*command, str(logs), str(script), str(out)],
        env={**os.environ, "PYTHONPATH": str(ROOT), **_LOOPBACK},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the launcher and its workers: one process group to stop
    )
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):  # stopped below, reported as -9
            launcher.wait(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):  # whatever of the group is left, launcher or worker
            os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
    _check(logs, [launcher.returncode])


#: every connection of a launch on the loopback interface; one thread per rank on a small machine
_LOOPBACK = {"MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}


def _check(logs: Path, codes: list[int]) -> None:
    if any(codes):
        tails = "\n".join(f"{log.name}: {log.read_text(errors='replace')[-2000:]}" for log in sorted(logs.glob("*")))
        pytest.fail(f"launch failed (exit codes {codes}; -9: past its timeout):\n{tails}")


class PaddleMLP(paddle.nn.Layer):
    """The single-process paddle port of ``tests/workers/torch_tp.py``'s MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = paddle.nn.Linear(4, 8)
        self.act = paddle.nn.GELU()
        self.fc2 = paddle.nn.Linear(8, 4)
        self.head = paddle.nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.fc2(self.act(self.fc1(x))))


def paddle_port(directory: Path, batch: np.ndarray | None = None) -> None:
    """The port with the torch model's initial weights, one SGD step recorded as the workers do."""
    tp = worker("torch_tp")
    torch.manual_seed(0)
    reference = tp.MLP()
    model = PaddleMLP()
    for name in ("fc1", "fc2", "head"):
        getattr(model, name).weight.set_value(getattr(reference, name).weight.detach().numpy().T)
        getattr(model, name).bias.set_value(getattr(reference, name).bias.detach().numpy())
    recording = pg.Recording(model)
    optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters())
    recording.backward((recording.forward(paddle.to_tensor(tp.X if batch is None else batch)) ** 2).mean())
    recording.save(directory, 0, "report")
    recording.save(directory, 0, "grads")
    optimizer.step()
    recording.save(directory, 0, "weights")


def layouts(directory: Path, rank: int) -> dict[str, list[str] | None]:
    manifest = json.loads((directory / "step_0" / f"rank_{rank}" / "manifest.json").read_text())
    return {e["name"]: e["layout"]["placements"] if "layout" in e else None for e in manifest["records"]}


@pytest.mark.distributed
def test_a_torch_tensor_parallel_run_merges_and_compares_with_its_single_process_paddle_port(tmp_path) -> None:
    launch(WORKERS / "torch_tp.py", tmp_path)
    torch_dir, paddle_dir = tmp_path / "torch", tmp_path / "paddle"
    paddle_port(paddle_dir)

    # each rank recorded its local part with the engine's placements; the activation between has none
    placements = layouts(torch_dir, 1)
    assert placements["forward:fc1:0:0"] == ["shard(2)"] and placements["forward:fc2:0:0"] == ["partial(sum)"]
    assert placements["forward:act:0:0"] is None and placements["backward:fc2:0:0"] == ["replicate"]
    assert placements["weights:fc1.weight:0:0"] == ["shard(0)"] and placements["grad:fc2.weight:0:0"] == ["shard(1)"]

    for base, raw in ((torch_dir, paddle_dir), (paddle_dir, torch_dir)):
        report = pg.compare_dumps(base, raw)
        assert report.ok and not report.not_comparable, report.first_divergence or report.not_comparable
        compared = {(c.kind, c.base) for c in report.comparisons}
        assert {("forward", "fc1"), ("forward", "act"), ("forward", "fc2"), ("backward", "fc1")} <= compared
        assert {("input", ""), ("loss", ""), ("grad", "fc2"), ("weights", "fc1")} <= compared
    assert pg.compare_dumps(torch_dir, paddle_dir).settings["merged"] == {"base": [0, 1], "raw": [0]}

    # rank 1's shard of fc2.weight loaded wrong: named at fc2, where the partial sums meet
    bug = pg.compare_dumps(tmp_path / "torch_bug", paddle_dir)
    assert (bug.first_divergence.base, bug.first_divergence.stage) == ("fc2", "forward")
    html = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "torch_bug"), str(paddle_dir), "--html", str(html)])
    assert result.exit_code == 1 and "diverged" in result.output and "fc2" in result.output
    assert "merged by placement: base ranks [0, 1], raw ranks [0]" in result.output
    assert "fc2" in html.read_text()

    # an engine that did not say fc2's output is a partial sum: not comparable, never merged as a replica
    unsaid = tmp_path / "unsaid"
    shutil.copytree(torch_dir, unsaid)
    for rank in (0, 1):
        manifest_file = unsaid / "step_0" / f"rank_{rank}" / "manifest.json"
        manifest = json.loads(manifest_file.read_text())
        for entry in manifest["records"]:
            if entry["name"] == "forward:fc2:0:0":
                del entry["layout"]
        manifest_file.write_text(sealed_json(manifest))  # as that engine's dump would be written, checksum included
    report = pg.compare_dumps(unsaid, paddle_dir)
    assert report.ok and ("forward", "fc2") not in {(c.kind, c.base) for c in report.comparisons}
    assert report.not_comparable == [
        "forward fc2 (call 0): ranks hold different values of one shape and no placement says how they combine "
        "(a partial sum, or each rank's own batch)"
    ]
    result = CliRunner().invoke(main, ["compare", str(unsaid), str(paddle_dir), "--html", str(html)])
    assert result.exit_code == 0 and "not comparable" in result.output
    assert "Not comparable" in html.read_text() and "forward fc2 (call 0)" in html.read_text()


@pytest.mark.distributed
def test_an_fsdp2_data_parallel_run_merges_its_batch_and_compares_with_one_process(tmp_path) -> None:
    launch(WORKERS / "torch_fsdp.py", tmp_path)
    batch = worker("torch_fsdp").BATCH

    paddle_port(tmp_path / "paddle", batch)
    placements = layouts(tmp_path / "fsdp", 0)
    assert placements["weights:head.weight:0:0"] == ["shard(0)"]  # 3 rows over 2 ranks: uneven shards
    assert placements["forward:fc1:0:0"] is None  # activations are each rank's own batch

    for base, raw in ((tmp_path / "fsdp", tmp_path / "paddle"), (tmp_path / "paddle", tmp_path / "fsdp")):
        report = pg.compare_dumps(base, raw)
        assert report.ok and not report.not_comparable, report.first_divergence or report.not_comparable
        compared = {(c.kind, c.base) for c in report.comparisons}
        # the loss is the mean of the ranks' own losses, so output gradients are of that mean
        assert {("input", ""), ("forward", "act"), ("loss", ""), ("backward", "fc1"), ("grad", "head")} <= compared
        assert ("weights", "head") in compared
    # the loss still says how the ranks' output gradients combine when only those are compared
    only = pg.compare_dumps(tmp_path / "fsdp", tmp_path / "paddle", stages={"backward"})
    assert only.ok and not only.not_comparable and {c.kind for c in only.comparisons} == {"backward"}

    # the port fed the batch in another order: named at the root's input, where the runs part ways
    paddle_port(tmp_path / "shuffled", np.concatenate([batch[2:], batch[:2]]))
    report = pg.compare_dumps(tmp_path / "fsdp", tmp_path / "shuffled")
    assert (report.first_divergence.base, report.first_divergence.stage) == ("", "input")


def torch_port(directory: Path, approximate: str = "none") -> None:
    """The single-process torch port of tests/workers/paddle_semi_auto.py's MLP, its weights, one SGD step."""
    paddle.seed(0)
    reference = worker("paddle_semi_auto").MLP()
    model = worker("torch_tp").MLP()
    model.act = torch.nn.GELU(approximate=approximate)
    with torch.no_grad():
        for name in ("fc1", "fc2", "head"):
            getattr(model, name).weight.copy_(torch.from_numpy(getattr(reference, name).weight.numpy().T))
            getattr(model, name).bias.copy_(torch.from_numpy(getattr(reference, name).bias.numpy()))
    recording = pg.Recording(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    recording.backward((recording.forward(torch.from_numpy(worker("paddle_semi_auto").X)) ** 2).mean())
    recording.save(directory, 0, "report")
    recording.save(directory, 0, "grads")
    optimizer.step()
    recording.save(directory, 0, "weights")


@pytest.mark.distributed
def test_a_paddle_semi_auto_parallel_run_merges_and_compares_with_its_single_process_torch_port(tmp_path) -> None:
    launch_paddle(WORKERS / "paddle_semi_auto.py", tmp_path)
    paddle_dir = tmp_path / "paddle"
    placements = layouts(paddle_dir, 0)
    assert placements["forward:fc1:0:0"] == ["shard(2)"] and placements["forward:act:0:0"] == ["shard(2)"]
    assert placements["weights:fc1.weight:0:0"] == ["shard(1)"]  # paddle's [in, out]: torch's shard(0), transposed
    assert placements["grad:fc2.weight:0:0"] == ["shard(0)"] and placements["loss::0:0"] == ["replicate"]

    torch_port(tmp_path / "torch")
    for base, raw in ((paddle_dir, tmp_path / "torch"), (tmp_path / "torch", paddle_dir)):
        report = pg.compare_dumps(base, raw)
        assert report.ok and not report.not_comparable, report.first_divergence or report.not_comparable
        compared = {(c.kind, c.base) for c in report.comparisons}
        assert {("forward", "act"), ("backward", "fc1"), ("grad", "fc1"), ("weights", "fc2"), ("loss", "")} <= compared

    # the port's GELU approximates with tanh: named at act, a layer split across the ranks
    torch_port(tmp_path / "tanh", approximate="tanh")
    first = pg.compare_dumps(paddle_dir, tmp_path / "tanh").first_divergence
    assert (first.base, first.stage) == ("act", "forward")


@pytest.mark.distributed
def test_fleet_tensor_parallel_weights_merge_by_their_split_axis(tmp_path) -> None:
    launch_paddle(WORKERS / "paddle_fleet_tp.py", tmp_path)
    fleet = worker("paddle_fleet_tp")
    dump = load_dump(tmp_path / "fleet")
    assert layouts(tmp_path / "fleet", 1)["weights:0.weight:0:0"] == ["shard(1)"]
    with RunStep({rank: found.steps[0] for rank, found in dump.ranks.items()}) as step:
        assert np.array_equal(step.array("weights:0.weight:0:0"), fleet.FC1)
        assert np.array_equal(step.array("weights:1.weight:0:0"), fleet.FC2)
