"""PaDiff's ``auto_diff`` and ``assign_weight``, run by padiff_graph's matcher, copy and diff."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import Any

from padiff_graph.api import assign_weights, diff, export_tree, suggest_map
from padiff_graph.compat.messages import Named, log, print_failure, print_options, remember, switch_on
from padiff_graph.compat.proxy import ProxyModel, as_proxy
from padiff_graph.errors import AssignError, InputError, ModelRunError, PadiffGraphError
from padiff_graph.frameworks import adapter_named
from padiff_graph.frameworks.base import iter_tensors
from padiff_graph.frameworks.inputs import prepare, split_inputs
from padiff_graph.layermap import LayerMap
from padiff_graph.offline.recording import Recording
from padiff_graph.run.selection import parse_entries, selected_paths

#: PaDiff's documented defaults: elementwise tolerances of numpy's ``assert_allclose``, and means compared
DEFAULTS: dict[str, Any] = {
    "atol": 0.0,
    "rtol": 1e-7,
    "compare_mode": "mean",
    "auto_init": True,
    "diff_phase": "both",
    "single_step": False,
    "steps": 1,
}
#: accepted and left alone: PaDiff sets these itself from ``loss_fns`` / ``optimizers``
_DERIVED = ("use_loss", "use_opt")


def assign_weight(base_model: Any, raw_model: Any) -> bool:
    """Copy ``base_model``'s weights into ``raw_model`` through the layer map; ``False`` (and why) if it cannot.

    Models are torch or paddle models or :func:`create_model` proxies (their
    layer maps and unassigned-weights lists apply). Layers are paired by
    structure, not definition order, and layouts are converted (Linear
    transposes, BatchNorm statistics, fused attention...), then the copy is
    verified bit for bit.
    """
    try:
        base, raw = as_proxy(base_model, "base_model"), as_proxy(raw_model, "raw_model")
        pins = _pins(base, raw)
        layer_map = suggest_map(base.model, raw.model, pinned=pins) if pins or _unassigned(base, raw) else None
        if layer_map is not None:
            layer_map = _assignable(layer_map, base, raw)
        assign_weights(base.model, raw.model, layer_map)
    except Exception as error:  # PaDiff's contract: report and return False, never raise
        log("Assign weight Failed !!!\n")
        print(_explain(error))
        return False
    log("Assign weight success !!!")
    return True


def auto_diff(
    base_model: Any, raw_model: Any, inputs: Any, loss_fns: Any = None, optimizers: Any = None, **kwargs: Any
) -> bool:
    """Copy weights (``auto_init``), run both models and name the first layer that differs; ``True`` if none.

    As PaDiff's, it leaves each model's run dumped in ``<dump_path>/auto_diff``
    (the layers its proxy's lists select), for ``check_report`` and the others.

    Args:
        base_model, raw_model: torch or paddle models, or :func:`create_model` proxies.
        inputs: ``(base_inputs, raw_inputs)``, each a dict of keyword arguments
            (framework tensors or numpy arrays); or anything ``padiff_graph.diff`` takes.
        loss_fns: ``(base_loss, raw_loss)``, each taking its model's output.
        optimizers: ``(base_optimizer, raw_optimizer)``: framework optimizers,
            or callables that step and clear the gradients.
        kwargs: PaDiff's options: ``atol`` (0), ``rtol`` (1e-7),
            ``compare_mode`` (``"mean"`` | ``"strict"``), ``auto_init`` (True;
            ``auto_weights`` is its older name), ``diff_phase`` (``"both"`` |
            ``"forward"`` | ``"backward"``), ``single_step`` (False), ``steps`` (1);
            ``loss_fn`` is taken for ``loss_fns``, and a ``layer_map`` (a
            :class:`padiff_graph.LayerMap`) replaces the matcher's.
    """
    remember(None)
    try:
        return _auto_diff(base_model, raw_model, inputs, loss_fns, optimizers, kwargs)
    except AssignError as error:
        log("Assign weight Failed !!!\n")
        print(_explain(error))
    except PadiffGraphError as error:  # inputs that do not fit, a bad option, a model's forward that raised...
        log("FAILED !!!")
        print(_explain(error))
    return False


def _auto_diff(
    base_model: Any, raw_model: Any, inputs: Any, loss_fns: Any, optimizers: Any, kwargs: dict[str, Any]
) -> bool:
    options = _options(kwargs, loss_fns)
    loss_fns = options.pop("loss_fns")
    layer_map = options.pop("layer_map")
    print_options({**options, "use_loss": loss_fns is not None, "use_opt": optimizers is not None})
    if isinstance(inputs, list) and len(inputs) == 2:
        inputs = tuple(inputs)
    base, raw = as_proxy(base_model, "base_model"), as_proxy(raw_model, "raw_model")
    pins = _pins(base, raw)
    if layer_map is None and (pins or options["auto_init"]):
        layer_map = suggest_map(base.model, raw.model, inputs, pinned=pins)
    if options["auto_init"]:
        assign_weights(
            base.model, raw.model, _assignable(layer_map, base, raw) if _unassigned(base, raw) else layer_map
        )
    if isinstance(inputs, Iterator):
        first = next(inputs, None)
        inputs = chain([first], inputs)
    else:
        first = inputs
    backward = options["diff_phase"] != "forward"
    recordings = _dump_first_step(base, raw, first, loss_fns, backward)
    report = diff(
        base.model,
        raw.model,
        inputs,
        layer_map,
        atol=options["atol"],
        rtol=options["rtol"],
        mode=options["compare_mode"],
        assign=False,
        loss_fns=loss_fns,
        optimizers=optimizers,
        steps=options["steps"],
        diff_phase=options["diff_phase"],
        single_step=options["single_step"],
        black_list=base.compared_black_list() + raw.compared_black_list(),
        white_list=base.white_list + raw.white_list,
        op_level=switch_on("PADIFF_API_CHECK"),
    )
    remember(report)
    if optimizers is not None and backward:
        for proxy, recording in zip((base, raw), recordings, strict=True):
            recording.save(_auto_diff_folder(proxy), 0, "weights")
    if options["auto_init"]:
        log("Assign weight success !!!")
    if report.ok:
        log("SUCCESS !!!\n")
        return True
    print_failure(report, Named(base.name, export_tree(base.model)), Named(raw.name, export_tree(raw.model)))
    if options["single_step"] and len(report.divergences) > 1:
        log(f"In single step mode, {len(report.divergences)} layer pairs differ (padiff_graph.compat.last_report())")
    log("FAILED !!!\n")
    return False


def _auto_diff_folder(proxy: ProxyModel) -> Path:
    return Path(proxy.dump_path) / "auto_diff"


def _dump_first_step(
    base: ProxyModel, raw: ProxyModel, inputs: Any, loss_fns: Any, backward: bool
) -> tuple[Recording, Recording]:
    """Run each model once, as PaDiff's ``auto_diff`` does, and dump it into ``<dump_path>/auto_diff``.

    The layers the proxies' lists select are recorded: outputs (``report``),
    and with ``backward`` the output and parameter gradients (``grads``).
    The diff runs next, on the same weights. Returns the two recordings (the
    weights after the optimizer steps are saved with them once the diff has run).
    """
    recordings = []
    for proxy, side_inputs, loss_fn in zip((base, raw), split_inputs(inputs), loss_fns or (None, None), strict=True):
        folder = _auto_diff_folder(proxy)
        shutil.rmtree(folder, ignore_errors=True)  # PaDiff starts its auto_diff dumps afresh
        recording = proxy.new_recording()
        arguments = prepare(proxy.adapter, proxy.model, side_inputs)
        what = "forward"
        try:
            output = recording.forward(*arguments.args, **arguments.kwargs)
            what = "loss"
            loss = _loss(proxy, output, loss_fn) if backward else None
            what = "backward"
            if loss is not None:
                recording.backward(loss)
        except Exception as error:  # the user's model, loss or backward may raise anything
            raise ModelRunError(f"the {proxy.name} model's {what} failed: {type(error).__name__}: {error}") from error
        recording.save(folder, 0, "report")
        if loss is not None:
            recording.save(folder, 0, "grads")
        recordings.append(recording)
    return recordings[0], recordings[1]


def _loss(proxy: ProxyModel, output: Any, loss_fn: Any) -> Any:
    """The loss the diff takes too; ``None`` when, with no loss function, nothing in the output needs a gradient."""
    if loss_fn is not None:
        return loss_fn(output)
    try:
        return proxy.adapter.mean_loss(output)
    except ValueError:  # a model with nothing to train: the diff compares its forward only
        return None


def default_loss(output: Any, mode: str) -> Any:
    """PaDiff's loss for a model's output: its mean, or the mean of the float32 means of the tensors it holds.

    ``mode`` is the framework, ``"torch"`` or ``"paddle"``.
    """
    if mode not in ("torch", "paddle"):
        raise InputError(f"mode must be 'torch' or 'paddle', not {mode!r}")
    adapter = adapter_named(mode)
    if adapter.is_tensor(output):
        return output.mean()
    means = [
        tensor.astype("float32").mean() if mode == "paddle" else tensor.float().mean()
        for tensor in iter_tensors(output, adapter.is_tensor)
    ]
    if not means:
        raise InputError("the output holds no tensor to take a loss of")
    return sum(means[1:], means[0]) / len(means)


def _options(kwargs: dict[str, Any], loss_fns: Any) -> dict[str, Any]:
    """PaDiff's keyword options over its defaults; unknown ones are reported and ignored, as PaDiff ignores them."""
    given = dict(kwargs)
    if "auto_weights" in given:
        given.setdefault("auto_init", given.pop("auto_weights"))
    loss_fn = given.pop("loss_fn", None)
    if loss_fns is None:
        loss_fns = loss_fn
    layer_map = given.pop("layer_map", None)
    if layer_map is not None and not isinstance(layer_map, LayerMap):
        raise InputError("layer_map must be a padiff_graph.LayerMap; give PaDiff's layer map with set_layer_map")
    for key in _DERIVED:
        given.pop(key, None)
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        log(f"  ignoring unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    options = {key: given.get(key, default) for key, default in DEFAULTS.items()}
    for key in ("atol", "rtol"):
        try:
            options[key] = float(options[key])
        except (TypeError, ValueError):
            raise InputError(f"{key} must be a number, not {options[key]!r}") from None
    return {**options, "loss_fns": loss_fns, "layer_map": layer_map}


def _pins(base: ProxyModel, raw: ProxyModel) -> list[tuple[str, str]]:
    """The two proxies' ``set_layer_map`` layers, zipped in order, as (base path, raw path) pairs."""
    base_paths, raw_paths = base.paths_of(base.layer_map), raw.paths_of(raw.layer_map)
    if len(base_paths) != len(raw_paths):
        raise InputError(
            f"set_layer_map lists {len(base_paths)} layers of {base.name!r} and {len(raw_paths)} of {raw.name!r}; "
            "give both models' corresponding layers, in the same order"
        )
    return list(zip(base_paths, raw_paths, strict=True))


def _unassigned(base: ProxyModel, raw: ProxyModel) -> bool:
    return bool(base.unassigned or raw.unassigned)


def _assignable(layer_map: LayerMap, base: ProxyModel, raw: ProxyModel) -> LayerMap:
    """``layer_map`` ignoring the pairs that copy weights of a layer on either side's unassigned-weights list."""
    base_ok, raw_ok = _kept(base), _kept(raw)
    skipped = [
        pair
        for pair in layer_map.pairs
        if (pair.tensors or pair.init) and (pair.base not in base_ok or pair.raw not in raw_ok)
    ]
    return replace(
        layer_map,
        ignore_base=[*layer_map.ignore_base, *(pair.base for pair in skipped)],
        ignore_raw=[*layer_map.ignore_raw, *(pair.raw for pair in skipped)],
    )


def _kept(proxy: ProxyModel) -> set[str]:
    layers = proxy.adapter.named_layers(proxy.model)
    entries = parse_entries(proxy.unassigned, "self", "unassigned weights list")
    return selected_paths(layers, export_tree(proxy.model), entries, [], skip_wrap_layers=False)


def _explain(error: Exception) -> str:
    if isinstance(error, PadiffGraphError):
        return f"{error}\n"
    return f"{type(error).__name__}: {error} (unexpected: please report it to padiff_graph with the models)\n"
