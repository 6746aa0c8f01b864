"""Worker of tests/test_sharded.py: a paddle MLP split by semi-auto parallel (``dist.parallelize``), recorded.

Run by the test under ``python -m paddle.distributed.launch --nproc_per_node 2
paddle_semi_auto.py OUT``. Writes ``OUT/paddle``: one step, with report,
grads and weights after SGD.
"""

import sys

import numpy as np
import paddle
import paddle.distributed as dist

import padiff_graph as pg

X = np.random.default_rng(2).standard_normal((2, 5, 4)).astype("float32")


class MLP(paddle.nn.Layer):
    """fc1 split by columns, fc2 by rows, the activation between and the head left alone."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = paddle.nn.Linear(4, 8)
        self.act = paddle.nn.GELU()
        self.fc2 = paddle.nn.Linear(8, 4)
        self.head = paddle.nn.Linear(4, 3)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.fc2(self.act(self.fc1(x))))


def main(out: str) -> None:
    dist.init_parallel_env()
    mesh = dist.ProcessMesh(list(range(dist.get_world_size())), dim_names=["mp"])
    paddle.seed(0)
    model = MLP()
    optimizer = paddle.optimizer.SGD(learning_rate=0.1, parameters=model.parameters())
    plan = {"fc1": dist.ColWiseParallel(), "fc2": dist.RowWiseParallel()}
    model, optimizer = dist.parallelize(model, optimizer, mesh=mesh, config={"mp_config": {"parallelize_plan": plan}})
    recording = pg.Recording(model)
    recording.backward((recording.forward(paddle.to_tensor(X)) ** 2).mean())
    recording.save(f"{out}/paddle", 0, "report")
    recording.save(f"{out}/paddle", 0, "grads")
    optimizer.step()
    recording.save(f"{out}/paddle", 0, "weights")
    dist.barrier()


if __name__ == "__main__":
    main(sys.argv[1])
