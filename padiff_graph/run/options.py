"""Every option of a run, checked once, before any model is touched (torchinfo's rule: validate, then run).

:class:`DiffOptions` holds the live diff's options; the offline dump, the
recording inside a user's loop, the dump comparison and the PaDiff drop-in
check theirs with the same validators, so a rule is written once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from padiff_graph.errors import InputError
from padiff_graph.run.numerics import Mode, Tolerance
from padiff_graph.run.selection import LayerSelection
from padiff_graph.run.spill import DEFAULT_BUDGET_MIB

PHASES = ("forward", "backward", "both")
AMP_DTYPES = ("float16", "bfloat16")
RANDOM_OPS = ("error", "disable")


def parse_mode(mode: Any) -> Mode:
    try:
        return Mode(mode)
    except ValueError:
        raise InputError(f"mode must be 'strict' or 'mean', not {mode!r}") from None


def parse_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    allowed = tuple(choices)
    if value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def parse_steps(steps: Any) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InputError(f"steps must be a positive integer, not {steps!r}")
    return steps


def parse_amp(amp: Any) -> tuple[str | None, str | None]:
    """``None``, ``"float16"`` or ``"bfloat16"``, for both models or as ``(base_amp, raw_amp)``."""
    pair = amp if isinstance(amp, tuple) else (amp, amp)
    if len(pair) != 2 or any(value is not None and value not in AMP_DTYPES for value in pair):
        raise InputError(f"amp must be None, 'float16' or 'bfloat16' (or a pair of them), not {amp!r}")
    return pair[0], pair[1]


def parse_tolerance(name: str, value: Any) -> float | None:
    """A non-negative number, or ``None`` for the default by dtype."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InputError(f"{name} must be a non-negative number, not {value!r}")
    return float(value)


def parse_memory_budget(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InputError(f"memory_budget_mib must be 0 or more (inf: everything in memory), not {value!r}")
    return float(value)


@dataclass(frozen=True)
class DiffOptions:
    """The options of :func:`padiff_graph.diff`, checked; see its docstring for each."""

    mode: Mode
    atol: float | None
    rtol: float | None
    random_ops: str
    steps: int
    diff_phase: str
    loss_fns: tuple[Any, Any]
    optimizers: tuple[Any, Any]
    amp: tuple[str | None, str | None]
    selection: LayerSelection
    single_step: bool = False
    op_level: bool = False
    memory_budget_mib: float = DEFAULT_BUDGET_MIB
    api_table: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None

    @classmethod
    def parse(
        cls,
        *,
        mode: str = "strict",
        atol: Any = None,
        rtol: Any = None,
        random_ops: str = "error",
        steps: int = 1,
        diff_phase: str = "both",
        loss_fns: Any = None,
        optimizers: Any = None,
        amp: Any = None,
        black_list: Iterable[Any] | None = None,
        white_list: Iterable[Any] | None = None,
        skip_wrap_layers: bool | None = None,
        single_step: bool = False,
        op_level: bool = False,
        memory_budget_mib: Any = DEFAULT_BUDGET_MIB,
        api_table: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
    ) -> DiffOptions:
        """Check every option; raise :class:`InputError` naming the first bad one."""
        return cls(
            mode=parse_mode(mode),
            atol=parse_tolerance("atol", atol),
            rtol=parse_tolerance("rtol", rtol),
            random_ops=parse_choice("random_ops", random_ops, RANDOM_OPS),
            steps=parse_steps(steps),
            diff_phase=parse_choice("diff_phase", diff_phase, PHASES),
            loss_fns=_pair("loss_fns", loss_fns, callable),
            optimizers=_pair("optimizers", optimizers, lambda item: callable(item) or hasattr(item, "step")),
            amp=parse_amp(amp),
            selection=LayerSelection.parse(black_list, white_list, skip_wrap_layers),
            single_step=bool(single_step),
            op_level=bool(op_level),
            memory_budget_mib=parse_memory_budget(memory_budget_mib),
            api_table=api_table,
        )

    @property
    def forward(self) -> bool:
        return self.diff_phase != "backward"

    @property
    def backward(self) -> bool:
        return self.diff_phase != "forward"

    def forward_only(self) -> DiffOptions:
        return replace(self, diff_phase="forward")

    def amp_dtypes(self) -> set[str]:
        return {dtype for dtype in self.amp if dtype is not None}

    def tolerance(self, dtypes: Iterable[str]) -> Tolerance:
        """The user's tolerances, or the defaults for the least precise of ``dtypes`` and ``amp``."""
        return Tolerance.chosen(self.atol, self.rtol, self.mode, [*dtypes, *self.amp_dtypes()])

    def settings(self, tolerance: Tolerance) -> dict[str, Any]:
        """The settings a report shows."""
        return {
            "atol": tolerance.atol,
            "rtol": tolerance.rtol,
            "tolerance_by_dtype": not tolerance.fixed,
            "noise_floor": tolerance.limits()[2] or None,
            "mode": self.mode.value,
            "backward": self.backward,
            "diff_phase": self.diff_phase,
            "steps": self.steps,
            "amp": list(self.amp),
            "skip_wrap_layers": self.selection.skip_wrap_layers,
            "single_step": self.single_step,
        }


def _pair(name: str, value: Any, accepts: Callable[[Any], bool]) -> tuple[Any, Any]:
    """``(base, raw)`` entries of a per-model option, both given or neither."""
    if value is None:
        return None, None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InputError(f"{name} must be a pair (base, raw), not {type(value).__name__}")
    for side, item in zip(("base", "raw"), value, strict=True):
        if item is None:
            raise InputError(f"{name}: the {side} entry is missing; give both or neither")
        if not accepts(item):
            what = "callable" if name == "loss_fns" else "an optimizer or a callable"
            raise InputError(f"{name}: the {side} entry is not {what}")
    return value[0], value[1]
