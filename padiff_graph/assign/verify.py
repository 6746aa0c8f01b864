"""After a copy: do the two models now compute the same thing?

A copy verified bit for bit can still be the wrong copy (a layout the map got
wrong); one forward run of each model on the same inputs says whether it
worked. Both run in eval mode, as tracing does: BatchNorm statistics stay as
they are and dropout draws nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from padiff_graph.frameworks import adapter_for
from padiff_graph.frameworks.base import iter_tensors
from padiff_graph.frameworks.inputs import prepare, split_inputs
from padiff_graph.frameworks.tracing import evaluation_mode

#: Outputs agree when ``|base - raw| <= OUTPUT_ATOL + OUTPUT_RTOL * |base|`` everywhere (fp32 defaults of ``diff``).
OUTPUT_ATOL = 1e-4
OUTPUT_RTOL = 1e-3


@dataclass(frozen=True)
class OutputCheck:
    """Both models run once on the same inputs after the copy."""

    agree: bool
    max_abs_diff: float
    outputs: int

    def describe(self) -> str:
        verdict = "agree" if self.agree else "DIFFER"
        return f"outputs {verdict} after the copy ({self.outputs} tensors, max abs diff {self.max_abs_diff:.3g})"


def compare_outputs(base_model: Any, raw_model: Any, inputs: Any) -> OutputCheck:
    """Run both models on ``inputs`` (as users give them) and compare their floating outputs."""
    base_inputs, raw_inputs = split_inputs(inputs)
    base_out = _outputs(base_model, base_inputs)
    raw_out = _outputs(raw_model, raw_inputs)
    if len(base_out) != len(raw_out) or any(b.shape != r.shape for b, r in zip(base_out, raw_out, strict=False)):
        return OutputCheck(False, float("inf"), len(base_out))
    worst, agree = 0.0, True
    for base_value, raw_value in zip(base_out, raw_out, strict=True):
        gap = np.abs(base_value - raw_value)
        worst = max(worst, float(np.nanmax(gap, initial=0.0)))
        agree = agree and bool(np.all(gap <= OUTPUT_ATOL + OUTPUT_RTOL * np.abs(base_value)))
    return OutputCheck(agree, worst, len(base_out))


def _outputs(model: Any, inputs: Any) -> list[np.ndarray]:
    """The model's floating outputs, run in eval mode (statistics kept, no dropout) without gradients."""
    adapter = adapter_for(model)
    arguments = prepare(adapter, model, inputs)
    with evaluation_mode(adapter.named_layers(model)), adapter.no_grad():
        output = model(*arguments.args, **arguments.kwargs)
    arrays = [adapter.to_numpy(tensor) for tensor in iter_tensors(output, adapter.is_tensor)]
    return [array.astype(np.float64) for array in arrays if np.issubdtype(array.dtype, np.floating)]
