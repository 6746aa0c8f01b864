"""The progress hook: silent by default, reports the long steps when a reporter listens."""

from click.testing import CliRunner
from conftest import load_example

import padiff_graph as pg
from padiff_graph.cli import main
from padiff_graph.core.progress import reporting, task


class Recorder:
    def __init__(self) -> None:
        self.started: list[tuple[str, int | None]] = []
        self.steps: dict[str, int] = {}
        self.open = 0

    def start(self, description: str, total: int | None) -> object:
        self.started.append((description, total))
        self.steps[description] = 0
        self.open += 1
        return description

    def advance(self, handle: object, steps: int) -> None:
        self.steps[str(handle)] += steps

    def finish(self, handle: object) -> None:
        self.open -= 1


def test_tasks_are_silent_without_a_reporter(capsys) -> None:
    """Library code announces work freely: with no reporter installed nothing is shown or kept."""
    listening = Recorder()
    with reporting(listening):
        pass  # a reporter installed and gone again leaves none behind
    with task("nothing listens", total=3) as advance:
        advance()
        advance(2)
    assert listening.started == [] and capsys.readouterr() == ("", "")


def test_a_diff_reports_export_matching_and_each_comparison() -> None:
    example = load_example("gelu_fault")
    base, inputs = example.base()
    raw, _ = example.raw()
    recorder = Recorder()
    with reporting(recorder):
        report = pg.diff(base, raw, inputs)
    described = [description for description, _ in recorder.started]
    assert "tracing both models" in described and "matching layers" in described
    compared = "running the raw model, comparing layer by layer"
    total = dict(recorder.started)[compared]
    forward_and_backward = sum(not c.stage.startswith("grad") for c in report.comparisons)
    assert recorder.steps[compared] >= forward_and_backward > 0 and "running the base model" in described
    # a torch model running beside a paddle one (core.runtime.run_sides) leaves the bar without a total:
    # the base records are still coming
    assert total is None or total >= recorder.steps[compared]
    assert recorder.open == 0


def test_quiet_prints_nothing_and_keeps_the_exit_code(tmp_path) -> None:
    ex = load_example("gelu_fault").__file__
    result = CliRunner().invoke(main, ["diff", f"{ex}:base", f"{ex}:raw", "--quiet"])
    assert result.exit_code == 1 and result.output == ""
    result = CliRunner().invoke(main, ["check", f"{ex}:base", f"{ex}:raw", "-q"])
    assert result.exit_code == 1 and result.output == ""
