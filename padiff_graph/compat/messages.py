"""What the compat layer prints: PaDiff's ``[AutoDiff]`` lines, filled from padiff_graph's report.

PaDiff's users read a failure as: the stage, the two layer types, both
routes (model name and dotted path), the numbers, and the model structure
with the diverging layer marked ``<---  *** HERE ***``. PaDiff writes the
structure to log files under ``padiff_log/``; here an excerpt (the chain of
ancestors, each with a few siblings) is printed instead, and nothing is
written. ``PADIFF_PATH_LOG=ON`` adds each layer's route to the excerpt, as
PaDiff adds it to its logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from padiff_graph.core.records import join_path
from padiff_graph.core.tree import ModelTree, children
from padiff_graph.run.results import Comparison, DiffReport

PREFIX = "[AutoDiff]"
HERE = "    <---  *** HERE ***"
#: siblings shown on each side of the marked chain in the structure excerpt
SIBLINGS = 3
#: failing tensors printed by a weight or gradient check before the rest are counted
TENSOR_BLOCKS = 10
_TRUE = frozenset({"on", "1", "true", "yes"})
_STAGE_TITLES = {"forward": "Forward", "input": "Forward", "backward": "Backward", "loss": "Loss"}
_TENSOR_WORDS = {"grad": "grads", "weights": "weights"}

_last: list[DiffReport] = []


def last_report() -> DiffReport | None:
    """The padiff_graph report behind the last ``auto_diff`` or ``check_*`` call (``None`` before any)."""
    return _last[-1] if _last else None


def remember(report: DiffReport | None) -> None:
    _last[:] = [] if report is None else [report]


def switch_on(variable: str) -> bool:
    """PaDiff's ``export VARIABLE=ON`` (also 1, true, yes; any case)."""
    return os.environ.get(variable, "").strip().lower() in _TRUE


def log(message: str = "") -> None:
    print(f"{PREFIX} {message}")


@dataclass(frozen=True)
class Named:
    """One model as the messages name it: PaDiff's route prefix, and its layer tree."""

    name: str
    tree: ModelTree

    def route(self, path: str) -> str:
        return join_path(self.name, path)

    def class_name(self, path: str) -> str:
        return str(self.tree.nodes[path]["class_name"]) if path in self.tree else "?"


def print_options(options: dict[str, Any]) -> None:
    log("Your options:")
    print("{")
    for key, value in options.items():
        print(f"  {key}: `{value}`")
    print("}")


def print_failure(report: DiffReport, base: Named, raw: Named) -> None:
    """The first divergence of ``report`` as PaDiff prints a failed check."""
    divergence = report.first_divergence
    if divergence is None:
        return
    if divergence.stage in _TENSOR_WORDS:
        print_tensor_failures(report, base, raw)
        return
    log("FAILED !!!")
    if divergence.stage not in _STAGE_TITLES:  # stopped before any number was compared (a random op)
        print(f"{divergence.message}\n")
        return
    title = _STAGE_TITLES[divergence.stage]
    step = f" (step {divergence.step})" if divergence.step else ""
    log(f"    Diff found in {title} Stage{step}")
    log(f"    Type of layer is: {base.class_name(divergence.base)} vs {raw.class_name(divergence.raw)}")
    log(f"    Route: {base.route(divergence.base)}")
    log(f"           {raw.route(divergence.raw)}\n")
    comparison = _failing(report, divergence.base, divergence.raw, divergence.stage, divergence.step)
    if comparison is not None:
        print(_numbers(report, comparison))
    print(f"padiff_graph: {divergence.message}\n")
    log("Check model struct:")
    print(structure(base, divergence.base))
    print(structure(raw, divergence.raw))
    log(f"The {title.lower()} stage comparing failed !!!")


def print_tensor_failures(
    report: DiffReport, base: Named, raw: Named, kinds: tuple[str, ...] = ("grad", "weights")
) -> None:
    """Every failing parameter gradient or weight, one PaDiff block each; a line per kind that agrees."""
    for kind in kinds:
        failing = [c for c in report.comparisons if c.kind == kind and not c.ok]
        word = _TENSOR_WORDS[kind]
        if not failing:
            if any(c.kind == kind for c in report.comparisons):
                log(f"{word} compared.")
            continue
        log(f"Diff found when compare {word}")
        for comparison in failing[:TENSOR_BLOCKS]:
            print(_tensor_block(report, comparison, word, base, raw))
        if len(failing) > TENSOR_BLOCKS:
            print(f"... and {len(failing) - TENSOR_BLOCKS} more {word} differ\n")


