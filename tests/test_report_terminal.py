"""Terminal reports on real models: thousands of layers stay readable, both trees side by side."""

import textwrap

from click.testing import CliRunner

from padiff_graph.cli import main

# 200 blocks of 11 layers, built without memory: 2,203 layers per model
BIG_MODELS = textwrap.dedent(
    """
    import paddle, torch

    class TorchBlock(torch.nn.Module):
        def __init__(self, d):
            super().__init__()
            self.q, self.k, self.v, self.o = (torch.nn.Linear(d, d) for _ in range(4))
            self.n1, self.n2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))

    class PaddleBlock(paddle.nn.Layer):
        def __init__(self, d):
            super().__init__()
            self.q, self.k, self.v, self.o = (paddle.nn.Linear(d, d) for _ in range(4))
            self.n1, self.n2 = paddle.nn.LayerNorm(d), paddle.nn.LayerNorm(d)
            self.mlp = paddle.nn.Sequential(paddle.nn.Linear(d, 4 * d), paddle.nn.GELU(), paddle.nn.Linear(4 * d, d))

    def base():
        with torch.device("meta"):
            model = torch.nn.Module()
            model.embed = torch.nn.Embedding(32000, 4096)
            model.layers = torch.nn.ModuleList([TorchBlock(4096) for _ in range(200)])
        return model

    def raw():
        with paddle.LazyGuard():
            model = paddle.nn.Layer()
            model.embed = paddle.nn.Embedding(32000, 4096)
            model.layers = paddle.nn.LayerList([PaddleBlock(4096) for _ in range(200)])
        return model
    """
)


def test_check_and_show_collapse_a_few_thousand_layers(tmp_path) -> None:
    (tmp_path / "big.py").write_text(BIG_MODELS)
    base, raw = f"{tmp_path / 'big.py'}:base", f"{tmp_path / 'big.py'}:raw"
    page = tmp_path / "big.html"
    check = CliRunner().invoke(main, ["check", base, raw, "--html", str(page)], env={"COLUMNS": "160"})
    assert check.exit_code == 0, check.output
    html = page.read_text()
    assert html.count('class="row ') < 40 and html.count("×200") == 2  # the HTML page collapses the same way
    rows = [line for line in check.output.splitlines() if "─" in line and "Linear" in line]
    assert len(rows) == 6  # q, k, v, o and the MLP's two Linears: once, not once per block
    block_row = next(line for line in check.output.splitlines() if "(×200)" in line)
    assert block_row.count("0-199 (×200)") == 2  # both sides collapse to one row
    show = CliRunner().invoke(main, ["show", raw], env={"COLUMNS": "160"})
    assert show.exit_code == 0 and "0-199 (×200)" in show.output and len(show.output.splitlines()) < 20


def test_check_shows_both_trees_with_why_a_layer_is_unpaired() -> None:
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    spec = f"{examples}/wrapper_layers.py"
    result = CliRunner().invoke(main, ["check", f"{spec}:base", f"{spec}:raw"], env={"COLUMNS": "160"})
    lines = result.output.splitlines()
    assert any("base: Net (torch)" in line and "raw: Net (torch)" in line for line in lines)
    assert any("0-1 (×2) ModuleDict  wrapper" in line for line in lines)
    paired = next(line for line in lines if "0-1 (×2) Block" in line)
    assert "─" in paired and "body Block" in paired
