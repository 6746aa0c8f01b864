"""Which torch and paddle layer classes are "the same kind of layer".

Builtin classes are named alike in both frameworks up to case
(``Conv2d``/``Conv2D``, ``MultiheadAttention``/``MultiHeadAttention``), so the
family is the lower-cased class name, with the exceptions below. User classes
have no family of their own: structurally they are containers, and their
class name is only a naming hint.
"""

from __future__ import annotations

from padiff_graph.core.records import LayerInfo, TensorInfo, TensorKind, join_path
from padiff_graph.core.tree import ROOT, ModelTree, is_within, layer_info

#: Lower-cased builtin class names that differ between frameworks.
FAMILY_ALIASES: dict[str, str] = {
    "modulelist": "list",
    "layerlist": "list",
    "moduledict": "dict",
    "layerdict": "dict",
    "parameterlist": "list",
    "parameterdict": "dict",
    "nondynamicallyquantizablelinear": "linear",
    "batchnorm": "batchnorm",
    "conv1dtranspose": "convtranspose1d",
    "conv2dtranspose": "convtranspose2d",
    "conv3dtranspose": "convtranspose3d",
    "simplernn": "rnn",
    "upsamplingnearest2d": "upsample",
    "upsamplingbilinear2d": "upsample",
    # torch has a class per padding mode, paddle one PadNd with a mode
    **{
        f"{kind}pad{n}d": f"pad{n}d"
        for kind in ("reflection", "replication", "zero", "constant", "circular")
        for n in (1, 2, 3)
    },
}

#: Families that hold the same tensors as a family of the other framework with one class for every
#: dimension: paddle's legacy ``BatchNorm`` stands for torch's ``BatchNorm1d/2d/3d`` (the conversions
#: already pair them), so what a container holds is compared under the dimension-free family.
CONTENT_FAMILIES: dict[str, str] = {f"batchnorm{n}d": "batchnorm" for n in (1, 2, 3)}

#: The BatchNorm families: paddle's dimension-free ``BatchNorm`` first. A training-mode run updates their
#: running statistics (paddle holds ``_mean`` and ``_variance`` as parameters that take no gradient, torch
#: as buffers).
BATCHNORM_FAMILIES = ("batchnorm", "batchnorm1d", "batchnorm2d", "batchnorm3d", "syncbatchnorm")

#: Families that only group other layers.
CONTAINER_FAMILIES = frozenset({"sequential", "list", "dict"})

#: Families whose output is random in training mode.
RANDOM_FAMILIES = frozenset(
    {
        "dropout",
        "dropout1d",
        "dropout2d",
        "dropout3d",
        "alphadropout",
        "featurealphadropout",
        "rrelu",
    }
)

#: Recurrent families, and the frameworks whose recurrent layers keep no state for a
#: backward pass in eval mode (paddle 3.3: "Tensor holds no memory" in backward).
RECURRENT_FAMILIES = frozenset({"lstm", "gru", "rnn"})
EVAL_RECURRENT_WITHOUT_BACKWARD = frozenset({"paddle"})

#: Families whose single ``weight`` is an embedding table.
EMBEDDING_FAMILIES = frozenset({"embedding", "embeddingbag"})

#: Tensors that exist on one framework's side only and carry no model state
#: worth copying (torch's BatchNorm step counter).
IGNORED_TENSOR_NAMES = frozenset({"num_batches_tracked"})

#: Local tensor names that mean the same thing across frameworks.
TENSOR_NAME_ALIASES: dict[str, str] = {
    "running_mean": "_mean",
    "running_var": "_variance",
    "_mean": "running_mean",
    "_variance": "running_var",
    "gamma": "weight",
    "beta": "bias",
}

#: Name tokens that mean the same across codebases (HuggingFace, PaddleNLP,
#: timm, torchvision), mapped to one spelling before names are compared.
NAME_SYNONYMS: dict[str, str] = {
    "query": "q",
    "key": "k",
    "value": "v",
    "output": "out",
    "o": "out",
    "dense": "fc",
    "linear": "fc",
    "proj": "fc",
    "projection": "fc",
    "attention": "attn",
    "att": "attn",
    "ln": "norm",
    "layernorm": "norm",
    "embedding": "embed",
    "emb": "embed",
    "embeddings": "embed",
    "ffn": "mlp",
    "feedforward": "mlp",
    "intermediate": "up",
    "downsample": "shortcut",
    "skip": "shortcut",
    "classifier": "head",
    "stage": "layer",
    "block": "layer",
}

#: Tensors a framework stores in another layout than torch, by
#: (framework, family, tensor name): the structural hash compares shapes in
#: torch's layout, so a paddle ``Linear(1024, 512)`` is told from ``Linear(512, 1024)``.
TRANSPOSED_LAYOUTS = frozenset({("paddle", "linear", "weight")})

#: The generic family of every user-defined class and of builtin containers,
#: used by the name-free structural hash.
CONTAINER = "container"


def family_of(class_name: str, builtin: bool) -> str:
    """The family of a layer class: a builtin's normalized name, else ``container``."""
    if not builtin:
        return CONTAINER
    lowered = class_name.lower()
    family = FAMILY_ALIASES.get(lowered, lowered)
    return CONTAINER if family in CONTAINER_FAMILIES else family


def layer_family(layer: LayerInfo) -> str:
    return family_of(layer.class_name, layer.builtin)


def is_random(layer: LayerInfo) -> bool:
    """A layer whose output is random as configured (training mode, p > 0)."""
    if layer_family(layer) not in RANDOM_FAMILIES or not layer.training:
        return False
    probability = layer.config.get("p")
    return probability is None or float(probability) > 0.0


def significant(tensor: TensorInfo) -> bool:
    """Tensors that carry model state worth matching and copying."""
    return tensor.persistent and tensor.name not in IGNORED_TENSOR_NAMES


def random_in_training(tree: ModelTree, under: str = ROOT) -> bool:
    """Whether a layer at or below ``under`` is random as exported (dropout in training mode): run again,
    it gives other outputs."""
    return any(is_random(layer_info(tree, path)) and is_within(path, under) for path in tree.nodes)


def training_statistics(tree: ModelTree) -> list[str]:
    """Full names of what one more run of the layers in training mode changes: their persistent buffers and
    a BatchNorm's frozen statistics (running mean and variance). Non-persistent buffers are tables derived
    from the config (a rotary ``inv_freq``, a causal mask), which no run changes."""
    found = []
    for path in tree.nodes:
        info = layer_info(tree, path)
        if not info.training:
            continue
        statistics = layer_family(info) in BATCHNORM_FAMILIES
        for tensor in info.tensors:
            buffer = tensor.kind is TensorKind.BUFFER and tensor.persistent
            if buffer or (statistics and tensor.kind is TensorKind.FROZEN):
                found.append(join_path(path, tensor.name))
    return found