def print_missing_grad(base: Named, raw: Named, base_tensor: str, raw_tensor: str, missing: str) -> None:
    """PaDiff's block for a parameter whose gradient one dump has and the other has not."""
    log("Diff found when compare grads")
    print(
        f"{'=' * 25}\ngrads value is different.\n"
        f"base_model param path:\n    {base.route(base_tensor)}\n"
        f"raw_model param path:\n    {raw.route(raw_tensor)}\n\n"
        f"the gradient is None in {missing} (none was dumped), not in the other\n"
    )


def _tensor_block(report: DiffReport, comparison: Comparison, word: str, base: Named, raw: Named) -> str:
    pair = report.layer_map.pair_for_base(comparison.base)
    base_tensor = comparison.stage.partition(":")[2]
    raw_tensor = pair.tensors[comparison.index].raw if pair is not None else base_tensor
    step = f" (step {comparison.step})" if comparison.step else ""
    return (
        f"{'=' * 25}\n{word} value is different{step}.\n"
        f"between base_model: {base.class_name(comparison.base)}\n"
        f"        raw_model:  {raw.class_name(comparison.raw)}\n\n"
        f"base_model param path:\n    {base.route(join_path(comparison.base, base_tensor))}\n"
        f"raw_model param path:\n    {raw.route(join_path(comparison.raw, raw_tensor))}\n\n"
        f"{_numbers(report, comparison)}"
    )


def _failing(report: DiffReport, base: str, raw: str, stage: str, step: int) -> Comparison | None:
    for comparison in report.comparisons:
        where = (comparison.base, comparison.raw, comparison.kind, comparison.step)
        if where == (base, raw, stage, step) and not comparison.ok:
            return comparison
    return None


def _numbers(report: DiffReport, comparison: Comparison) -> str:
    verdict = comparison.verdict
    lines = [f"Not equal to tolerance rtol={report.settings.get('rtol'):g}, atol={report.settings.get('atol'):g}"]
    if report.settings.get("mode") == "mean":
        lines.append("(compare_mode 'mean': the means of the two tensors are compared)")
    if verdict.note and verdict.note != "means compared":  # shapes that differ, NaN on one side...
        lines.append(verdict.note)
    lines.append(f"Max absolute difference: {verdict.max_abs:.7g}")
    lines.append(f"Max relative difference: {verdict.max_rel:.7g}")
    return "\n".join(lines) + "\n"


def structure(model: Named, path: str) -> str:
    """The chain from the root to ``path``, each level with a few siblings, ``path`` marked HERE."""
    chain = [""]
    for part in path.split(".") if path else []:
        chain.append(join_path(chain[-1], part))
    lines = [model.name, "=" * 40, f"    {_label(model, '', path)}", *_level(model, chain, 0, path, "    ")]
    return "\n".join(lines) + "\n"


def _level(model: Named, chain: list[str], depth: int, marked: str, prefix: str) -> list[str]:
    if depth + 1 >= len(chain):
        return []
    kids = children(model.tree, chain[depth])
    target = kids.index(chain[depth + 1])
    start, stop = max(0, target - SIBLINGS), min(len(kids), target + SIBLINGS + 1)
    lines = [f"{prefix} |--- ... ({start} more)"] if start else []
    for position in range(start, stop):
        last = position == len(kids) - 1
        lines.append(f"{prefix} {'+' if last else '|'}--- {_label(model, kids[position], marked)}")
        if position == target:
            lines += _level(model, chain, depth + 1, marked, prefix + ("      " if last else " |    "))
    if stop < len(kids):
        lines.append(f"{prefix} +--- ... ({len(kids) - stop} more)")
    return lines


def _label(model: Named, path: str, marked: str) -> str:
    label = model.class_name(path)
    if switch_on("PADIFF_PATH_LOG"):
        label += f"  ({model.route(path)})"
    return label + (HERE if path == marked else "")
