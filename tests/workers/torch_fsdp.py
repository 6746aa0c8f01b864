"""Worker of tests/test_sharded.py: tests/workers/torch_tp.py's MLP data parallel under FSDP2, recorded in its loop.

Run by the test as ``python torch_fsdp.py OUT`` in every rank (the environment
of ``torchrun``). Each rank trains on its half of ``BATCH`` (rank order) and
writes ``OUT/fsdp``: one step, with report, grads and weights after SGD.
"""

import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch_tp import MLP

import padiff_graph as pg

BATCH = np.random.default_rng(1).standard_normal((4, 5, 4), dtype=np.float32)


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = MLP()
    for layer in (model.fc1, model.fc2):
        fully_shard(layer)
    fully_shard(model)
    recording = pg.Recording(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    size = len(BATCH) // world
    loss = (recording.forward(torch.from_numpy(BATCH[rank * size : (rank + 1) * size])) ** 2).mean()
    recording.backward(loss)
    recording.save(f"{out}/fsdp", 0, "report")
    recording.save(f"{out}/fsdp", 0, "grads")
    optimizer.step()
    recording.save(f"{out}/fsdp", 0, "weights")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
