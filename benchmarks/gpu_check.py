"""The CPU-against-GPU check, for a machine with CUDA torch (paddle not needed).

The same torch model on CPU (fp32) against a copy on the GPU, first in fp32,
then under bf16 autocast, through ``padiff_graph.diff`` (forward and backward,
default tolerances by dtype). Prints one line per case with the verdict,
the tolerances used and the largest differences; exit code 0 if the fp32
case is aligned. Standalone: ``python benchmarks/gpu_check.py``.
"""

import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from torch_resnet import resnet18

import padiff_graph as pg


def worst(report, kind):
    values = [c.verdict.max_abs for c in report.comparisons if c.kind == kind]
    return max(values) if values else float("nan")


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 2
    torch.manual_seed(0)
    cpu_model = resnet18(num_classes=10).eval()
    inputs = {"x": np.random.default_rng(0).standard_normal((4, 3, 64, 64), dtype=np.float32)}
    cases = {"gpu fp32": None, "gpu bf16 autocast": "bfloat16"}
    status = 0
    for name, amp in cases.items():
        gpu_model = copy.deepcopy(cpu_model).cuda()
        report = pg.diff(cpu_model, gpu_model, inputs, amp=(None, amp))
        print(
            f"{name:<20} ok={report.ok} atol={report.settings['atol']} rtol={report.settings['rtol']} "
            f"fwd max abs {worst(report, 'forward'):.3g} bwd max abs {worst(report, 'backward'):.3g} "
            f"grad max abs {worst(report, 'grad'):.3g}"
        )
        if not report.ok:
            print(f"{'':<20} {report.first_divergence.message}")
            status = status or (1 if amp is None else 0)
    return status


if __name__ == "__main__":
    sys.exit(main())
