"""Peak memory of ``padiff-graph convert-weights`` on a synthetic checkpoint, against its size.

Writes an MLP checkpoint of ``--size-mb`` (``--layers`` square Linear
layers), then converts it in a child process per input format while polling
the child's ``/proc/<pid>/status``: ``RssAnon`` is the memory the
conversion allocates; file-backed pages of memory-mapped checkpoints show in
``RssFile`` and are page cache the kernel reclaims under pressure. The same
conversion of a 1-layer checkpoint gives the baseline (interpreter, torch,
paddle, both models' structure); the figure that matters is
``(peak - baseline) / checkpoint size``.

The models are built without memory (torch meta device, paddle LazyGuard),
as they would be for a checkpoint larger than the machine.

    python benchmarks/convert_memory.py [--size-mb 1024] [--memory-budget MIB] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODELS = textwrap.dedent(
    """
    import os
    import paddle
    import torch

    LAYERS = int(os.environ["BENCH_LAYERS"])
    WIDTH = int(os.environ["BENCH_WIDTH"])


    def torch_model():
        with torch.device("meta"):
            return torch.nn.Sequential(*[torch.nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS)])


    def paddle_model():
        with paddle.LazyGuard():
            return paddle.nn.Sequential(*[paddle.nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS)])
    """
)

WRITE_CHECKPOINTS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    from padiff_graph.core.tensorfile import Stored, write_safetensors

    layers, width, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = np.random.default_rng(0)
    state = {}
    for index in range(layers):
        state[f"{index}.weight"] = torch.from_numpy(rng.standard_normal((width, width), dtype=np.float32))
        state[f"{index}.bias"] = torch.from_numpy(rng.standard_normal(width, dtype=np.float32))
    torch.save(state, f"{folder}/base.pt")
    with open(f"{folder}/base.safetensors", "wb") as stream:
        layout = [(name, tuple(t.shape), "float32") for name, t in state.items()]
        write_safetensors(stream, layout, ((n, Stored(t.numpy(), "float32")) for n, t in state.items()))
    """
)


def _status(pid: int) -> dict[str, int]:
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmRSS"):
                values[key] = int(rest.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values


def measure(command: list[str], env: dict[str, str]) -> tuple[dict[str, int], float]:
    """Run ``command``, polling its memory every 5 ms; the peaks and the wall time."""
    peaks = {"RssAnon": 0, "RssFile": 0, "VmRSS": 0}
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def poll() -> None:
        while child.poll() is None:
            for key, value in _status(child.pid).items():
                peaks[key] = max(peaks[key], value)
            time.sleep(0.005)

    watcher = threading.Thread(target=poll)
    watcher.start()
    output, _ = child.communicate()
    watcher.join()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output.decode()}")
    return peaks, time.perf_counter() - started


def convert(
    folder: Path, layers: int, width: int, budget: float | None, base: str, raw: str, source: str, target: str
) -> tuple:
    env = {**os.environ, "BENCH_LAYERS": str(layers), "BENCH_WIDTH": str(width), "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-W", "ignore", "-m", "padiff_graph", "convert-weights",
        f"{folder / 'models.py'}:{base}", f"{folder / 'models.py'}:{raw}",
        "--checkpoint", str(folder / source), "-o", str(folder / target),
    ]  # fmt: skip
    if budget is not None:
        command += ["--memory-budget", str(budget)]
    return measure(command, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="checkpoint size (default 1024)")
    parser.add_argument("--width", type=int, default=2048, help="Linear width (default 2048: 16 MiB a weight)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument(
        "--memory-budget", type=float, help="convert-weights --memory-budget (0: through the scratch file)"
    )
    args = parser.parse_args()
    layer_bytes = (args.width * args.width + args.width) * 4
    layers = max(1, round(args.size_mb * 2**20 / layer_bytes))
    folder = args.keep or Path(tempfile.mkdtemp(prefix="convert-memory-"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.py").write_text(MODELS)
    total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    mib = 2**20
    try:
        cases = [
            ("safetensors -> pdparams", "torch_model", "paddle_model", "base.safetensors", "raw.pdparams"),
            ("torch .pt -> pdparams", "torch_model", "paddle_model", "base.pt", "raw.pdparams"),
            ("torch .pt -> safetensors", "torch_model", "paddle_model", "base.pt", "raw.safetensors"),
            ("pdparams -> torch .pt", "paddle_model", "torch_model", "raw.pdparams", "back.pt"),
        ]
        results = {}
        for count in (1, layers):  # the 1-layer run is the baseline
            subprocess.run(
                [sys.executable, "-W", "ignore", "-c", WRITE_CHECKPOINTS, str(count), str(args.width), str(folder)],
                check=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
            size = (folder / "base.pt").stat().st_size
            for name, base, raw, source, target in cases:
                peaks, seconds = convert(folder, count, args.width, args.memory_budget, base, raw, source, target)
                results[(name, count)] = (peaks, seconds, size)
        print(f"machine memory {total_memory / mib:.0f} MiB; checkpoint {layers} layers, {size / mib:.0f} MiB")
        print(f"largest tensor {args.width * args.width * 4 / mib:.0f} MiB\n")
        columns = ("peak anon", 10), ("baseline", 9), ("added", 8), ("added/ckpt", 10), ("peak rss", 9), ("time", 6)
        print(f"{'conversion':26} " + " ".join(f"{title:>{width}}" for title, width in columns))
        for name, *_ in cases:
            peaks, seconds, size = results[(name, layers)]
            baseline = results[(name, 1)][0]["RssAnon"]
            added = peaks["RssAnon"] - baseline
            print(
                f"{name:26} {peaks['RssAnon'] / mib:9.0f}M {baseline / mib:8.0f}M {added / mib:7.0f}M "
                f"{added / size:10.2f} {peaks['VmRSS'] / mib:8.0f}M {seconds:5.1f}s"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
