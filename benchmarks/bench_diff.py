"""Overhead of ``padiff_graph.diff`` against the plain training step of both models, and against PaDiff.

Usage::

    python benchmarks/bench_diff.py [--models resnet18,bert2,resnet50,bert] [--padiff-python PATH]

Pairs: a torch ResNet (``examples/torch_resnet.py``) against
``paddle.vision.models``' (training mode): ResNet-50 at batch 8, 224x224, and
the small ResNet-18 at batch 8, 112x112; a BERT-base-sized encoder (hidden
768, 12 heads, FFN 3072) written alike in both frameworks: 12 layers at
batch 8, sequence 128, and 2 layers at batch 2, sequence 16. The small pairs
are what users align with, and where the fixed costs (tracing, export,
matching, copy) weigh most. Target: ``diff strict`` at most 1.3x ``plain``
in time and in peak memory, on every pair.

Variants, each in its own fresh process (so imports and allocator state are
the same for all, and peak memory is per variant). Every process first runs
one plain training step of both models, untimed: a framework's first run on
new shapes builds its kernels and grows its allocator (seconds for torch's
first ResNet-50 step), which would otherwise count against whichever variant
happens to run the models cold.

- ``plain``: forward + backward of the base model, then of the raw model, no tool;
- ``diff strict`` / ``diff mean``: ``padiff_graph.diff(base, raw, inputs)`` —
  tracing, matching, pre-flight, weight copy and the hooked run, all timed;
  ``diff strict 256`` (not run by default) sets ``memory_budget_mib`` (``inf``:
  every record in memory);
- ``padiff 0.2``: PaDiff's ``auto_diff(paddle_model, torch_model, inputs)``
  (weight copy and run), run with the interpreter of a separate virtualenv
  (``pip install padiff==0.2.0 torch==2.13.0 paddlepaddle==3.3.1``).

Time is the wall time of the measured call. Importing the tool (padiff_graph
or padiff) is a one-time cost of the process, like importing torch and
paddle, and happens before it: its seconds are printed apart ("import s"),
its memory is in every peak. Memory is the process's peak
resident set (``ru_maxrss``): "peak" is the whole process (frameworks, both
models and the warm-up included), "run" is the peak minus the resident set
just before the measured call, i.e. what the run itself added on top of the
warm-up's resident set. Ratios are against ``plain`` measured in the same
invocation; with ``--repeat N`` the variants run interleaved N times and the
best of each measure counts (the fastest time, the lowest peaks): noise from a
shared machine or from where the allocator happened to place things only adds.
"rounds" is the range of the time ratio within each of the N rounds (a variant
against the ``plain`` run just before it): how far the machine's load moved it.
"cpu x" is the CPU time of the call (every thread, the frameworks' too), best
of the runs, against ``plain``'s: the work added, which other processes on a
shared machine move less than the wall time (a framework's threads spinning
while they wait for a core still count).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WARMUP_STEPS = 1
VARIANTS = ("plain", "diff strict", "diff mean", "padiff 0.2")


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds() -> float:
    """CPU time of every thread of the process so far: less moved than wall time by other processes' load."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- the model pairs -------------------------------------------------------------------------------


