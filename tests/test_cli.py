"""The padiff-graph command: outputs, exit codes (0 / 1 / 2) and one-line errors."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from padiff_graph import LayerMap
from padiff_graph.cli import main

EX = Path(__file__).resolve().parent.parent / "examples"


def run(*args: str) -> "CliResult":
    result = CliRunner().invoke(main, list(args))
    return CliResult(result.exit_code, result.output, result.stderr if hasattr(result, "stderr") else "")


class CliResult:
    def __init__(self, code: int, output: str, stderr: str) -> None:
        self.code, self.output, self.stderr = code, output, stderr


def spec(name: str, factory: str) -> str:
    return f"{EX / name}.py:{factory}"


def test_suggest_map_writes_a_loadable_file(tmp_path) -> None:
    out = tmp_path / "map.yaml"
    result = run("suggest-map", spec("reordered_siblings", "base"), spec("reordered_siblings", "raw"), "-o", str(out))
    assert result.code == 0, result.output
    assert LayerMap.load(out).raw_of("proj_a") == "proj_a"


def test_suggest_map_padiff_format() -> None:
    result = run("suggest-map", spec("identical", "base"), spec("identical", "raw"), "--format", "padiff")
    assert result.code == 0 and "set_layer_map" in result.output


def test_check_exit_codes() -> None:
    assert run("check", spec("reordered_siblings", "base"), spec("reordered_siblings", "raw")).code == 0
    extra = run("check", spec("extra_layer", "base"), spec("extra_layer", "raw"))
    assert extra.code == 1 and "unmatched" in extra.output and "aux_head" in extra.output


def test_check_json_and_ignore_list(tmp_path) -> None:
    out = tmp_path / "map.yaml"
    run("suggest-map", spec("extra_layer", "base"), spec("extra_layer", "raw"), "-o", str(out))
    text = out.read_text().replace("ignore:\n  base: []", "ignore:\n  base: [aux_head]")
    out.write_text(text)
    result = run("check", spec("extra_layer", "base"), spec("extra_layer", "raw"), "--map", str(out), "--json")
    assert result.code == 0, result.output
    document = json.loads(result.output)
    assert document["ok"] and document["kind"] == "check"


def test_diff_exit_codes() -> None:
    aligned = run("diff", spec("conv_bn", "base"), spec("conv_bn", "raw"))
    assert aligned.code == 0 and "aligned" in aligned.output
    fault = run("diff", spec("gelu_fault", "base"), spec("gelu_fault", "raw"), "--json")
    assert fault.code == 1
    assert json.loads(fault.output)["first_divergence"]["base"] == "mlp.act"


def test_diff_single_step_and_op_level_flags() -> None:
    fault = run("diff", spec("gelu_fault", "base"), spec("gelu_fault", "raw"), "--single-step", "--op-level", "--json")
    assert fault.code == 1
    document = json.loads(fault.output)
    first = document["divergences"][0]
    assert (first["base"], first["stage"]) == ("mlp.act", "forward")
    assert first["op"]["base_api"] == "torch.nn.functional.gelu"


def test_show_collapses_repeated_blocks(tmp_path) -> None:
    model = tmp_path / "deep.py"
    model.write_text(
        textwrap.dedent(
            """
            import torch
            def make():
                blocks = [torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU()) for _ in range(32)]
                return torch.nn.Sequential(*blocks)
            """
        )
    )
    result = run("show", f"{model}:make")
    assert result.code == 0
    assert "0-31" in result.output and "×32" in result.output


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp: ["check", str(tmp / "missing.py:base"), spec("identical", "raw")], "does not exist"),
        (lambda tmp: ["check", spec("identical", "nope"), spec("identical", "raw")], "has no factory named 'nope'"),
        (lambda tmp: ["check", "identical", spec("identical", "raw")], "must look like"),
        (lambda tmp: ["check", "no_such_pkg.models:base", spec("identical", "raw")], "no module named"),
        (lambda tmp: ["check", str(tmp / "raising.py:base"), spec("identical", "raw")], "factory"),
        (
            lambda tmp: ["check", spec("identical", "base"), spec("identical", "raw"), "--map", str(tmp / "bad.yaml")],
            "bad.yaml:3:",
        ),
        (lambda tmp: ["diff", str(tmp / "wrong_inputs.py:base"), spec("identical", "raw")], "do not fit"),
        (
            lambda tmp: ["diff", spec("identical", "base"), spec("identical", "raw"), "--mode", "median"],
            "Invalid value",
        ),
    ],
)
def test_bad_input_is_exit_2_with_one_line(tmp_path, make_args, message) -> None:
    (tmp_path / "raising.py").write_text("def base():\n    raise RuntimeError('boom in factory')\n")
    (tmp_path / "bad.yaml").write_text("version: 1\npairs:\n  - {base: conv, raw: conv, scroe: 1}\n")
    (tmp_path / "wrong_inputs.py").write_text(
        f"import sys; sys.path.insert(0, {str(EX)!r})\n"
        "import numpy as np, identical\n"
        "def base():\n    return identical.TorchNet(), {'image': np.zeros((1, 3, 8, 8), np.float32)}\n"
    )
    result = CliRunner().invoke(main, make_args(tmp_path))
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_factory_error_shows_traceback_only_with_debug(tmp_path) -> None:
    (tmp_path / "raising.py").write_text("def base():\n    raise RuntimeError('boom in factory')\n")
    quiet = CliRunner().invoke(main, ["show", f"{tmp_path / 'raising.py'}:base"])
    assert quiet.exit_code == 2 and "boom in factory" in quiet.output and "Traceback" not in quiet.output
    loud = CliRunner().invoke(main, ["--debug", "show", f"{tmp_path / 'raising.py'}:base"])
    assert loud.exit_code == 2 and "Traceback" in loud.output


def test_console_script_and_module_entry_points() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "padiff_graph", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "suggest-map" in result.stdout


def test_demo_runs_the_whole_pipeline() -> None:
    result = run("demo")
    assert result.code == 0, result.output
    assert "demo passed" in result.output
