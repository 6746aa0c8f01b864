"""Loading models named on the command line: ``path/to/file.py:factory`` or ``package.module:factory``.

A factory returns the model, or ``(model, inputs)``. Every failure becomes
an :class:`~padiff_graph.errors.InputError` (or ``FactoryError`` when the
user's own factory raised) with a one-line message.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from padiff_graph.errors import FactoryError, InputError, describe
from padiff_graph.frameworks import quiet_framework_imports


@dataclass
class LoadedModel:
    spec: str
    model: Any
    inputs: Any = None


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise InputError(f"model file {str(path)!r} does not exist")
    name = "padiff_graph_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"{str(path)!r} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    directory = str(path.resolve().parent)
    sys.path.insert(0, directory)  # so the file can import its neighbours
    try:
        with quiet_framework_imports():
            spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise FactoryError(f"importing {str(path)!r} failed: {describe(error)}") from error
    finally:
        sys.path.remove(directory)
    return module


def _load_module(name: str) -> ModuleType:
    try:
        with quiet_framework_imports():
            return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):
            raise InputError(
                f"no module named {name!r} (give path/to/file.py:factory or package.module:factory)"
            ) from None
        raise FactoryError(f"importing {name!r} failed: {describe(error)}") from error
    except Exception as error:
        raise FactoryError(f"importing {name!r} failed: {describe(error)}") from error


def load_model(spec: str) -> LoadedModel:
    """Import the factory named by ``spec``, call it, and split ``(model, inputs)``."""
    target, colon, factory_name = spec.rpartition(":")
    if not colon or not target or not factory_name:
        raise InputError(f"model {spec!r} must look like path/to/file.py:factory or package.module:factory")
    module = _load_file(Path(target)) if target.endswith(".py") else _load_module(target)
    factory = getattr(module, factory_name, None)
    if factory is None:
        raise InputError(f"{target!r} has no factory named {factory_name!r}")
    if not callable(factory):
        raise InputError(f"{spec!r} is not callable")
    try:
        result = factory()
    except Exception as error:
        raise FactoryError(f"factory {spec} raised {describe(error)}") from error
    if isinstance(result, tuple) and len(result) == 2:
        return LoadedModel(spec, result[0], result[1])
    return LoadedModel(spec, result)
