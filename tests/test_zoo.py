"""benchmarks/zoo.py: the zoo's cases and PaDiff's definition-order baseline."""

import subprocess
import sys

from conftest import CASES, EXAMPLES, literal_tree

from benchmarks.zoo import cases, definition_order_pairs, example_names

LIN = [("weight", (16, 8)), ("bias", (16,))]
SQUARE = [("weight", (8, 8)), ("bias", (8,))]


def test_definition_order_zips_parameter_layers_in_preorder() -> None:
    base = literal_tree(
        [("", "MyNet"), ("a", "Linear", SQUARE), ("act", "ReLU"), ("b", "MyBlock"), ("b.fc", "Linear", LIN)]
    )
    raw = literal_tree(
        [("", "MyNet"), ("b", "MyBlock"), ("b.fc", "Linear", LIN), ("a", "Linear", SQUARE), ("extra", "Linear", LIN)],
        "paddle",
    )
    assert definition_order_pairs(base, raw) == {"a": "b.fc", "b.fc": "a"}


def test_cases_cover_every_example_and_variant() -> None:
    zoo = list(cases())
    assert [case.name for case in zoo] == [case.id for case in CASES]
    assert all(case.expected_pairs for case in zoo)
    assert set(example_names()) == {case.name for case in CASES}


def test_zoo_imports_no_framework_until_a_case_is_reached() -> None:
    code = "import sys, benchmarks.zoo; print('torch' in sys.modules or 'paddle' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=EXAMPLES.parent
    )
    assert result.stdout.strip() == "False"
