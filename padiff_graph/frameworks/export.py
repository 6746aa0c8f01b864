"""A model in, its layer tree out: the first stage of the pipeline.

With inputs, one traced forward run (on an empty or one-sample slice where
it can) adds the call order that separates same-shaped siblings.
"""

from __future__ import annotations

from typing import Any

from padiff_graph.core.progress import task
from padiff_graph.core.runtime import paused_gc
from padiff_graph.core.tree import ModelTree, build_tree
from padiff_graph.frameworks import adapter_for
from padiff_graph.frameworks.inputs import CallArguments, prepare, split_inputs
from padiff_graph.frameworks.tracing import trace_forward


def export_model(model: Any, inputs: Any = None, side: str = "traced") -> ModelTree:
    """The model's layer tree; with ``inputs`` (as users give them), also the forward call order."""
    adapter = adapter_for(model)
    arguments = None if inputs is None else prepare(adapter, model, inputs)
    return export_prepared(model, arguments, side)


def export_prepared(model: Any, arguments: CallArguments | None, side: str, measure: bool = False) -> ModelTree:
    """:func:`export_model` on inputs already prepared for ``model``; ``measure``: the trace measures the
    activations too (:func:`~padiff_graph.frameworks.tracing.trace_forward`)."""
    adapter = adapter_for(model)
    trace = None
    if arguments is not None:
        with task(f"tracing the {side} model"):
            trace = trace_forward(adapter, model, arguments, side, measure)
    with task(f"exporting the {side} model"), paused_gc():
        shared = adapter.shared_layers(model)
        tree = build_tree(adapter.export(model), None if trace is None else trace.order, shared)
    tree.graph["tied"] = tied_tensors(model, shared)
    tree.graph["trace"] = trace
    return tree


def tied_tensors(model: Any, shared: dict[str, str] | None = None) -> dict[str, str]:
    """State-dict name -> the name of the tensor it is another layer's name for (an ``lm_head`` tied to the
    embedding): what ``tree.graph["tied"]`` holds, and a dump's header keeps. ``shared``: the model's
    :meth:`~padiff_graph.frameworks.base.FrameworkAdapter.shared_layers`, where already known."""
    adapter = adapter_for(model)
    shared = adapter.shared_layers(model) if shared is None else shared
    return {key: name for key, name in adapter.state_dict_names(model).items() if _tied(key, name, shared)}


def _tied(key: str, name: str, shared: dict[str, str]) -> bool:
    """Whether state-dict ``key`` is another layer's name for tensor ``name``: a tie the user made.

    Not a layer reached under two names (reported as shared), nor a layer's
    inside reusing its own tensors (paddle's RNN cells hold their RNN's weights).
    """
    owner = name.rpartition(".")[0]
    inside_owner = bool(owner) and key.startswith(owner + ".")
    return key != name and not inside_owner and not any(key.startswith(alias + ".") for alias in shared)


def export_pair(base: Any, raw: Any, inputs: Any = None) -> tuple[ModelTree, ModelTree]:
    """Both models' trees; ``inputs`` are used for both, or are a pair ``(base_inputs, raw_inputs)``."""
    base_inputs, raw_inputs = split_inputs(inputs) if inputs is not None else (None, None)
    return export_model(base, base_inputs, "base"), export_model(raw, raw_inputs, "raw")
