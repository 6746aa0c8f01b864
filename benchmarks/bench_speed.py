"""Start-up and weight-copy speed, each against the plain thing a user would otherwise run.

Usage::

    python benchmarks/bench_speed.py [startup] [copy] [convert] [--repeat N]

- ``startup``: wall time of fresh processes: ``padiff-graph --help`` (as
  ``python -m padiff_graph`` and as the installed console script, when there
  is one) and ``import padiff_graph``, against ``python -c "import numpy"``.
  Target: ``--help`` at most 2x.
- ``copy``, ``convert``: a VGG-style classifier head (Linear 25088->4096->4096->1000,
  123M parameters, 0.5 GB fp32) in torch and in paddle. ``copy``: ``pg.assign_weights``
  (no map given: export, match, pre-flight, copy and the bit-for-bit
  verification) against a user's plain loop, numpy transpose + paddle
  ``set_value`` per tensor. ``convert``: ``pg.convert_checkpoint`` (a ``.pt``
  file into a ``.pdparams`` file, read back and compared bit for bit, loaded
  into the raw model), in memory and through its scratch file (a budget of
  0), against ``torch.load`` + numpy transpose + ``paddle.save``. Target: at
  most 1x (the in-memory conversion; the scratch file is for checkpoints
  larger than memory).

Variants run interleaved ``--repeat`` times in one invocation and the fastest
of each counts: noise on a shared machine only adds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAD = (25088, 4096, 4096, 1000)


def best_of(
    variants: dict[str, Callable[[], object]], repeat: int, prepare: Callable[[], object] = lambda: None
) -> dict[str, float]:
    """The fastest wall time of each variant, the variants interleaved ``repeat`` times.

    Each round starts one variant later (no variant always follows the same
    one), and before each run, untimed: ``prepare``, then the system's written
    data is flushed, so no variant waits for the disk to take what the one
    before it wrote.
    """
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_ in range(repeat):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            run = variants[name]
            prepare()
            os.sync()
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: min(seconds) for name, seconds in times.items()}


def print_rows(title: str, seconds: dict[str, float], baseline: str, targets: dict[str, float]) -> None:
    print(f"\n{title} (ratio: x {baseline})\n{'variant':<44}{'time s':>8}{'ratio':>8}{'target':>9}")
    for name, value in seconds.items():
        ratio = value / seconds[baseline]
        target = f"<= {targets[name]:.1f}" if name in targets else ""
        verdict = "" if name not in targets else ("  ok" if ratio <= targets[name] else "  MISSED")
        print(f"{name:<44}{value:>8.3f}{ratio:>8.2f}{target:>9}{verdict}", flush=True)


def startup(repeat: int) -> None:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}

    def process(*command: str) -> Callable[[], object]:
        return lambda: subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, check=True)

    python = sys.executable
    variants = {
        'python -c "import numpy"': process(python, "-c", "import numpy"),
        "python -c 'import padiff_graph'": process(python, "-c", "import padiff_graph"),
        "python -m padiff_graph --help": process(python, "-m", "padiff_graph", "--help"),
    }
    script = shutil.which("padiff-graph", path=str(Path(python).parent))
    if script:
        variants["padiff-graph --help (script)"] = process(script, "--help")
    seconds = best_of(variants, max(repeat, 5))
    targets = {name: 2.0 for name in variants if "--help" in name}
    print_rows("start-up (fresh processes)", seconds, 'python -c "import numpy"', targets)


def head_pair():
    import paddle
    import torch

    torch.manual_seed(0)
    paddle.seed(0)
    layers = list(pairwise(HEAD))
    base = torch.nn.Sequential(*(torch.nn.Linear(i, o) for i, o in layers))
    raw = paddle.nn.Sequential(*(paddle.nn.Linear(i, o) for i, o in layers))
    return base, raw


def copy(repeat: int, parts: list[str]) -> None:
    import paddle
    import torch

    sys.path.insert(0, str(ROOT))
    import padiff_graph as pg

    base, raw = head_pair()
    folder = Path(tempfile.mkdtemp(prefix="bench_speed."))
    checkpoint = folder / "head.pt"
    torch.save(base.state_dict(), checkpoint)

    def plain_copy() -> None:
        for source, target in zip(base.parameters(), raw.parameters(), strict=True):
            value = source.detach().numpy()
            target.set_value(value.T if value.ndim == 2 else value)

    def plain_convert() -> None:
        state = torch.load(checkpoint, map_location="cpu")
        converted = {}
        for name, value in state.items():
            array = value.numpy()
            converted[name] = array.T if array.ndim == 2 else array
        paddle.save(converted, str(folder / "plain.pdparams"))

    variants: dict[str, Callable[[], object]] = {}
    if "copy" in parts:
        variants["plain loop: numpy .T + set_value"] = plain_copy
        variants["pg.assign_weights"] = lambda: pg.assign_weights(base, raw)
    if "convert" in parts:
        variants["plain loop: torch.load + .T + paddle.save"] = plain_convert
        variants["pg.convert_checkpoint"] = lambda: pg.convert_checkpoint(
            base, raw, checkpoint, folder / "converted.pdparams"
        )
        variants["pg.convert_checkpoint, scratch file"] = lambda: pg.convert_checkpoint(
            base, raw, checkpoint, folder / "converted.pdparams", memory_budget_mib=0
        )

    def remove_outputs() -> None:  # each conversion writes a new file, as a conversion usually does
        for output in folder.glob("*.pdparams"):
            output.unlink()

    try:
        seconds = best_of(variants, repeat, remove_outputs)
    finally:
        shutil.rmtree(folder)
    size = sum(p.numel() for p in base.parameters()) * 4 / 2**30
    copies = {name: value for name, value in seconds.items() if "set_value" in name or "assign" in name}
    if copies:
        title = f"weight copy: VGG head, {size:.2f} GiB fp32, torch -> paddle"
        print_rows(title, copies, next(iter(copies)), {"pg.assign_weights": 1.0})
    converts = {name: value for name, value in seconds.items() if name not in copies}
    if converts:
        target = {"pg.convert_checkpoint": 1.0}
        print_rows("checkpoint conversion: .pt -> .pdparams", converts, next(iter(converts)), target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("parts", nargs="*", help="startup, copy, convert (default: all)")
    parser.add_argument("--repeat", type=int, default=3, help="Interleaved runs per variant; the fastest counts.")
    arguments = parser.parse_args()
    parts = arguments.parts or ["startup", "copy", "convert"]
    if "startup" in parts:
        startup(arguments.repeat)
    if "copy" in parts or "convert" in parts:
        copy(arguments.repeat, parts)


if __name__ == "__main__":
    main()
