"""--json output against the JSON Schema shipped in the package (docs/json.md)."""

import json

import pytest
from click.testing import CliRunner
from conftest import EXAMPLES

from padiff_graph.cli import main
from padiff_graph.report.document import schema

jsonschema = pytest.importorskip("jsonschema")  # a dev dependency; make test installs it


@pytest.fixture(scope="module")
def validator():
    jsonschema.Draft202012Validator.check_schema(schema())
    return jsonschema.Draft202012Validator(schema())


@pytest.mark.parametrize(
    ("command", "example", "code", "options"),
    [
        ("check", "extra_layer", 1, []),
        ("check", "param_vs_embedding", 0, []),
        ("diff", "gelu_fault", 1, []),
        ("diff", "conv_bn", 0, []),
        ("diff", "gelu_fault", 1, ["--single-step"]),  # input stages and every divergence
        ("check", "tied_head", 0, []),  # tied-weights
        ("diff", "extra_layer", 1, []),  # the root holds a layer the raw model lacks, never called: compared
        ("diff", "fused_projections", 0, []),  # fused layers against their parts, containers paired by contents
    ],
)
def test_cli_json_validates(validator, command, example, code, options) -> None:
    spec = EXAMPLES / f"{example}.py"
    result = CliRunner().invoke(main, [command, f"{spec}:base", f"{spec}:raw", "--json", *options])
    assert result.exit_code == code, result.output
    document = json.loads(result.output)
    validator.validate(document)
    if "--single-step" in options:
        assert {c["stage"] for c in document["comparisons"]} >= {"input", "forward", "loss", "backward"}
    if command == "diff" and example == "extra_layer":
        assert document["not_compared"] == []
        assert ("", "") in {(c["base"], c["raw"]) for c in document["comparisons"]}
    if command == "diff":
        assert {
            (layer["base"], layer["raw"]) for layer in document["layers"] if "{" not in layer["base"] + layer["raw"]
        } <= {(pair["base"], pair["raw"]) for pair in document["layer_map"]["pairs"]}


def test_the_schema_rejects_what_it_does_not_describe(validator) -> None:
    bad = {"schema": 1, "kind": "check", "ok": "yes", "findings": [], "layer_map": {}}
    assert not validator.is_valid(bad)


def test_the_schema_knows_every_finding_code() -> None:
    """A new finding code must be added to the schema, or every --json output holding one is invalid."""
    from padiff_graph.core.findings import Code

    def enums(node: object) -> list[list[str]]:
        if isinstance(node, dict):
            found = [node["enum"]] if isinstance(node.get("enum"), list) else []
            return found + [enum for value in node.values() for enum in enums(value)]
        if isinstance(node, list):
            return [enum for value in node for enum in enums(value)]
        return []

    (codes,) = [enum for enum in enums(schema()) if "order-mismatch" in enum]
    assert set(codes) == {code.value for code in Code}
