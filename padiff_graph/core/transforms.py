"""How one tensor's value becomes another's: ops, index regions, tensor pairs.

A :class:`Transform` is data, so a layer map can spell it in YAML, invert it
(a conversion registered torch -> paddle serves paddle -> torch) and apply it
to numpy arrays. ``base_index`` selects the part of the base tensor that is
read, ``raw_index`` the part of the raw tensor that is written: that is how a
fused ``in_proj_weight`` pairs with three split projections.

One side of a :class:`TensorPair` may be a constant, spelled ``const(1)``:
``const(1) -> scale`` fills a raw tensor the base layer does not have with the
value that makes it neutral (torch ``InstanceNorm2d(affine=False)`` against
paddle's ``InstanceNorm2D`` scale); read the other way, ``scale -> const(1)``
requires the base tensor to hold that value, since the raw layer cannot.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from padiff_graph.core.arrays import contiguous
from padiff_graph.core.records import join_path

_CONSTANT = re.compile(r"^const\((?P<value>[-+\d.eE]+)\)$")
_INDEX_PART = re.compile(r"^\s*(-?\d*)\s*:\s*(-?\d*)\s*$")
_OP = re.compile(r"^([a-z_]+)(?:\(([\d,\s]*)\))?$")
#: a comma between two steps of a chain (not one inside ``name(1, 2)``)
_STEP_SEPARATOR = re.compile(r",(?![^()]*\))")


def parse_index(text: str) -> tuple[slice, ...]:
    """Parse ``"0:16"`` or ``":, 0:16"`` into slices; only ``start:stop`` parts."""
    parts = []
    for piece in text.split(","):
        match = _INDEX_PART.match(piece)
        if match is None:
            raise ValueError(f"index part {piece.strip()!r} is not of the form start:stop")
        start, stop = (int(v) if v not in ("", "-") else None for v in match.groups())
        parts.append(slice(start, stop))
    return tuple(parts)


def _permute_axes(value: np.ndarray, args: tuple[int, ...]) -> np.ndarray:
    return np.transpose(value, args)


def _transpose(value: np.ndarray, args: tuple[int, ...]) -> np.ndarray:
    return value.T


def _identity(value: np.ndarray, args: tuple[int, ...]) -> np.ndarray:
    return value


def _inverse_permutation(args: tuple[int, ...]) -> tuple[int, ...]:
    inverse = [0] * len(args)
    for position, axis in enumerate(args):
        inverse[axis] = position
    return tuple(inverse)


def _reshape(value: np.ndarray, args: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(value.reshape(args))


def _blocks(value: np.ndarray, args: tuple[int, ...]) -> np.ndarray:
    """Reorder equal blocks along axis 0, e.g. LSTM gates: ``blocks(0,1,3,2)``."""
    chunks = np.split(value, len(args), axis=0)
    return np.concatenate([chunks[i] for i in args], axis=0)


Shape = tuple[int, ...]


@dataclass(frozen=True)
class _Op:
    apply: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]
    shape: Callable[[Shape, tuple[int, ...]], Shape]
    inverse_args: Callable[[tuple[int, ...]], tuple[int, ...]]


def _permuted_shape(shape: Shape, args: tuple[int, ...]) -> Shape:
    if sorted(args) != list(range(len(shape))):
        raise ValueError(f"permute{args} does not fit a {len(shape)}-d tensor")
    return tuple(shape[axis] for axis in args)


def _blocks_shape(shape: Shape, args: tuple[int, ...]) -> Shape:
    if not shape or not args or shape[0] % len(args) or not all(0 <= i < len(args) for i in args):
        raise ValueError(f"blocks{args} does not split shape {list(shape)} into {len(args)} equal blocks")
    return shape


def _reshaped(shape: Shape, args: tuple[int, ...]) -> Shape:
    if int(np.prod(shape)) != int(np.prod(args)):
        raise ValueError(f"reshape{args} does not fit shape {list(shape)} (another number of elements)")
    return args


def _no_inverse(args: tuple[int, ...]) -> tuple[int, ...]:
    raise ValueError("a reshape is inverted from the shape it was applied to")


_OPS: dict[str, _Op] = {
    "identity": _Op(_identity, lambda shape, args: shape, lambda args: args),
    "transpose": _Op(_transpose, lambda shape, args: shape[::-1], lambda args: args),
    "permute": _Op(_permute_axes, _permuted_shape, _inverse_permutation),
    "blocks": _Op(_blocks, _blocks_shape, _inverse_permutation),
    "reshape": _Op(_reshape, _reshaped, _no_inverse),
}

Step = tuple[str, tuple[int, ...]]


def _step_text(op: str, args: tuple[int, ...]) -> str:
    return f"{op}({','.join(str(a) for a in args)})" if args else op


def _check_step(op: str, args: tuple[int, ...]) -> None:
    if op not in _OPS:
        raise ValueError(f"unknown transform {op!r}; known: {', '.join(sorted(_OPS))}")
    if op in ("permute", "blocks", "reshape") and not args:
        example = "reshape(16,8,1,1)" if op == "reshape" else f"{op}(1,0)"
        raise ValueError(f"{op} needs {'a shape' if op == 'reshape' else 'an order'}, e.g. {example}")
    if op in ("identity", "transpose") and args:
        raise ValueError(f"{op} takes no arguments")


def _parse_steps(op_text: str) -> list[Step]:
    """``"transpose, reshape(4,3,1,1)"`` -> ``[("transpose", ()), ("reshape", (4, 3, 1, 1))]``."""
    steps = []
    for piece in _STEP_SEPARATOR.split(op_text):
        match = _OP.match(piece.strip())
        if match is None:
            raise ValueError(f"transform {op_text!r} is not of the form name, name(1,2,...), or steps joined by ', '")
        name, arg_text = match.groups()
        steps.append((name, tuple(int(a) for a in arg_text.split(",") if a.strip()) if arg_text else ()))
    return steps


def _region_shape(shape: Shape, index: tuple[slice, ...] | None) -> Shape:
    """The shape ``index`` selects, read off a zero-stride view (no memory, whatever the size)."""
    if index is None:
        return tuple(shape)
    try:
        return tuple(np.broadcast_to(np.empty((), dtype=np.bool_), shape)[index].shape)
    except IndexError as error:
        raise ValueError(f"index [{_format_index(index)}] does not fit shape {list(shape)}: {error}") from None


def _format_index(index: tuple[slice, ...]) -> str:
    parts = []
    for part in index:
        start = "" if part.start is None else str(part.start)
        stop = "" if part.stop is None else str(part.stop)
        parts.append(f"{start}:{stop}")
    return ", ".join(parts)


@dataclass(frozen=True)
class Transform:
    """Ops applied to (a region of) a base tensor to produce (a region of) a raw one.

    ``op``/``args`` is the first op; ``then`` holds further ops applied in
    order (``transpose, reshape(16,8,1,1)``: a paddle ``Linear`` weight into
    a torch 1x1 ``Conv2d``).
    """

    op: str = "identity"
    args: tuple[int, ...] = ()
    base_index: tuple[slice, ...] | None = None
    raw_index: tuple[slice, ...] | None = None
    then: tuple[Step, ...] = ()

    def __post_init__(self) -> None:
        for op, args in self.steps:
            _check_step(op, args)

    @classmethod
    def parse(cls, op_text: str, base_index: str | None = None, raw_index: str | None = None) -> Transform:
        """Build from the map-file spelling: ``transpose``, ``permute(1,0,2)``, ``transpose, reshape(8,4,1,1)``."""
        (op, args), *then = _parse_steps(op_text)
        return cls(
            op=op,
            args=args,
            base_index=parse_index(base_index) if base_index else None,
            raw_index=parse_index(raw_index) if raw_index else None,
            then=tuple(then),
        )

    @property
    def steps(self) -> tuple[Step, ...]:
        return ((self.op, self.args), *self.then)

    @property
    def op_text(self) -> str:
        return ", ".join(_step_text(op, args) for op, args in self.steps if op != "identity" or not self.then)

    @property
    def is_identity(self) -> bool:
        return self.op == "identity" and not self.then and self.base_index is None and self.raw_index is None

    def inverse(self, base_shape: Shape | None = None) -> Transform:
        """The transform that maps the raw region back onto the base region.

        A chain with a ``reshape`` needs ``base_shape`` (the whole base tensor's)
        to know the shape to reshape back to.
        """
        shape = _region_shape(base_shape, self.base_index) if base_shape is not None else None
        inverted: list[Step] = []
        for op, args in self.steps:
            if op == "reshape":
                if shape is None:
                    raise ValueError(f"inverting {self.op_text!r} needs the base tensor's shape")
                inverted.append(("reshape", shape))
            else:
                inverted.append((op, _OPS[op].inverse_args(args)))
            shape = _OPS[op].shape(shape, args) if shape is not None else None
        (op, args), *then = reversed(inverted)
        return Transform(op=op, args=args, base_index=self.raw_index, raw_index=self.base_index, then=tuple(then))

    def apply(self, base_value: np.ndarray) -> np.ndarray:
        """The value to write into the raw region, from the whole base tensor (C-ordered; a copy unless identity)."""
        return contiguous(self.view(base_value))  # tile by tile: several times numpy's speed on a transpose

    def view(self, base_value: np.ndarray) -> np.ndarray:
        """Like :meth:`apply`, but a view of ``base_value`` where the ops allow (no copy, any strides)."""
        value = base_value[self.base_index] if self.base_index is not None else base_value
        for op, args in self.steps:
            value = _OPS[op].apply(value, args)
        return value

    def output_shape(self, base_shape: Shape) -> Shape:
        """Shape of :meth:`apply`'s result, computed without data or memory.

        Raises:
            ValueError: the transform does not apply to a tensor of this shape.
        """
        shape = _region_shape(base_shape, self.base_index)
        for op, args in self.steps:
            shape = _OPS[op].shape(shape, args)
        return shape

    def region_shape(self, raw_shape: Shape) -> Shape:
        """Shape of the raw region this transform writes (``ValueError`` if the index does not fit)."""
        return _region_shape(raw_shape, self.raw_index)

    def describe(self, base: str, raw: str) -> str:
        """Map-file spelling: ``in_proj_weight[0:16] -> q_proj.weight: transpose``."""
        left = base + (f"[{_format_index(self.base_index)}]" if self.base_index else "")
        right = raw + (f"[{_format_index(self.raw_index)}]" if self.raw_index else "")
        text = f"{left} -> {right}"
        return text if self.op == "identity" and not self.then else f"{text}: {self.op_text}"


IDENTITY = Transform()
TRANSPOSE = Transform(op="transpose")


def layout_candidates(base_shape: tuple[int, ...], raw_shape: tuple[int, ...]) -> list[Transform]:
    """Every layout change shapes allow, most likely first: identity, 2-D transpose, and
    the same through a reshape that adds or drops unit axes (a ``Linear`` weight
    against a 1x1 convolution's ``[out, in, 1, 1]``).
    """
    found: list[Transform] = []
    if base_shape == raw_shape:
        found.append(IDENTITY)
    if len(base_shape) == 2 and base_shape[::-1] == raw_shape and base_shape != (1, 1):
        found.append(TRANSPOSE)
    base_core, raw_core = _without_unit_axes(base_shape), _without_unit_axes(raw_shape)
    if (
        (base_core != base_shape or raw_core != raw_shape)
        and base_shape != raw_shape
        and len(base_core) == 2 == len(raw_core)
    ):
        if base_core == raw_core:
            found.append(Transform(op="reshape", args=raw_shape))
        if base_core[::-1] == raw_core:
            steps: list[Step] = [("transpose", ())]
            if base_shape != base_core:
                steps.insert(0, ("reshape", base_core))
            if raw_shape != raw_core:
                steps.append(("reshape", raw_shape))
            (op, args), *then = steps
            found.append(Transform(op=op, args=args, then=tuple(then)))
    return found


def _without_unit_axes(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(size for size in shape if size != 1)


def constant(value: float) -> str:
    """The name standing for a constant side of a tensor pair: ``const(1)``."""
    return f"const({float(value):g})"


def constant_value(name: str) -> float | None:
    """The value of a ``const(...)`` name, ``None`` for a tensor name."""
    match = _CONSTANT.match(name)
    return None if match is None else float(match["value"])


_NAME = r"(?:const\([-+\d.eE]+\)|[\w.]+)"
_TENSOR_LINK = re.compile(
    rf"^\s*(?P<base>{_NAME})(?:\[(?P<bi>[^\]]*)\])?\s*->\s*(?P<raw>{_NAME})(?:\[(?P<ri>[^\]]*)\])?"
    r"\s*(?::\s*(?P<op>\S.*?))?\s*$"
)


class TensorPair(NamedTuple):
    """A base tensor, the raw tensor it becomes, and how.

    Inside a :class:`~padiff_graph.layermap.LayerPair` the names are relative
    to the pair's layers (and may reach into a child: ``query_embed.weight``);
    from :meth:`LayerMap.tensor_pairs` they are full dotted names.
    """

    base: str
    raw: str
    transform: Transform = IDENTITY

    @property
    def base_constant(self) -> float | None:
        """The value if the base side is ``const(...)``."""
        return constant_value(self.base)

    @property
    def raw_constant(self) -> float | None:
        """The value the base tensor must hold if the raw side is ``const(...)``."""
        return constant_value(self.raw)

    @property
    def has_constant(self) -> bool:
        return self.base_constant is not None or self.raw_constant is not None

    def describe(self) -> str:
        return self.transform.describe(self.base, self.raw)

    @classmethod
    def parse(cls, text: str) -> TensorPair:
        """Parse the map-file spelling produced by :meth:`describe`."""
        match = _TENSOR_LINK.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not of the form 'base_name -> raw_name[: transform]'")
        transform = Transform.parse(match["op"] or "identity", match["bi"], match["ri"])
        pair = cls(match["base"], match["raw"], transform)
        if pair.has_constant and (
            (pair.base_constant is not None and (pair.raw_constant is not None or transform.base_index))
            or (pair.raw_constant is not None and transform.raw_index)
            or transform.op != "identity"
            or transform.then
        ):
            raise ValueError(f"{text!r}: one side at most is const(...), without an index or a transform")
        return pair

    def inverse(self, base_shape: Shape | None = None) -> TensorPair:
        return TensorPair(self.raw, self.base, self.transform.inverse(base_shape))

    def prefixed(self, base_prefix: str, raw_prefix: str) -> TensorPair:
        base = self.base if self.base_constant is not None else join_path(base_prefix, self.base)
        raw = self.raw if self.raw_constant is not None else join_path(raw_prefix, self.raw)
        return TensorPair(base, raw, self.transform)
