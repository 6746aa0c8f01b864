"""Run every real-model case in both directions and print the table; exit 1 if any row is wrong.

Usage: ``python -m realworld.run [--only TEXT] [--json PATH] [--single-step] [--train] [--seed N]``
(``make realworld``).
Each row: suggest_map's pairs against the hand-written ones, both models' final
outputs after ``pg.assign_weights`` (compared here, with numpy), and ``pg.diff``
with default settings: ``report.ok`` for a correct port, the first divergence at
the planted bug's layer for a bug. A tool error is recorded in the row, never raised.
``--single-step`` runs the diff in single-step mode instead (each raw layer fed the base's inputs).
``--train`` runs it on both models in training mode for two AdamW steps, dropout switched off
(``random_ops="disable"``): what a user aligning a fine-tuning run does.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import paddle
import torch

from realworld import bert, deepseek, ernie45, glm4moe, gptoss, llama, qwen2, qwen2moe, qwen3, resnet, vision
from realworld.common import Case, cases, output_error, run_model

import padiff_graph as pg  # isort: skip

FAMILIES = (
    bert.FAMILY,
    llama.FAMILY,
    qwen2.FAMILY,
    qwen2moe.FAMILY,
    qwen3.FAMILY,
    qwen3.MOE_FAMILY,
    ernie45.FAMILY,
    gptoss.FAMILY,
    deepseek.FAMILY,
    glm4moe.FAMILY,
    resnet.RESNET18,
    resnet.RESNET50,
    *vision.FAMILIES,
)
#: ``max|raw - base| / max|base|`` of the final outputs up to which they agree; a bfloat16 base is compared
#: as its float32 copy, where only what it keeps besides its weights (HF's rotary frequencies) is still
#: rounded to bfloat16 (~7e-4 for Llama)
OUTPUT_TOLERANCE = {"fp32": 1e-4, "bf16-base": 1e-2}


@dataclass
class Row:
    """What one case measured."""

    model: str
    variant: str
    direction: str
    precision: str
    expected: list[str] | None
    description: str = ""
    map_exact: bool | None = None
    map_wrong: dict[str, list[str | None]] = field(default_factory=dict)
    output_error: float | None = None
    outputs_agree: bool | None = None
    report_ok: bool | None = None
    first_divergence: list[str] | None = None
    message: str = ""
    divergences: list[list[str]] = field(default_factory=list)
    not_fed: list[str] = field(default_factory=list)
    #: The layer of an ``ambiguous-divergence`` finding: the default run's verdict was not sure there (a choice
    #: noise flipped, other tokens routed, an input grown under noise), and single-step mode decided.
    unsure_at: str | None = None
    verdict_right: bool | None = None
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def right(self) -> bool:
        agree_expected = self.expected is None
        return bool(self.map_exact and self.outputs_agree is agree_expected and self.verdict_right and not self.errors)


def _error(stage: str, error: BaseException) -> str:
    last = traceback.extract_tb(error.__traceback__)[-1]
    text = " ".join(str(error).split())
    return f"{stage}: {type(error).__name__}: {text[:300]} (at {last.filename.split('/')[-1]}:{last.lineno})"


def _upcast(base: Any, base_inputs: dict[str, Any], raw_inputs: dict[str, Any]) -> tuple[Any, dict, dict]:
    """A float32 copy of the bfloat16 base, and both sides' inputs rounded to bfloat16 values.

    With the copied (bfloat16-valued) weights and the same inputs on both sides, the
    outputs agree to fp32 rounding when the copy is right (HF's rotary tables taken in float32, as
    built: rounded to bfloat16 they flip a near-tie routing choice of a MoE, seed 3's Qwen2-MoE): this
    column checks the copy,
    and leaves the judging of bfloat16 arithmetic (which through a deep MobileNet
    accumulates to ~0.2 of the logits) to the diff.
    """
    upcast = {k: v.float() if v.is_floating_point() else v for k, v in base_inputs.items()}
    rounded = {
        k: torch.from_numpy(v).bfloat16().float().numpy() if v.dtype.kind == "f" else v for k, v in raw_inputs.items()
    }
    full = copy.deepcopy(base).float()
    for module in full.modules():  # HF keeps the float32 rotary table it built beside the bfloat16 buffer
        if isinstance(getattr(module, "original_inv_freq", None), torch.Tensor):
            module.inv_freq = module.original_inv_freq.float()
    return full, upcast, rounded


def adamw(model: Any) -> Any:
    """AdamW (learning rate 1e-3, weight decay 0.01) over the model's parameters, in its framework."""
    if isinstance(model, torch.nn.Module):
        return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    return paddle.optimizer.AdamW(1e-3, parameters=model.parameters(), weight_decay=0.01)


def run_case(case: Case, single_step: bool = False, train: bool = False) -> Row:
    """Measure one case; every stage's exception is recorded and the next stage still runs where it can."""
    expected = list(case.expected) if case.expected else None
    row = Row(case.model, case.variant, case.direction, case.precision, expected, case.description)
    start = time.perf_counter()
    try:
        base, raw, inputs = case.build()
    except Exception as error:  # a broken case is a wrong row, not a crash
        row.errors.append(_error("build", error))
        row.seconds = time.perf_counter() - start
        return row
    base_inputs, raw_inputs = inputs if isinstance(inputs, tuple) else (inputs, inputs)
    layer_map = None
    try:
        layer_map = pg.suggest_map(base, raw, inputs)
        got = {pair.base: pair.raw for pair in layer_map.pairs}
        row.map_wrong = {b: [r, got.get(b)] for b, r in case.expected_pairs.items() if got.get(b) != r}
        row.map_exact = not row.map_wrong
    except Exception as error:
        row.errors.append(_error("suggest_map", error))
    try:
        pg.assign_weights(base, raw, layer_map)
        compared = _upcast(base, base_inputs, raw_inputs) if case.precision == "bf16-base" else None
        base_run, base_run_inputs, raw_run_inputs = compared or (base, base_inputs, raw_inputs)
        row.output_error = output_error(run_model(base_run, base_run_inputs), run_model(raw, raw_run_inputs))
        row.outputs_agree = row.output_error <= OUTPUT_TOLERANCE[case.precision]
    except Exception as error:
        row.errors.append(_error("assign/run", error))
    try:
        options: dict[str, Any] = {"single_step": single_step}
        if train:
            base.train()
            raw.train()
            options |= {"optimizers": (adamw(base), adamw(raw)), "steps": 2, "random_ops": "disable"}
        report = pg.diff(base, raw, inputs, **options)
        row.not_fed = report.not_fed
        row.report_ok = report.ok
        first = report.first_divergence
        if first is not None:
            row.first_divergence = [first.base, first.raw, first.stage]
            row.message = first.message
        row.divergences = [[d.base, d.raw, d.stage] for d in report.divergences]
        row.unsure_at = next((f.base for f in report.findings if f.code.value == "ambiguous-divergence"), None)
        if case.expected is None:
            row.verdict_right = report.ok
        else:
            row.verdict_right = first is not None and (first.base, first.raw) == case.expected
    except Exception as error:
        row.errors.append(_error("diff", error))
    row.seconds = time.perf_counter() - start
    return row


def _mark(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _said(row: Row) -> str:
    if row.errors and row.report_ok is None:
        return "crash: " + row.errors[-1][:90]
    if row.report_ok:
        return "ok"
    if row.first_divergence:
        base, raw, stage = row.first_divergence
        return f"{base} ~ {raw} ({stage})" if base != raw else f"{base} ({stage})"
    return "not ok, no divergence"


def print_table(rows: list[Row]) -> None:
    """The table, then what went wrong in each wrong row."""
    header = (
        "model",
        "variant",
        "direction",
        "precision",
        "map exact",
        "outputs agree",
        "verdict right",
        "unsure at",
        "time",
    )
    lines = [
        (
            r.model,
            r.variant,
            r.direction,
            r.precision,
            _mark(r.map_exact),
            f"{_mark(r.outputs_agree)} ({r.output_error:.1e})" if r.output_error is not None else "-",
            _mark(r.verdict_right),
            r.unsure_at or "-",
            f"{r.seconds:.1f}s",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines, strict=True)]
    for line in (header, tuple("-" * w for w in widths), *lines):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip())
    wrong = [r for r in rows if not r.right]
    print(f"\n{len(rows) - len(wrong)}/{len(rows)} rows right")
    for r in wrong:
        print(f"\n{r.model} {r.variant} {r.direction} {r.precision}:")
        if r.expected:
            print(f"  planted: {r.description}; expected divergence: {r.expected[0]} ~ {r.expected[1]}")
        print(f"  the tool says: {_said(r)}")
        if r.message:
            print(f"    {r.message[:400]}")
        for base, (want, got) in list(r.map_wrong.items())[:8]:
            print(f"  map: {base} -> {got}, expected {want}")
        if len(r.map_wrong) > 8:
            print(f"  map: {len(r.map_wrong) - 8} more pairs differ")
        for error in r.errors:
            print(f"  error: {error}")


def main(argv: list[str] | None = None) -> int:
    """Run the suite (or the cases whose name contains ``--only``), print the table, return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only cases whose 'model variant direction precision' has this")
    parser.add_argument("--json", help="also write every row's measurements to this file")
    parser.add_argument("--single-step", action="store_true", help="diff in single-step mode")
    parser.add_argument("--seed", type=int, default=0, help="draw other weights for every model (default 0)")
    parser.add_argument("--train", action="store_true", help="diff in training mode, two AdamW steps")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    selected = [
        case
        for family in FAMILIES
        for case in cases(family, args.seed)
        if args.only in f"{case.model} {case.variant} {case.direction} {case.precision}"
    ]
    rows = []
    for case in selected:
        row = run_case(case, args.single_step, args.train)
        print(
            f"[{row.seconds:5.1f}s] {'ok   ' if row.right else 'WRONG'} {case.model} {case.variant} "
            f"{case.direction} {case.precision}",
            file=sys.stderr,
            flush=True,
        )
        rows.append(row)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as file:
            json.dump([asdict(r) for r in rows], file, indent=1)
    return 0 if all(r.right for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
