"""The command line as a porting engineer meets it: each side's inputs, honest errors, readable at 80 columns."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from padiff_graph.cli import main
from padiff_graph.run.numerics import Mode, compare_arrays

EX = Path(__file__).resolve().parent.parent / "examples"
ROOT = Path(__file__).resolve().parent.parent

PAIRS = textwrap.dedent(
    """
    import numpy as np
    import paddle
    import torch

    X = np.random.default_rng(0).standard_normal((2, 8), dtype=np.float32)


    class TorchNet(torch.nn.Module):
        def __init__(self, eps=1e-5):
            super().__init__()
            self.block = torch.nn.Linear(8, 8)
            self.norm = torch.nn.LayerNorm(8, eps=eps)
            self.head = torch.nn.Linear(8, 3)

        def forward(self, x):
            h = x + self.block(x)
            return self.head(self.norm(h))


    class PaddleNet(paddle.nn.Layer):
        def __init__(self, eps=1e-5, residual=True):
            super().__init__()
            self.head = paddle.nn.Linear(8, 3)  # defined in another order, as ports often are
            self.norm = paddle.nn.LayerNorm(8, epsilon=eps)
            self.block = paddle.nn.Linear(8, 8)
            self.residual = residual

        def forward(self, x):
            h = self.block(x) + x if self.residual else self.block(x)
            return self.head(self.norm(h))


    class NamedPaddleNet(PaddleNet):
        def forward(self, features):
            return super().forward(features)


    class Broken(TorchNet):
        def forward(self, x):
            y = self.head(self.norm(self.block(x)))
            return y.no_such_attribute


    def base():
        return TorchNet(), {"x": X}

    def base_model_only():
        return TorchNet()

    def base_list():
        return TorchNet(), [X]

    def raw():
        return PaddleNet(), {"x": X}

    def raw_model_only():
        return PaddleNet()

    def raw_features():
        return NamedPaddleNet(), {"features": X}

    def raw_list_scaled():
        return PaddleNet(), [X * 50]

    def raw_eps():
        return PaddleNet(eps=1e-6), {"x": X}

    def raw_no_residual():
        return PaddleNet(residual=False), {"x": X}

    def broken():
        return Broken(), {"x": X}

    def wrong_width():
        return PaddleNet(), {"x": np.zeros((2, 5), np.float32)}
    """
)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.py"
    path.write_text(PAIRS)
    return path


def invoke(*args: str, columns: int = 80):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns)})


# 1. each factory's inputs are its own model's


def test_each_factory_gives_its_own_models_inputs(pairs) -> None:
    named = invoke("diff", f"{pairs}:base", f"{pairs}:raw_features", "--json")
    assert named.exit_code == 0, named.output
    assert json.loads(named.output)["first_divergence"] is None
    scaled = invoke("diff", f"{pairs}:base_list", f"{pairs}:raw_list_scaled", "--json")
    assert scaled.exit_code == 1, scaled.output
    first = json.loads(scaled.output)["first_divergence"]
    # the raw model got its own (scaled) input: its first layer, replayed on the base's input, agrees
    assert first["base"] == "" and "the input of base 'block' / raw 'block' (call 0) differs" in first["message"]


def test_one_sides_inputs_serve_both_models(pairs) -> None:
    for base, raw in (("base", "raw_model_only"), ("base_model_only", "raw")):
        result = invoke("diff", f"{pairs}:{base}", f"{pairs}:{raw}", "--json")
        assert result.exit_code == 0, result.output


# 2. a forward error names the layer whose code raised


def test_a_forward_error_names_the_innermost_running_layer(pairs) -> None:
    result = invoke("check", f"{pairs}:broken", f"{pairs}:raw")
    assert result.exit_code == 2
    assert "forward failed in layer <root>: AttributeError" in result.output
    assert "check that the inputs" not in result.output  # not about inputs: no advice about them


def test_paddle_errors_are_one_line_with_the_input_hint(pairs) -> None:
    result = invoke("check", f"{pairs}:wrong_width", f"{pairs}:raw")
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[1].startswith("(run with --debug")
    assert "forward failed in layer 'block'" in lines[0] and "(at /paddle" not in lines[0]
    assert lines[0].endswith("check that the inputs' names, shapes and dtypes fit the model's forward")
    loud = invoke("--debug", "check", f"{pairs}:wrong_width", f"{pairs}:raw")
    assert "Traceback" in loud.output and "[Hint:" in loud.output


# 3. global options wherever they are typed


def test_global_options_before_or_after_the_subcommand(pairs) -> None:
    base, raw = f"{pairs}:base", f"{pairs}:raw"
    assert invoke("check", base, raw, "--debug", "-q").exit_code == 0
    after = invoke("check", base, raw, "--json")
    before = invoke("--json", "check", base, raw)
    assert json.loads(after.output) == json.loads(before.output)
    assert invoke("-q", "check", base, raw).output == ""
    debug_after = invoke("check", f"{pairs}:broken", raw, "--debug")
    assert debug_after.exit_code == 2 and "Traceback" in debug_after.output
    unsupported = invoke("--json", "show", base)
    assert unsupported.exit_code == 2 and "show has no --json option" in unsupported.output


# 4. exit codes: 1 for a divergence or an error finding, in check and diff alike


def test_diff_exits_1_on_an_error_finding_even_when_aligned(pairs) -> None:
    result = invoke("diff", f"{pairs}:base", f"{pairs}:raw_eps")
    assert result.exit_code == 1, result.output
    assert "LayerNorm eps differs" in result.output  # 8. the finding itself, above the run
    assert "aligned" in result.output and "1 pre-flight error(s) above remain" in result.output
    assert invoke("check", f"{pairs}:base", f"{pairs}:raw_eps", "-q").exit_code == 1
    assert not json.loads(invoke("diff", f"{pairs}:base", f"{pairs}:raw_eps", "--json").output)["ok"]


# 6. framework noise at import stays out


def test_no_framework_import_warnings_on_stderr(pairs) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "padiff_graph", "check", f"{pairs}:base", f"{pairs}:raw", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


# 7. readable at 80 and 140 columns, reordered or not


@pytest.mark.parametrize("columns", [80, 140])
def test_reordered_pairs_read_one_line_per_pair(pairs, columns) -> None:
    result = invoke("diff", f"{pairs}:base", f"{pairs}:raw", columns=columns)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert any(line.startswith("  block Linear → block") and "order-mismatch" in line for line in lines)
    assert any(line.startswith("  norm LayerNorm → norm") for line in lines)
    assert not any("other order" in line for line in lines)


def test_same_order_pairs_stay_side_by_side_when_they_fit() -> None:
    spec = f"{EX / 'wrapper_layers.py'}"
    wide = invoke("check", f"{spec}:base", f"{spec}:raw", columns=140).output.splitlines()
    assert any("base: Net (torch)" in line and "raw: Net (torch)" in line for line in wide)
    assert max(len(line) for line in wide) <= 140
    narrow = invoke("check", f"{spec}:base", f"{spec}:raw", columns=80).output.splitlines()
    table = narrow[: narrow.index(next(line for line in narrow if line.startswith("warning")))]
    assert max(len(line) for line in table) <= 80
    assert any(line.strip().startswith("→ 0-1 (×2) ModuleDict") and "wrapper" in line for line in table)


# 8. info findings only with --verbose


def test_info_findings_show_only_with_verbose() -> None:
    spec = f"{EX / 'vit.py'}"
    quiet = invoke("diff", f"{spec}:base", f"{spec}:raw", "--forward-only")
    assert quiet.exit_code == 0, quiet.output
    assert "needs-special-init" not in quiet.output and "info finding(s) not shown" in quiet.output
    verbose = invoke("diff", f"{spec}:base", f"{spec}:raw", "--forward-only", "--verbose")
    assert "info needs-special-init" in verbose.output


# 9. a layer whose input already differs points at its caller's code


def test_a_missing_residual_add_is_blamed_on_the_callers_forward(pairs) -> None:
    result = invoke("diff", f"{pairs}:base", f"{pairs}:raw_no_residual", "--json")
    assert result.exit_code == 1
    first = json.loads(result.output)["first_divergence"]
    # named at the forward that lacks the add (the root's), and why: norm's input differs, norm itself agrees
    assert (first["base"], first["stage"]) == ("", "forward")
    assert "the input of base 'norm' / raw 'norm' (call 0) differs" in first["message"]
    assert "the code in the forward of base <root> / raw <root> that computes that input differs" in first["message"]
    assert not any(c["stage"] == "input" for c in json.loads(result.output)["comparisons"])


# 10. small things


def test_the_root_is_written_root_and_html_says_where_it_went(pairs, tmp_path) -> None:
    page = tmp_path / "report.html"
    result = invoke("check", f"{pairs}:base", f"{pairs}:raw", "--html", str(page))
    assert page.exists() and f"wrote {page}" in result.output.replace("\n", "")
    assert "layer ''" not in invoke("check", f"{pairs}:broken", f"{pairs}:raw").output


def test_suggest_map_tells_wrappers_from_unmatched_layers(tmp_path) -> None:
    spec = f"{EX / 'wrapper_layers.py'}"
    result = invoke("suggest-map", f"{spec}:base", f"{spec}:raw", "-o", str(tmp_path / "map.yaml"), columns=140)
    assert "unmatched raw" not in result.output
    assert "wrapper raw: blocks.0, blocks.0.inner, blocks.1, blocks.1.inner" in result.output
    assert "nothing to do" in result.output


def test_relative_errors_ignore_values_that_are_zero_at_the_tensors_precision() -> None:
    base = np.array([1.0, -1.0, 1e-30], np.float32)
    raw = np.array([1.0, -1.0, 1e-8], np.float32)
    verdict = compare_arrays(base, raw, 0.0, 1e-6, Mode.STRICT)
    assert verdict.max_rel < 1.0
    assert compare_arrays(base, raw, 0.0, 1e-6, Mode.MEAN).max_rel < 1.0
