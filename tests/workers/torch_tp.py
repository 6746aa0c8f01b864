"""Worker of tests/test_sharded.py: a torch MLP tensor-parallel over the ranks, recorded inside its own loop.

Run by the test as ``python torch_tp.py OUT`` in every rank (the environment of
``torchrun``). Writes ``OUT/torch`` (one training step: report, grads and
weights after SGD) and ``OUT/torch_bug`` (the forward, with rank 1's shard of
``fc2.weight`` corrupted).
"""

import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

import padiff_graph as pg

X = np.random.default_rng(0).standard_normal((2, 5, 4), dtype=np.float32)


class MLP(torch.nn.Module):
    """fc1 split by columns, fc2 by rows (a partial sum), the activation between and the head left alone."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.act = torch.nn.GELU()
        self.fc2 = torch.nn.Linear(8, 4)
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc2(self.act(self.fc1(x))))


def parallel_model(mesh: object) -> MLP:
    torch.manual_seed(0)
    model = MLP()
    parallelize_module(model, mesh, {"fc1": ColwiseParallel(), "fc2": RowwiseParallel()})
    return model


def main(out: str) -> None:
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model = parallel_model(mesh)
    recording = pg.Recording(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = (recording.forward(torch.from_numpy(X)) ** 2).mean()
    recording.backward(loss)
    recording.save(f"{out}/torch", 0, "report")
    recording.save(f"{out}/torch", 0, "grads")
    optimizer.step()
    recording.save(f"{out}/torch", 0, "weights")

    buggy = parallel_model(mesh)
    if dist.get_rank() == 1:
        with torch.no_grad():
            buggy.fc2.weight.to_local()[0, 0] += 0.5  # a shard loaded wrong on one rank
    recording = pg.Recording(buggy)
    recording.forward(torch.from_numpy(X))
    recording.save(f"{out}/torch_bug", 0, "report")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
