"""Evidence for the per-dtype default tolerances: how far a lower-precision run drifts from fp32.

Runs one torch model (pre-norm residual MLP blocks, activations O(1), as in a
transformer) in fp32 and again with fp16 / bf16 weights and inputs, or under
CPU autocast, through ``padiff_graph.diff`` with tolerances wide open, and
prints the largest absolute and relative differences per depth, forward and
backward. Standalone: ``python benchmarks/tolerance_evidence.py``.
"""

import numpy as np
import torch

from padiff_graph import diff


class Block(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm = torch.nn.LayerNorm(width)
        self.fc1 = torch.nn.Linear(width, 4 * width)
        self.act = torch.nn.GELU()
        self.fc2 = torch.nn.Linear(4 * width, width)

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.norm(x))))


def model(depth, width=64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(*[Block(width) for _ in range(depth)], torch.nn.LayerNorm(width))


def worst(report, kind):
    return max(c.verdict.max_abs for c in report.comparisons if c.kind == kind)


def failing(report):
    return f"{sum(not c.ok for c in report.comparisons)}/{len(report.comparisons)}"


#: atol = rtol values tried besides the defaults.
CANDIDATES = (5e-3, 1e-2, 3e-2, 5e-2)


def main():
    x = [np.random.default_rng(0).standard_normal((16, 64), dtype=np.float32)]
    header = f"{'variant':<20}{'depth':>6}{'fwd max abs':>13}{'bwd max abs':>13}{'failing at default':>20}"
    print(header + "".join(f"{f'at {t:g}':>12}" for t in CANDIDATES))
    for variant in ("float16", "bfloat16", "autocast-bfloat16"):
        for depth in (1, 4, 12):
            base, raw = model(depth), model(depth)
            amp = None
            if variant.startswith("autocast"):
                amp = (None, "bfloat16")
            else:
                raw = raw.to(getattr(torch, variant))
            state = base.state_dict()
            report = diff(base, raw, x, amp=amp)
            row = f"{variant:<20}{depth:>6}{worst(report, 'forward'):>13.3g}{worst(report, 'backward'):>13.3g}"
            row += f"{failing(report):>20}"
            for tolerance in CANDIDATES:
                base.load_state_dict(state)
                row += f"{failing(diff(base, raw, x, atol=tolerance, rtol=tolerance, amp=amp)):>12}"
            print(row)


if __name__ == "__main__":
    main()
