"""``import padiff_graph`` must load neither torch nor paddle, and work without them."""

import subprocess
import sys

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
