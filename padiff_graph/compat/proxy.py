"""PaDiff's ``create_model`` proxy: run a model yourself, record it, dump it step by step.

A :class:`ProxyModel` holds the model (``.model``), PaDiff's black and white
lists, layer map and unassigned-weights list, and a
:class:`padiff_graph.Recording` that its ``__call__`` and ``backward`` go
through on the steps ``dump_freq`` selects. Dumps are padiff_graph dumps
(``docs/dump.md``) laid out as PaDiff describes them:
``<root>/<name>/step_S/rank_N``. A dump path given explicitly names the
dump's root, or one of its step folders (``.../step_3``), or one rank of a
step (``.../step_3/rank_1``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from padiff_graph.compat.apicheck import api_calls
from padiff_graph.compat.messages import log, switch_on
from padiff_graph.compat.report import ApiCall, Report, padiff_report
from padiff_graph.errors import InputError
from padiff_graph.frameworks import adapter_for
from padiff_graph.frameworks.base import FrameworkAdapter, iter_tensors
from padiff_graph.offline.recording import Recording
from padiff_graph.run.selection import parse_entries

_dump_root = [Path(sys.path[0] or ".") / "padiff_dump"]
#: the header metadata key under which a proxy stores its name and layer map
METADATA = "padiff_compat"
_NUMBERED = re.compile(r"(step|rank)_(\d+)")
_PLACE = re.compile(r"Place\((.*)\)")


def set_dump_root_path(path: str) -> None:
    """Where proxies created from now on dump by default (``<path>/<name>``)."""
    _dump_root[0] = Path(path)


def get_dump_root_path() -> str:
    return str(_dump_root[0])


def numbered(name: str, kind: str) -> int | None:
    """``3`` for ``step_3`` when ``kind`` is ``step``; ``None`` for any other name."""
    match = _NUMBERED.fullmatch(name)
    return int(match.group(2)) if match and match.group(1) == kind else None


class ProxyModel:
    """A model with PaDiff's lists and dump methods (see :func:`create_model`)."""

    def __init__(self, model: Any, name: str | None = None, dump_freq: int = 1) -> None:
        if isinstance(dump_freq, bool) or not isinstance(dump_freq, int) or dump_freq < 1:
            raise InputError(f"dump_freq must be a positive integer, not {dump_freq!r}")
        self.adapter = adapter_for(model)
        self.model = model
        self.framework: str = self.adapter.name
        self.name = name or type(model).__name__
        self.dump_freq = dump_freq
        self.step = 0
        self.dump_path = str(Path(get_dump_root_path()) / self.name)
        self.black_list: list[tuple[Any, str]] = []
        self.white_list: list[tuple[Any, str]] = []
        self.unassigned: list[tuple[Any, str]] = []
        self.layer_map: list[Any] = []
        self._recording: Recording | None = None
        self._api_calls: list[ApiCall] = []

    @property
    def class_name(self) -> str:
        return type(self.model).__name__

    def __repr__(self) -> str:
        return f"Model({self.framework}::{self.class_name})"

    # --- the model's own interface, as PaDiff's proxy offers it ----------------------------------

    def parameters(self, recursively: bool = True) -> Iterator[ProxyParam]:
        """The model's parameters (of its sublayers too when ``recursively``), each as a :class:`ProxyParam`."""
        return (param for _, param in self.named_parameters(recursively))

    def named_parameters(self, recursively: bool = True) -> Iterator[tuple[str, ProxyParam]]:
        if self.framework == "torch":
            found = self.model.named_parameters(recurse=recursively)
        else:
            found = self.model.named_parameters(include_sublayers=recursively)
        return ((name, ProxyParam(param, self.adapter)) for name, param in found)

    def children(self) -> Iterator[ProxyModel]:
        """The direct sublayers, as proxies."""
        return (child for _, child in self.named_children())

    def named_children(self) -> Iterator[tuple[str, ProxyModel]]:
        return ((name, create_model(child)) for name, child in self.model.named_children())

    def submodels(self) -> Iterator[ProxyModel]:
        """The model and every layer under it, as proxies."""
        return (layer for _, layer in self.named_submodels())

    def named_submodels(self) -> Iterator[tuple[str, ProxyModel]]:
        return ((path, create_model(layer)) for path, layer in self.adapter.named_layers(self.model).items())

    def get_device(self) -> Any:
        """Where the first parameter lives (torch: a ``torch.device``; paddle: the place, as ``cpu``)."""
        first = next(iter(self.adapter.named_tensors(self.model).values()))
        if self.framework == "torch":
            return first.device
        return _PLACE.sub(r"\1", str(first.place))

    def to(self, device: Any) -> None:
        self.model.to(device)

    def to_cpu(self) -> None:
        self.model.to("cpu")

    def register_forward_pre_hook(self, hook: Callable[..., Any]) -> Any:
        return self.model.register_forward_pre_hook(hook)

    def register_forward_post_hook(self, hook: Callable[..., Any]) -> Any:
        """The framework's forward (post) hook: ``register_forward_hook`` in torch."""
        if self.framework == "torch":
            return self.model.register_forward_hook(hook)
        return self.model.register_forward_post_hook(hook)

    # --- running ---------------------------------------------------------------------------------

    def _recording_step(self) -> bool:
        return self.step % self.dump_freq == 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The model's forward; on dumped steps its layers are recorded (``PADIFF_API_CHECK=ON``: API calls too)."""
        if not self._recording_step():
            return self.model(*args, **kwargs)
        recording = self.recording()
        if not switch_on("PADIFF_API_CHECK"):
            return recording.forward(*args, **kwargs)

        def keep(name: str, output: Any) -> None:
            arrays = [self.adapter.to_numpy(t, copy=True) for t in iter_tensors(output, self.adapter.is_tensor)]
            self._api_calls.append(ApiCall(len(recording.records), name, arrays))

        with api_calls(self.adapter, self.model, keep):
            return recording.forward(*args, **kwargs)

    @property
    def report(self) -> Report:
        """What was recorded since the last ``clear_report``, as PaDiff's report items (``.items``)."""
        records = self._recording.records if self._recording is not None else []
        classes = {path: type(layer).__name__ for path, layer in self.adapter.named_layers(self.model).items()}
        return padiff_report(records, classes, self._api_calls)

    def backward(self, loss: Any) -> None:
        """``loss.backward()``; on dumped steps the loss and output gradients are recorded."""
        if not self._recording_step():
            self.adapter.backward(loss)
            return
        self.recording().backward(loss)

    def recording(self) -> Recording:
        """The :class:`padiff_graph.Recording` this proxy records and dumps through."""
        if self._recording is None:
            self._recording = self.new_recording()
        return self._recording

    def new_recording(self) -> Recording:
        """A fresh :class:`padiff_graph.Recording` of the layers this proxy's lists select, its dumps named as it."""
        recording = Recording(self.model, black_list=self.compared_black_list(), white_list=self.white_list)
        recording.metadata[METADATA] = self._metadata(recording)
        return recording

    def _metadata(self, recording: Recording) -> dict[str, Any]:
        """The proxy's name, its ``set_layer_map`` layers and the layers it dumps (whose gradients a check expects)."""
        return {"name": self.name, "layer_map": self.paths_of(self.layer_map), "layers": sorted(recording.layers)}

    def _lists_changed(self) -> None:
        if self._recording is not None:
            self._recording.select(self.compared_black_list(), self.white_list)
            self._recording.metadata[METADATA] = self._metadata(self._recording)

    # --- black and white lists, layer map --------------------------------------------------------

    def update_black_list(self, layers: Any, mode: str = "all") -> None:
        """Do not compare (or dump) these layers: ``self``, their ``sublayers``, or ``all``."""
        self.black_list += self._entries(layers, mode, "black_list")
        self._lists_changed()

    def update_white_list(self, layers: Any, mode: str = "self") -> None:
        """Compare (and dump) only the white-listed layers: ``self``, their ``sublayers``, or ``all``."""
        self.white_list += self._entries(layers, mode, "white_list")
        self._lists_changed()

    def update_black_list_with_class(self, layer_class: type, mode: str = "self") -> None:
        """``update_black_list`` for every layer of the model that is a ``layer_class``."""
        self.update_black_list(self._instances(layer_class), mode)

    def update_white_list_with_class(self, layer_class: type, mode: str = "self") -> None:
        """``update_white_list`` for every layer of the model that is a ``layer_class``."""
        self.update_white_list(self._instances(layer_class), mode)

    def update_unassigned_weights_list(self, layers: Any, mode: str = "self") -> None:
        """Do not copy these layers' weights in ``assign_weight`` / ``auto_diff(auto_init=True)``."""
        self.unassigned += self._entries(layers, mode, "unassigned weights list")

    def set_layer_map(self, layers: Iterable[Any]) -> None:
        """Layers of this model that correspond, in order, to the other model's ``set_layer_map`` layers.

        Each pair is kept whatever the matcher proposes (its weights copied through
        a registered conversion or special init when there is one, the layers
        inside matched to each other otherwise), and, as in PaDiff, the layers
        inside a mapped layer are not compared.
        """
        chosen = list(layers)
        self.paths_of(chosen)  # every layer must belong to this model
        self.layer_map = chosen
        self._lists_changed()

    def auto_layer_map(self, place: str) -> bool:
        """PaDiff searched the layers its special inits support; the matcher already pairs every layer."""
        if place not in ("base", "raw"):
            raise InputError(f"auto_layer_map takes 'base' or 'raw', not {place!r}")
        log(f"auto_layer_map({place!r}): the matcher pairs every layer, special-init layers included")
        return True

    def compared_black_list(self) -> list[tuple[Any, str]]:
        """The black list, plus the layers below each mapped layer (PaDiff's set_layer_map rule)."""
        return self.black_list + [(layer, "sublayers") for layer in self.layer_map]

    def paths_of(self, layers: Iterable[Any]) -> list[str]:
        """Dotted paths of layer objects of this model.

        Raises:
            InputError: a layer that is not part of the model.
        """
        path_of = {id(layer): path for path, layer in reversed(self.adapter.named_layers(self.model).items())}
        paths = []
        for layer in layers:
            if id(layer) not in path_of:
                raise InputError(f"{type(layer).__name__} layer is not part of the model {self.name!r}")
            paths.append(path_of[id(layer)])
        return paths

    def _entries(self, layers: Any, mode: str, what: str) -> list[tuple[Any, str]]:
        chosen = list(layers) if isinstance(layers, (list, tuple, set)) else [layers]
        parse_entries([(layer, mode) for layer in chosen], mode, what)  # checks the mode
        self.paths_of(chosen)
        return [(layer, mode) for layer in chosen]

    def _instances(self, layer_class: type) -> list[Any]:
        return [layer for layer in self.adapter.named_layers(self.model).values() if isinstance(layer, layer_class)]

    # --- dumping ---------------------------------------------------------------------------------

    def try_dump(self, dump_path: Any = None, legacy_path: str | None = None) -> None:
        """On the steps ``dump_freq`` selects, ``dump_params`` and ``dump_report``; then start the next step.

        Call it every step (it counts them). PaDiff 0.1's ``try_dump(per_steps, dump_path)`` works too.
        """
        frequency = self.dump_freq
        if isinstance(dump_path, int) and not isinstance(dump_path, bool):
            frequency, dump_path = dump_path, legacy_path
        if self.step % frequency == 0:
            self.dump_params(dump_path)
            self.dump_report(dump_path)
        self.clear_report()
        self.step += 1

    def dump_report(self, dump_path: str | None = None) -> None:
        """Layer outputs, output gradients and the loss recorded since the last ``clear_report``."""
        self._save(dump_path, "report")

    def dump_params(self, dump_path: str | None = None) -> None:
        """The parameters and their gradients, as they are now."""
        self._save(dump_path, "weights")
        self._save(dump_path, "grads")

    def dump_grads(self, dump_path: str | None = None) -> None:
        self._save(dump_path, "grads")

    def dump_weights(self, dump_path: str | None = None) -> None:
        """The parameters as they are now (after ``optimizer.step()``, to check the optimizer)."""
        self._save(dump_path, "weights")

    def clear_report(self) -> None:
        self._api_calls.clear()
        if self._recording is not None:
            self._recording.clear()

    def _save(self, dump_path: str | None, part: str) -> None:
        root, step, rank = self.target(dump_path)
        self.recording().save(root, step, part, rank=rank)

    def target(self, dump_path: str | None) -> tuple[Path, int, int | None]:
        """(dump root, step, rank or None for this process's) a dump path names."""
        if dump_path is None:
            return Path(self.dump_path), self.step, None
        folder = Path(dump_path)
        rank = numbered(folder.name, "rank")
        if rank is not None:
            step = numbered(folder.parent.name, "step")
            if step is not None:
                return folder.parent.parent, step, rank
            return folder.parent, self.step, rank
        step = numbered(folder.name, "step")
        if step is not None:
            return folder.parent, step, None
        return folder, self.step, None