def bert_pair(
    layers: int = 12, batch: int = 8, sequence: int = 128, hidden: int = 768, heads: int = 12, ffn: int = 3072
):
    import paddle
    import torch

    class TorchLayer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = (torch.nn.Linear(hidden, hidden) for _ in range(3))
            self.dense = torch.nn.Linear(hidden, hidden)
            self.attention_norm = torch.nn.LayerNorm(hidden, eps=1e-12)
            self.intermediate = torch.nn.Linear(hidden, ffn)
            self.act = torch.nn.GELU()
            self.output = torch.nn.Linear(ffn, hidden)
            self.output_norm = torch.nn.LayerNorm(hidden, eps=1e-12)

        def heads(self, x):
            return x.reshape(x.shape[0], x.shape[1], heads, hidden // heads).transpose(1, 2)

        def forward(self, x):
            q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
            scores = torch.softmax(q @ k.transpose(-1, -2) / (hidden // heads) ** 0.5, dim=-1)
            context = (scores @ v).transpose(1, 2).reshape(x.shape)
            x = self.attention_norm(x + self.dense(context))
            return self.output_norm(x + self.output(self.act(self.intermediate(x))))

    class PaddleLayer(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.query, self.key, self.value = (paddle.nn.Linear(hidden, hidden) for _ in range(3))
            self.dense = paddle.nn.Linear(hidden, hidden)
            self.attention_norm = paddle.nn.LayerNorm(hidden, epsilon=1e-12)
            self.intermediate = paddle.nn.Linear(hidden, ffn)
            self.act = paddle.nn.GELU()
            self.output = paddle.nn.Linear(ffn, hidden)
            self.output_norm = paddle.nn.LayerNorm(hidden, epsilon=1e-12)

        def heads(self, x):
            return x.reshape([x.shape[0], x.shape[1], heads, hidden // heads]).transpose([0, 2, 1, 3])

        def forward(self, x):
            q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
            scores = paddle.nn.functional.softmax(q @ k.transpose([0, 1, 3, 2]) / (hidden // heads) ** 0.5, axis=-1)
            context = (scores @ v).transpose([0, 2, 1, 3]).reshape(x.shape)
            x = self.attention_norm(x + self.dense(context))
            return self.output_norm(x + self.output(self.act(self.intermediate(x))))

    class TorchEncoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.ModuleList(TorchLayer() for _ in range(layers))

        def forward(self, x):
            for block in self.layer:
                x = block(x)
            return x

    class PaddleEncoder(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.layer = paddle.nn.LayerList([PaddleLayer() for _ in range(layers)])

        def forward(self, x):
            for block in self.layer:
                x = block(x)
            return x

    import numpy as np

    inputs = {"x": np.random.default_rng(0).standard_normal((batch, sequence, hidden), dtype=np.float32)}
    return TorchEncoder(), PaddleEncoder(), inputs


def resnet_pair(depth: int = 50, size: int = 224):
    import numpy as np
    import paddle

    sys.path.insert(0, str(ROOT / "examples"))
    import torch_resnet

    inputs = {"x": np.random.default_rng(0).standard_normal((8, 3, size, size), dtype=np.float32)}
    return getattr(torch_resnet, f"resnet{depth}")(), getattr(paddle.vision.models, f"resnet{depth}")(), inputs


PAIRS = {
    "resnet18": lambda: resnet_pair(18, 112),
    "bert2": lambda: bert_pair(layers=2, batch=2, sequence=16),
    "resnet50": resnet_pair,
    "bert": bert_pair,
}
#: the most ``diff strict`` may cost, as a multiple of ``plain`` (time and peak memory)
TARGET = 1.3


# --- one variant, in a child process ---------------------------------------------------------------


def run_variant(model: str, variant: str) -> dict[str, float]:
    import paddle
    import torch

    imported = time.perf_counter()
    if variant.startswith("diff"):  # a one-time cost of the process, like importing the frameworks
        sys.path.insert(0, str(ROOT))
        import padiff_graph
        import padiff_graph.api  # the package re-exports lazily: import what diff runs now, not inside the timing
        from padiff_graph.frameworks import adapter_named

        adapter_named("torch"), adapter_named("paddle")  # their modules too: a first call imports them
    elif variant == "padiff 0.2":
        from padiff import auto_diff
    import_seconds = time.perf_counter() - imported
    torch.manual_seed(0)
    paddle.seed(0)
    base, raw, inputs = PAIRS[model]()
    torch_inputs = {name: torch.from_numpy(value) for name, value in inputs.items()}
    paddle_inputs = {name: paddle.to_tensor(value) for name, value in inputs.items()}
    for _ in range(WARMUP_STEPS):  # first runs build kernels and grow allocators: measure the steady state
        base(**torch_inputs).mean().backward()
        raw(**paddle_inputs).mean().backward()
    base.zero_grad(set_to_none=True)
    raw.clear_gradients()
    start_rss = rss_mib()
    started, cpu_started = time.perf_counter(), cpu_seconds()
    if variant == "plain":
        base(**torch_inputs).mean().backward()
        raw(**paddle_inputs).mean().backward()
        outcome = "-"
    elif variant.startswith("diff"):
        _, mode, *budget = variant.split()  # "diff strict inf": strict with every record in memory
        options = {"memory_budget_mib": float(budget[0])} if budget else {}
        report = padiff_graph.diff(base, raw, inputs, mode=mode, **options)
        outcome = "aligned" if report.ok else f"diverged at {report.first_divergence.base or '<root>'}"
    else:
        ok = auto_diff(raw, base, (paddle_inputs, torch_inputs), auto_weights=True, options={"atol": 1e-4})
        outcome = "aligned" if ok else "diverged"
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_started
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_mib": peak_mib(),
        "run_mib": peak_mib() - start_rss,
        "import_seconds": import_seconds,
        "outcome": outcome,
    }


# --- the orchestrator ------------------------------------------------------------------------------


def child(model: str, variant: str, python: str) -> dict[str, float] | str:
    command = [python, __file__, "--child", model, variant]
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=environment)
    except subprocess.TimeoutExpired:
        return "timed out"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"failed: {last[:100]}"
    result: dict[str, float] = json.loads(lines[-1])
    return result


def _verdict(variant: str, result: dict[str, float], plain: dict[str, float] | None) -> str:
    """Whether ``diff strict`` keeps within :data:`TARGET` x plain in time and peak memory."""
    if variant != "diff strict" or plain is None:
        return ""
    within = max(result["seconds"] / plain["seconds"], result["peak_mib"] / plain["peak_mib"]) <= TARGET
    return f"{'ok' if within else 'MISSED'} {TARGET}"


def _rounds(runs: list[dict[str, float] | str], plains: list[dict[str, float] | str]) -> str:
    """The lowest and highest time ratio to ``plain`` of one round (the two ran back to back): the spread
    a busy machine puts on the best-of ratio."""
    ratios = [
        run["seconds"] / plain["seconds"]
        for run, plain in zip(runs, plains, strict=False)
        if not isinstance(run, str) and not isinstance(plain, str)
    ]
    return f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(PAIRS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--padiff-python", default=os.environ.get("PADIFF_PYTHON", ".venv-padiff/bin/python"))
    parser.add_argument(
        "--repeat", type=int, default=3, help="Runs per variant, interleaved; the best of each measure counts."
    )
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "VARIANT"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(run_variant(*arguments.child)))
        return
    header = f"{'model':<10}{'variant':<16}{'time s':>8}{'x plain':>9}{'peak MiB':>10}{'x plain':>9}"
    header += f"{'run MiB':>9}{'x plain':>9}{'import s':>9}{'rounds':>12}{'cpu x':>7}  target  outcome"
    print(header)
    variants = arguments.variants.split(",")
    for model in arguments.models.split(","):
        runs: dict[str, list[dict[str, float] | str]] = {variant: [] for variant in variants}
        for _ in range(arguments.repeat):  # interleaved, so a busy spell on the machine hits every variant
            for variant in variants:
                if variant == "padiff 0.2" and not Path(arguments.padiff_python).exists():
                    runs[variant].append(f"skipped: no interpreter at {arguments.padiff_python}")
                    continue
                python = arguments.padiff_python if variant == "padiff 0.2" else sys.executable
                runs[variant].append(child(model, variant, python))
        plain: dict[str, float] | None = None
        for variant in variants:
            finished = [run for run in runs[variant] if not isinstance(run, str)]
            result = runs[variant][0]
            if finished:  # the best of each measure: noise (a busy machine, the allocator's layout) only adds
                result = {**min(finished, key=lambda run: run["seconds"])}
                lowest = ("peak_mib", "run_mib", "cpu_seconds")
                result.update({measure: min(run[measure] for run in finished) for measure in lowest})
            if isinstance(result, str):
                print(f"{model:<10}{variant:<16}  {result}")
                continue
            if variant == "plain":
                plain = result
            row = f"{model:<10}{variant:<16}{result['seconds']:>8.1f}"
            row += f"{result['seconds'] / plain['seconds']:>9.2f}" if plain else f"{'':>9}"
            row += f"{result['peak_mib']:>10.0f}"
            row += f"{result['peak_mib'] / plain['peak_mib']:>9.2f}" if plain else f"{'':>9}"
            row += f"{result['run_mib']:>9.0f}"
            row += f"{result['run_mib'] / plain['run_mib']:>9.2f}" if plain else f"{'':>9}"
            row += f"{result['import_seconds']:>9.2f}{_rounds(runs[variant], runs.get('plain', [])):>12}"
            row += f"{result['cpu_seconds'] / plain['cpu_seconds']:>7.2f}" if plain else f"{'':>7}"
            print(f"{row}  {_verdict(variant, result, plain):<6}  {result['outcome']}", flush=True)


if __name__ == "__main__":
    main()
