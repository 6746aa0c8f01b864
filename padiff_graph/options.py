"""The diff's options, checked before any model runs (torchinfo's rule: validate, then run)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from padiff_graph.compare import Mode
from padiff_graph.diff import Tolerance
from padiff_graph.errors import InputError
from padiff_graph.selection import ListEntry, parse_entries, skip_wrap_layers_from_environment

PHASES = ("forward", "backward", "both")
AMP_DTYPES = ("float16", "bfloat16")


@dataclass(frozen=True)
class DiffOptions:
    mode: Mode
    random_ops: str
    steps: int
    diff_phase: str
    loss_fns: tuple[Any, Any]
    optimizers: tuple[Any, Any]
    amp: tuple[str | None, str | None]
    black_list: list[ListEntry]
    white_list: list[ListEntry]
    skip_wrap_layers: bool

    @classmethod
    def parse(
        cls,
        *,
        mode: str,
        random_ops: str,
        steps: int,
        diff_phase: str,
        loss_fns: Any,
        optimizers: Any,
        amp: Any,
        black_list: Iterable[Any] | None,
        white_list: Iterable[Any] | None,
        skip_wrap_layers: bool | None,
    ) -> DiffOptions:
        """Check every option; raise :class:`InputError` naming the first bad one."""
        try:
            compare_mode = Mode(mode)
        except ValueError:
            raise InputError(f"mode must be 'strict' or 'mean', not {mode!r}") from None
        if random_ops not in ("error", "disable"):
            raise InputError(f"random_ops must be 'error' or 'disable', not {random_ops!r}")
        if diff_phase not in PHASES:
            raise InputError(f"diff_phase must be one of {', '.join(PHASES)}, not {diff_phase!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InputError(f"steps must be a positive integer, not {steps!r}")
        amp_pair = amp if isinstance(amp, tuple) else (amp, amp)
        for value in amp_pair:
            if value is not None and value not in AMP_DTYPES:
                raise InputError(f"amp must be None, 'float16' or 'bfloat16' (or a pair of them), not {value!r}")
        return cls(
            mode=compare_mode,
            random_ops=random_ops,
            steps=steps,
            diff_phase=diff_phase,
            loss_fns=_pair("loss_fns", loss_fns, callable_required=True),
            optimizers=_pair("optimizers", optimizers, callable_required=False),
            amp=(amp_pair[0], amp_pair[1]),
            black_list=parse_entries(black_list, "all", "black_list"),
            white_list=parse_entries(white_list, "self", "white_list"),
            skip_wrap_layers=skip_wrap_layers_from_environment() if skip_wrap_layers is None else skip_wrap_layers,
        )

    def amp_dtypes(self) -> set[str]:
        return {dtype for dtype in self.amp if dtype is not None}

    def settings(self, tolerance: Tolerance) -> dict[str, Any]:
        """The settings a report shows."""
        return {
            "atol": tolerance.atol,
            "rtol": tolerance.rtol,
            "tolerance_by_dtype": not tolerance.fixed,
            "mode": self.mode.value,
            "backward": self.diff_phase != "forward",
            "diff_phase": self.diff_phase,
            "steps": self.steps,
            "amp": list(self.amp),
            "skip_wrap_layers": self.skip_wrap_layers,
        }


def _pair(name: str, value: Any, callable_required: bool) -> tuple[Any, Any]:
    if value is None:
        return None, None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InputError(f"{name} must be a pair (base, raw), not {type(value).__name__}")
    for side, item in zip(("base", "raw"), value, strict=True):
        if item is None:
            raise InputError(f"{name}: the {side} entry is missing; give both or neither")
        if callable_required and not callable(item):
            raise InputError(f"{name}: the {side} entry is not callable")
        if not callable_required and not callable(item) and not hasattr(item, "step"):
            raise InputError(f"{name}: the {side} entry is neither an optimizer nor a callable")
    return value[0], value[1]
