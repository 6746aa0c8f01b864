"""Which torch and paddle API calls compute the same thing, as plain data.

Op-level comparison records the calls listed here and pairs them across
frameworks through their canonical name. Every entry is
``canonical: (torch names, paddle names)``; pass your own table (or an
extended copy of :data:`API_EQUIVALENTS`) as ``api_table=`` to :func:`padiff_graph.diff`.
"""

from __future__ import annotations

from collections.abc import Mapping

_F_TORCH = "torch.nn.functional."
_F_PADDLE = "paddle.nn.functional."

#: Activations and layer ops named alike in both functional namespaces.
_FUNCTIONAL = [
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "relu",
    "relu6",
    "gelu",
    "silu",
    "elu",
    "selu",
    "celu",
    "leaky_relu",
    "hardswish",
    "hardsigmoid",
    "mish",
    "softplus",
    "softsign",
    "tanhshrink",
    "sigmoid",
    "softmax",
    "log_softmax",
    "layer_norm",
    "batch_norm",
    "group_norm",
    "instance_norm",
    "embedding",
    "dropout",
    "dropout2d",
    "dropout3d",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool2d",
    "interpolate",
    "pad",
    "normalize",
    "scaled_dot_product_attention",
    "cross_entropy",
    "mse_loss",
    "l1_loss",
    "smooth_l1_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "nll_loss",
    "kl_div",
    "cosine_similarity",
    "one_hot",
]

#: Tensor functions named alike at both frameworks' top level.
_TOP_LEVEL = [
    "matmul",
    "bmm",
    "add",
    "multiply",
    "exp",
    "log",
    "sqrt",
    "rsqrt",
    "abs",
    "tanh",
    "sin",
    "cos",
    "pow",
    "sum",
    "mean",
    "max",
    "min",
    "clip",
    "concat",
    "stack",
    "split",
    "chunk",
    "reshape",
    "flatten",
    "transpose",
    "squeeze",
    "unsqueeze",
    "where",
    "cumsum",
    "einsum",
    "softmax",
    "sigmoid",
    "erf",
    "maximum",
    "minimum",
    "square",
    "addmm",
    "baddbmm",
    "outer",
    "floor",
    "ceil",
    "round",
    "sign",
]

#: Same operation, different names: canonical -> (torch name, paddle name).
_RENAMED = {
    "subtract": ("torch.sub", "paddle.subtract"),
    "divide": ("torch.div", "paddle.divide"),
    "multiply": ("torch.mul", "paddle.multiply"),
    "concat": ("torch.cat", "paddle.concat"),
    "clip": ("torch.clamp", "paddle.clip"),
    "transpose": ("torch.permute", "paddle.transpose"),
    "rms_norm": ("torch.nn.functional.rms_norm", "paddle.incubate.nn.functional.fused_rms_norm"),
    "flash_attention": (
        "torch.nn.functional.scaled_dot_product_attention",
        "paddle.nn.functional.flash_attention.flash_attention",
    ),
}


def _table() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    table: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def add(canonical: str, torch_name: str, paddle_name: str) -> None:
        torch_names, paddle_names = table.get(canonical, ((), ()))
        table[canonical] = (
            (*torch_names, torch_name) if torch_name not in torch_names else torch_names,
            (*paddle_names, paddle_name) if paddle_name not in paddle_names else paddle_names,
        )

    for name in _FUNCTIONAL:
        add(name, _F_TORCH + name, _F_PADDLE + name)
    for name in _TOP_LEVEL:
        add(name, f"torch.{name}", f"paddle.{name}")
    for canonical, (torch_name, paddle_name) in _RENAMED.items():
        add(canonical, torch_name, paddle_name)
    return table


#: canonical name -> (torch qualified names, paddle qualified names).
API_EQUIVALENTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = _table()

#: APIs whose output is random: dropout (when ``training`` and ``p > 0``) and sampling functions.
RANDOM_APIS: frozenset[str] = frozenset(
    [_F_TORCH + n for n in ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "rrelu")]
    + [_F_PADDLE + n for n in ("dropout", "dropout2d", "dropout3d", "alpha_dropout", "rrelu")]
    + [f"torch.{n}" for n in ("rand", "randn", "rand_like", "randn_like", "randint", "bernoulli", "multinomial")]
    + [f"paddle.{n}" for n in ("rand", "randn", "uniform", "normal", "randint", "bernoulli", "multinomial")]
)

#: Attention functions that apply dropout to their weights when ``dropout_p > 0`` and ``training`` (where taken):
#: HF's and paddleformers' attention layers pass their dropout rate in training mode, with no dropout layer run.
ATTENTION_DROPOUT_APIS: frozenset[str] = frozenset(
    {
        _F_TORCH + "scaled_dot_product_attention",
        _F_TORCH + "multi_head_attention_forward",  # torch.nn.MultiheadAttention's, in training mode
        _F_PADDLE + "scaled_dot_product_attention",
    }
)

#: Random APIs that act as the identity on their first argument once switched off (dropout).
DROPOUT_APIS: frozenset[str] = frozenset(name for name in RANDOM_APIS if "dropout" in name)


def names_for(framework: str, table: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> dict[str, str]:
    """Qualified API name -> canonical name, for one framework (``"torch"`` or ``"paddle"``)."""
    side = 0 if framework == "torch" else 1
    return {qualified: canonical for canonical, names in table.items() for qualified in names[side]}
