"""Op-level comparison: which framework API call inside a diverging layer differs first.

With ``diff(..., op_level=True)`` both models run with their API calls
recorded (``torch.nn.functional.gelu``, ``paddle.matmul``, ...: the names in
:data:`padiff_graph.knowledge.apis.API_EQUIVALENTS`, or your own table).
Each call is attributed to the innermost compared layer running it. When a
raw layer call finishes, its calls are paired with the base layer's by
canonical name, in order (a longest-common-subsequence alignment, so a call
one framework makes and the other does not is skipped, not mispaired), and
compared; the first pair that differs names the op in the report.

Recording is active only inside the run; importing padiff_graph, or a diff
without ``op_level``, changes nothing in either framework.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from padiff_graph.frameworks.base import FrameworkAdapter, iter_tensors
from padiff_graph.run.hooks import OpSink
from padiff_graph.run.numerics import Mode, Summary, Tolerance, summarize
from padiff_graph.run.results import Divergence, OpDivergence

#: Where a layer call's ops are kept: (step, base layer path, call).
OpKey = tuple[int, str, int]


@dataclass(frozen=True)
class RecordedOp:
    canonical: str
    api: str
    value: np.ndarray | Summary
    dtype: str


def _first_tensor(adapter: FrameworkAdapter, output: Any) -> Any | None:
    return next(iter_tensors(output, adapter.is_tensor), None)


class OpStore(OpSink):
    """The base side: keeps each layer call's recorded API outputs."""

    def __init__(self, adapter: FrameworkAdapter, mode: Mode, names: Mapping[str, str]) -> None:
        self.adapter = adapter
        self.mode = mode
        self.names = names
        self.ops: dict[OpKey, list[RecordedOp]] = defaultdict(list)

    def op(self, step: int, path: str, call: int, name: str, output: Any) -> None:
        tensor = _first_tensor(self.adapter, output)
        if tensor is None or name not in self.names:
            return
        array = self.adapter.to_numpy(tensor, copy=self.mode is Mode.STRICT)
        value = array if self.mode is Mode.STRICT else summarize(array)
        self.ops[(step, path, call)].append(RecordedOp(self.names[name], name, value, self.adapter.dtype_name(tensor)))


class OpComparer(OpSink):
    """The raw side: pairs and compares each layer call's API outputs with the base's when the call ends."""

    def __init__(self, tolerance: Tolerance, names: Mapping[str, str]) -> None:
        self.tolerance = tolerance
        self.names = names
        self.first: dict[OpKey, OpDivergence] = {}
        self._store: OpStore | None = None
        self._adapter: FrameworkAdapter | None = None
        self._pending: dict[OpKey, list[RecordedOp]] = defaultdict(list)

    def begin(self, store: OpStore, adapter: FrameworkAdapter) -> None:
        """Compare against ``store`` (the base's ops of this step) from now on."""
        self._store, self._adapter = store, adapter
        self._pending.clear()

    def op(self, step: int, path: str, call: int, name: str, output: Any) -> None:
        if self._adapter is None or name not in self.names:
            return
        tensor = _first_tensor(self._adapter, output)
        if tensor is None:
            return
        array = self._adapter.to_numpy(tensor)  # a copy: an in-place op later in the layer must not change it
        self._pending[(step, path, call)].append(
            RecordedOp(self.names[name], name, array, self._adapter.dtype_name(tensor))
        )

    def layer_done(self, step: int, path: str, call: int) -> None:
        key = (step, path, call)
        raw_ops = self._pending.pop(key, [])
        base_ops = self._store.ops.pop(key, []) if self._store is not None else []
        if not raw_ops or not base_ops:
            return
        matcher = difflib.SequenceMatcher(
            None, [op.canonical for op in base_ops], [op.canonical for op in raw_ops], autojunk=False
        )
        for block in matcher.get_matching_blocks():
            for offset in range(block.size):
                base_op, raw_op = base_ops[block.a + offset], raw_ops[block.b + offset]
                raw_value = raw_op.value
                assert isinstance(raw_value, np.ndarray)  # the raw side always keeps arrays
                verdict = self.tolerance.verdict(base_op.value, raw_value, base_op.dtype, raw_op.dtype)
                if not verdict.ok:
                    self.first[key] = OpDivergence(base_op.api, raw_op.api, block.a + offset, verdict)
                    return

    def explain(self, divergence: Divergence) -> Divergence:
        """``divergence`` with its first differing op attached, if one was found.

        A forward divergence is looked up in the layer's own calls; a differing
        input (single-step mode) in its caller's, the nearest compared layer above
        it, since that is the code that computed the input.
        """
        if divergence.stage not in ("forward", "input"):
            return divergence
        path = divergence.base
        candidates = [path] if divergence.stage == "forward" else []
        while divergence.stage == "input" and path:
            path = path.rpartition(".")[0]
            candidates.append(path)
        for layer in candidates:
            found = sorted((key, op) for key, op in self.first.items() if key[0] == divergence.step and key[1] == layer)
            if found:
                return self._attach(divergence, found[0][1])
        return divergence

    @staticmethod
    def _attach(divergence: Divergence, op: OpDivergence) -> Divergence:
        what = op.verdict.note or f"max abs diff {op.verdict.max_abs:.3g}"
        message = f"{divergence.message}; first differing op: {op.base_api} vs {op.raw_api} ({what})"
        return Divergence(divergence.base, divergence.raw, divergence.stage, message, divergence.step, op)