class ProxyParam:
    """A parameter as PaDiff's proxies give it: ``.param``, and its values as numpy arrays."""

    def __init__(self, param: Any, adapter: FrameworkAdapter) -> None:
        self.param = param
        self.param_type: str = adapter.name
        self.adapter = adapter

    def numpy(self) -> np.ndarray:
        return self.adapter.to_numpy(self.param, copy=True)

    def set_data(self, value: Any) -> None:
        """Overwrite the parameter's values (its dtype and device stay)."""
        self.adapter.write(self.param, np.asarray(value))

    def shape(self) -> list[int]:
        return list(self.param.shape)

    def grad(self) -> np.ndarray | None:
        """The gradient, or ``None`` if there is none."""
        return self.adapter.grad(self.param)

    def main_grad(self) -> np.ndarray | None:
        """Paddle's ``main_grad`` (kept by mixed-precision training), or ``None``."""
        main = getattr(self.param, "main_grad", None)
        return None if main is None else self.adapter.to_numpy(main, copy=True)


def dump_report(model: ProxyModel, dump_path: str | None = None) -> None:
    """``model.dump_report(dump_path)``, as PaDiff's ``padiff.dump_tools`` spells it."""
    model.dump_report(dump_path)


def dump_params(model: ProxyModel, dump_path: str | None = None) -> None:
    model.dump_params(dump_path)


def dump_grads(model: ProxyModel, dump_path: str | None = None) -> None:
    model.dump_grads(dump_path)


def dump_weights(model: ProxyModel, dump_path: str | None = None) -> None:
    model.dump_weights(dump_path)


def create_model(model: Any, name: str | None = None, dump_freq: int = 1) -> ProxyModel:
    """PaDiff's proxy for a torch or paddle model (a proxy is returned as it is).

    ``name`` names the dump folder and the routes in messages (default: the
    class name); ``dump_freq`` records and dumps every n-th step.
    """
    if isinstance(model, ProxyModel):
        return model
    return ProxyModel(model, name, dump_freq)


def as_proxy(model: Any, role: str) -> ProxyModel:
    """``model`` itself if a proxy; otherwise a proxy named as PaDiff names plain models.

    Routes read ``Net(base_model)``, as in PaDiff's messages; the dumps go to ``<root>/Net_base_model``, as PaDiff's.
    """
    if isinstance(model, ProxyModel):
        return model
    proxy = ProxyModel(model, f"{type(model).__name__}({role})")
    proxy.dump_path = str(Path(get_dump_root_path()) / f"{type(model).__name__}_{role}")
    return proxy
