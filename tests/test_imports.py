"""``import padiff_graph`` must load neither torch nor paddle, and work without them.

Start-up: importing the package and ``padiff-graph --help`` load no heavy
module, and a command loads only the frameworks its models use.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import padiff_graph

BLOCK_FRAMEWORKS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'paddle'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_loads_no_framework() -> None:
    result = run(
        "import sys, padiff_graph, padiff_graph.cli, padiff_graph.report.terminal\n"
        "print(sorted(m for m in ('torch', 'paddle') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


HEAVY = ("torch", "paddle", "numpy", "scipy", "networkx", "yaml", "jinja2", "rich")

#: runs the CLI, then prints which of the modules named in argv[1] were loaded
CLI_PROBE = """
import json, sys
watched, sys.argv = sys.argv[1].split(","), ["padiff-graph", *sys.argv[2:]]
from padiff_graph.cli import main
try:
    main()
finally:
    print("LOADED", json.dumps(sorted(m for m in watched if m in sys.modules)))
"""


def loaded_by_cli(*args: str, watched: tuple[str, ...] = HEAVY) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", CLI_PROBE, ",".join(watched), *args], capture_output=True, text=True, timeout=300
    )
    assert result.returncode in (0, 1), result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("LOADED"))
    return json.loads(line.removeprefix("LOADED "))


def test_import_and_help_load_no_heavy_module() -> None:
    result = run(f"import sys, padiff_graph\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert loaded_by_cli("--help") == []
    assert loaded_by_cli("diff", "--help") == []


def test_every_public_name_resolves_lazily() -> None:
    for name in padiff_graph.__all__:
        assert getattr(padiff_graph, name) is not None
        assert name in dir(padiff_graph)
    from padiff_graph import LayerMap, diff
    from padiff_graph.api import diff as api_diff
    from padiff_graph.layermap import LayerMap as layermap_class

    assert diff is api_diff and LayerMap is layermap_class
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        padiff_graph.nope  # noqa: B018


MODELS = {
    "torch": """
        import torch

        def model():
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()), {"input": torch.ones(2, 4)}
        """,
    "paddle": """
        import paddle

        def model():
            paddle.seed(0)
            return paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.ReLU()), {"input": paddle.ones([2, 4])}
        """,
}


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_a_command_loads_only_the_framework_its_models_use(tmp_path: Path, framework: str) -> None:
    models = tmp_path / "models.py"
    models.write_text(textwrap.dedent(MODELS[framework]))
    spec = f"{models}:model"
    watched = ("torch", "paddle", "jinja2")
    assert loaded_by_cli("show", spec, watched=watched) == [framework]
    assert loaded_by_cli("diff", spec, spec, watched=watched) == [framework]


def test_core_works_without_frameworks(tmp_path) -> None:
    code = (
        BLOCK_FRAMEWORKS
        + f"""
from padiff_graph import LayerMap, LayerPair, TensorPair
layer_map = LayerMap([LayerPair("fc", "fc", 1.0, (TensorPair.parse("weight -> weight: transpose"),))])
layer_map.save({str(tmp_path / "m.yaml")!r})
print(LayerMap.load({str(tmp_path / "m.yaml")!r}).pairs[0].tensors[0].describe())
"""
    )
    result = run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "weight -> weight: transpose"


def test_unsupported_model_error_names_the_type() -> None:
    code = (
        BLOCK_FRAMEWORKS
        + """
import padiff_graph
try:
    padiff_graph.export_tree(object())
except padiff_graph.UnsupportedModelError as error:
    print(error)
"""
    )
    result = run(code)
    assert "object is neither a torch.nn.Module nor a paddle.nn.Layer" in result.stdout


def test_every_module_imports_as_a_module_and_none_is_named_like_a_reexported_function() -> None:
    """``import padiff_graph.<name>`` gives a module: no module shadows, or is shadowed by, a public function."""
    code = (
        BLOCK_FRAMEWORKS
        + """
import importlib, inspect, pkgutil, types
import padiff_graph
functions = {name for name in padiff_graph.__all__ if inspect.isfunction(getattr(padiff_graph, name))}
clashes, broken = [], []
for info in pkgutil.walk_packages(padiff_graph.__path__, "padiff_graph."):
    if info.name.rsplit(".", 1)[1] in functions:
        clashes.append(info.name)
    if info.name.endswith("__main__") or any(part in info.name for part in ("adapter", "_ops", "demo")):
        continue  # running the command; framework adapters and the demo import their framework
    if not isinstance(importlib.import_module(info.name), types.ModuleType):
        broken.append(info.name)
print(sorted(functions)[:3], clashes, broken)
"""
    )
    result = run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("[] []"), result.stdout


#: The package's floors, bottom first: a module may import its own floor and those below, never above.
FLOORS = [
    ["errors", "core"],
    ["knowledge"],
    ["layermap", "frameworks"],
    ["match", "checks"],
    ["assign"],
    ["run"],
    ["offline"],
    ["report"],
    ["api", "compat", "cli", "__init__", "__main__"],
]


def test_imports_point_down_the_pipeline() -> None:
    """Every import of a package module (inside functions too) goes to the same floor or one below it."""
    import ast
    from pathlib import Path

    floor = {name: level for level, names in enumerate(FLOORS) for name in names}
    package = Path(__file__).resolve().parent.parent / "padiff_graph"
    upward = []
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        mine = floor[parts[0]]
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                target = name.split(".")
                if target[0] == "padiff_graph" and floor[target[1] if len(target) > 1 else "__init__"] > mine:
                    upward.append(f"{'.'.join(parts)} -> {name}")
    assert upward == []
