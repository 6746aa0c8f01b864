"""What every model family shares: the case record, norm randomisation, planting bugs, running a model.

A family module describes one architecture twice (a torch model and a paddle
model from libraries nobody here wrote), the layer pairs between them written by
hand from their attribute names, and its planted bugs. :func:`cases` turns that
into runnable cases in both directions: the base side is the reference, the raw
side is the port (and carries the planted bug).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import paddle
import torch

from padiff_graph.core.records import join_path

TORCH_TO_PADDLE = "torch->paddle"
PADDLE_TO_TORCH = "paddle->torch"


@dataclass(frozen=True)
class Bug:
    """A port bug planted into one side; ``torch_path``/``paddle_path`` name the layer it lives in on each side.

    The layer is the innermost layer pair of the hand-written map whose own
    forward contains the bug (a layer with the wrong activation module, the block
    that drops a skip connection, the linear layer that uses its weight transposed).
    """

    name: str
    description: str
    plant_torch: Callable[[torch.nn.Module], None]
    plant_paddle: Callable[[paddle.nn.Layer], None]
    torch_path: str
    paddle_path: str


def alike(name: str, description: str, path: str, plant: Callable[[Any, str], None]) -> Bug:
    """A bug planted the same way into the layer at ``path``, a path both libraries name alike."""
    return Bug(name, description, lambda model: plant(model, path), lambda model: plant(model, path), path, path)


def swap_activation(activation: str) -> Callable[[Any, str], None]:
    """A plant putting the model's framework's ``activation`` class (``"ReLU"``, ``"GELU"``) at a path."""

    def plant(model: Any, path: str) -> None:
        layers = torch.nn if isinstance(model, torch.nn.Module) else paddle.nn
        replace(model, path, getattr(layers, activation)())

    return plant


@dataclass(frozen=True)
class Family:
    """One architecture on both sides: factories, the hand-written pairs (torch path -> paddle path), bugs."""

    model: str
    torch_model: Callable[[], torch.nn.Module]
    paddle_model: Callable[[], paddle.nn.Layer]
    inputs: Callable[[], dict[str, np.ndarray]]
    pairs: dict[str, str]
    bugs: tuple[Bug, ...]
    #: input names the paddle model's ``forward`` spells otherwise (torch name -> paddle name)
    paddle_input_names: dict[str, str] = field(default_factory=dict)
    #: set BatchNorm statistics from the inputs (see :func:`calibrate_batch_norms`) instead of drawing them
    calibrate: bool = False


@dataclass
class Case:
    """One row of the table: a model pair in one direction and precision, the correct port or one planted bug."""

    model: str
    variant: str
    direction: str
    precision: str
    build: Callable[[], tuple[Any, Any, Any]]
    expected_pairs: dict[str, str]
    expected: tuple[str, str] | None
    description: str = ""


def cases(family: Family, seed: int = 0) -> list[Case]:
    """The correct port and every bug, both directions in fp32, and torch->paddle with a bfloat16 base;
    ``seed`` draws other weights (and norm scales) for every model."""
    found: list[Case] = []
    variants: list[Bug | None] = [None, *family.bugs]
    for direction, precision in ((TORCH_TO_PADDLE, "fp32"), (PADDLE_TO_TORCH, "fp32"), (TORCH_TO_PADDLE, "bf16-base")):
        for bug in variants:
            found.append(_case(family, bug, direction, precision, seed))
    return found


def _case(family: Family, bug: Bug | None, direction: str, precision: str, seed: int) -> Case:
    forward = direction == TORCH_TO_PADDLE
    pairs = family.pairs if forward else {raw: base for base, raw in family.pairs.items()}
    expected = None
    if bug is not None:
        expected = (bug.torch_path, bug.paddle_path) if forward else (bug.paddle_path, bug.torch_path)

    def build() -> tuple[Any, Any, Any]:
        seed_everything(seed)
        torch_model, paddle_model = family.torch_model(), family.paddle_model()
        randomise_norms(torch_model, seed=2 * seed + 1)
        randomise_norms(paddle_model, seed=2 * seed + 2)
        inputs: Any = family.inputs()
        torch_inputs: Any = inputs
        paddle_inputs = {family.paddle_input_names.get(k, k): v for k, v in inputs.items()}
        if family.calibrate:
            calibrate_batch_norms(torch_model, torch_inputs)
            calibrate_batch_norms(paddle_model, paddle_inputs)
        if bug is not None:
            if forward:
                bug.plant_paddle(paddle_model)
            else:
                bug.plant_torch(torch_model)
        if precision == "bf16-base":
            torch_model = torch_model.to(torch.bfloat16)
            torch_inputs = {
                k: torch.from_numpy(v).to(torch.bfloat16) if v.dtype.kind == "f" else torch.from_numpy(v)
                for k, v in inputs.items()
            }
        elif paddle_inputs == inputs:
            return (torch_model, paddle_model, inputs) if forward else (paddle_model, torch_model, inputs)
        if forward:
            return torch_model, paddle_model, (torch_inputs, paddle_inputs)
        return paddle_model, torch_model, (paddle_inputs, torch_inputs)

    return Case(
        family.model,
        "correct" if bug is None else bug.name,
        direction,
        precision,
        build,
        pairs,
        expected,
        "" if bug is None else bug.description,
    )


def decoder_pairs(top: list[str], per_layer: list[list[str]]) -> dict[str, str]:
    """The expected map of a decoder stack named alike on both sides: ``top`` layers, then
    ``layers.N.<name>`` for each name of ``per_layer[N]`` (``""`` is the block itself)."""
    pairs = {path: path for path in top}
    for index, names in enumerate(per_layer):
        pairs.update((path, path) for path in under([f"layers.{index}"], names))
    return pairs


def dense_then_moe_pairs(attention: list[str], experts: int, layers: int) -> dict[str, str]:
    """The expected map of a DeepSeek-V3-style decoder named alike on both sides: layer 0 with a dense MLP,
    the later ones with a router (``mlp.gate``), shared experts and ``experts`` routed ones; ``attention``
    names the attention's layers (``""`` is the attention itself)."""
    mlp = ["", "gate_proj", "up_proj", "down_proj", "act_fn"]
    attention_layer = ["", "input_layernorm", "post_attention_layernorm", *under(["self_attn"], attention)]
    dense = [*attention_layer, *under(["mlp"], mlp)]
    routed = ["mlp.shared_experts", *(f"mlp.experts.{expert}" for expert in range(experts))]
    moe = [*attention_layer, "mlp", "mlp.gate", "mlp.experts", *under(routed, mlp)]
    return decoder_pairs(["embed_tokens", "layers", "norm", "rotary_emb"], [dense, *[moe] * (layers - 1)])


