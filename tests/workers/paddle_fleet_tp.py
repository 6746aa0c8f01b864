"""Worker of tests/test_sharded.py: fleet tensor parallelism (``ColumnParallelLinear``, ``RowParallelLinear``).

Its forward has no CPU kernels, so only the weights are recorded: run under
``python -m paddle.distributed.launch --nproc_per_node 2 paddle_fleet_tp.py
OUT``, each rank loads its slice of ``FC1``/``FC2`` (paddle's ``[in, out]``)
and saves ``OUT/fleet`` step 0, part ``weights``.
"""

import sys

import numpy as np
import paddle
from paddle.distributed import fleet

import padiff_graph as pg

FC1 = np.random.default_rng(3).standard_normal((4, 8)).astype("float32")
FC2 = np.random.default_rng(4).standard_normal((8, 4)).astype("float32")


def main(out: str) -> None:
    strategy = fleet.DistributedStrategy()
    strategy.hybrid_configs = {"dp_degree": 1, "mp_degree": 2, "pp_degree": 1}
    fleet.init(is_collective=True, strategy=strategy)
    from paddle.distributed.fleet.meta_parallel import ColumnParallelLinear, RowParallelLinear

    model = paddle.nn.Sequential(
        ColumnParallelLinear(4, 8, has_bias=False, gather_output=False),
        RowParallelLinear(8, 4, has_bias=False, input_is_parallel=True),
    )
    rank = fleet.get_hybrid_communicate_group().get_model_parallel_rank()
    model[0].weight.set_value(np.split(FC1, 2, axis=1)[rank])  # split_axis 1: the output columns
    model[1].weight.set_value(np.split(FC2, 2, axis=0)[rank])  # split_axis 0: the input rows
    pg.Recording(model).save(f"{out}/fleet", 0, "weights")


if __name__ == "__main__":
    main(sys.argv[1])