def under(prefixes: list[str], names: list[str]) -> list[str]:
    """Each of ``names`` below each of ``prefixes`` (``""`` is the prefix itself)."""
    return [join_path(prefix, name) for prefix in prefixes for name in names]


def token_ids(seed: int, vocab: int, batch: int, sequence: int) -> dict[str, np.ndarray]:
    """Random token ids without the pad id 0 (paddleformers masks pad tokens when no mask is given; HF does not)."""
    return {"input_ids": np.random.default_rng(seed).integers(1, vocab, (batch, sequence), dtype=np.int64)}


def seed_everything(seed: int) -> None:
    """Seed numpy, torch and paddle."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    paddle.seed(seed)


_SCALES = {"weight", "running_var", "_variance"}
_SHIFTS = {"bias", "running_mean", "_mean"}


def randomise_norms(model: Any, seed: int) -> None:
    """Random scales (0.5..1.5) and shifts (±0.1) in every norm layer: weights, biases and BatchNorm statistics.

    With the constructor's ones and zeros on both sides a tensor the map forgets
    to copy would still agree; drawn per side it cannot.
    """
    rng = np.random.default_rng(seed)
    if isinstance(model, torch.nn.Module):
        for module in model.modules():
            if "Norm" in type(module).__name__:
                tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
                for name, tensor in tensors:
                    value = _draw(rng, name, tuple(tensor.shape))
                    if value is not None:
                        with torch.no_grad():
                            tensor.copy_(torch.from_numpy(value).to(tensor.dtype))
        return
    for layer in model.sublayers():
        if "Norm" in type(layer).__name__:
            tensors = [*layer.named_parameters(include_sublayers=False), *layer.named_buffers(include_sublayers=False)]
            for name, tensor in tensors:
                value = _draw(rng, name, tuple(tensor.shape))
                if value is not None:
                    tensor.set_value(value.astype(np.float32))


def calibrate_batch_norms(model: Any, inputs: dict[str, np.ndarray], batch: int = 16) -> None:
    """Every BatchNorm's running statistics set to those of its input on ``batch`` random samples shaped like
    ``inputs``' (floating arrays only), as training leaves them.

    Drawn statistics suit shallow stacks; through MobileNet's depthwise convolutions
    (initialised for a fan-out many times their fan-in) the input's signal shrinks
    under the BatchNorm shifts until the output no longer depends on the input, and
    no bug could show there. Each side calibrates with its own random weights, so its
    statistics still differ from the other side's until they are copied. A batch
    larger than the test's keeps a deep layer's few pixels from giving a channel a
    near-zero variance, which would amplify rounding noise.
    """
    rng = np.random.default_rng(7)
    samples = {k: rng.standard_normal((batch, *v.shape[1:]), dtype=np.float32) for k, v in inputs.items()}
    torch_side = isinstance(model, torch.nn.Module)
    norms = [
        layer for layer in (model.modules() if torch_side else model.sublayers()) if "BatchNorm" in type(layer).__name__
    ]
    momenta = [layer.momentum if torch_side else layer._momentum for layer in norms]
    for layer in norms:  # torch keeps ``momentum`` of the batch, paddle ``momentum`` of the old statistics
        setattr(layer, "momentum" if torch_side else "_momentum", 1.0 if torch_side else 0.0)
        layer.train()
    run_model(model, samples)
    for layer, momentum in zip(norms, momenta, strict=True):
        setattr(layer, "momentum" if torch_side else "_momentum", momentum)
        layer.eval()


def _draw(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if name in _SCALES:
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    if name in _SHIFTS:
        return rng.uniform(-0.1, 0.1, shape).astype(np.float32)
    return None


# --- planting bugs --------------------------------------------------------------------


def layer_at(model: Any, path: str) -> Any:
    """The layer at a dotted path (list indices as names), torch or paddle."""
    layer = model
    for name in path.split("."):
        layer = getattr(layer, name)
    return layer


def replace(model: Any, path: str, value: Any) -> None:
    """Set the attribute at a dotted path: a layer, or a plain function such as an activation."""
    parent, _, name = path.rpartition(".")
    setattr(layer_at(model, parent) if parent else model, name, value)


def set_eps(model: Any, path: str, eps: float) -> None:
    """Give the norm layer at ``path`` another epsilon (``eps``, ``_epsilon`` or ``variance_epsilon``)."""
    layer = layer_at(model, path)
    for name in ("variance_epsilon", "eps", "_epsilon"):
        if hasattr(layer, name):
            setattr(layer, name, eps)
            return
    raise AttributeError(f"{path} ({type(layer).__name__}) has no epsilon")


def transpose_linear(model: Any, path: str) -> None:
    """Make the (square) linear layer at ``path`` multiply by its weight transposed, as a port that forgot a layout."""
    layer = layer_at(model, path)
    if isinstance(layer, torch.nn.Module):
        layer.forward = lambda x: torch.nn.functional.linear(x, layer.weight.t(), layer.bias)
    else:
        layer.forward = lambda x: paddle.nn.functional.linear(x, layer.weight.t(), layer.bias)


def drop_skip(model: Any, path: str) -> None:
    """Make the block at ``path`` return its output minus its input: the skip connection is lost in this layer."""
    layer = layer_at(model, path)
    original = layer.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        hidden = args[0] if args else kwargs["hidden_states"]
        out = original(*args, **kwargs)
        if isinstance(out, tuple):
            return (out[0] - hidden, *out[1:])
        return out - hidden

    layer.forward = forward


# --- running a model ------------------------------------------------------------------


def run_model(model: Any, inputs: dict[str, Any]) -> list[np.ndarray]:
    """Every floating output of one forward run (in order), as float32 numpy arrays."""
    if isinstance(model, torch.nn.Module):
        arguments = {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(v) for k, v in inputs.items()}
        with torch.no_grad():
            out = model(**arguments)
        return [t.float().numpy() for t in _tensors(out, torch.Tensor) if t.is_floating_point()]
    arguments = {k: paddle.to_tensor(v) for k, v in inputs.items()}
    with paddle.no_grad():
        out = model(**arguments)
    return [t.astype("float32").numpy() for t in _tensors(out, paddle.Tensor) if t.is_floating_point()]


def _tensors(out: Any, kind: type) -> list[Any]:
    if isinstance(out, kind):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _tensors(item, kind)]
    return []


def output_error(base: list[np.ndarray], raw: list[np.ndarray]) -> float:
    """The largest ``max|raw - base| / max|base|`` over the outputs (inf if their number or shapes differ)."""
    if len(base) != len(raw) or any(b.shape != r.shape for b, r in zip(base, raw, strict=True)):
        return float("inf")
    return max(float(np.abs(r - b).max() / max(np.abs(b).max(), 1e-30)) for b, r in zip(base, raw, strict=True))
