"""Loading a map file, a dump or a checkpoint never runs code: no unrestricted unpickling,
no unsafe YAML, no eval.

A source scan keeps it so as the package grows (dumps are .npz + JSON; a
torch checkpoint may only be read with ``weights_only=True``; paddle's
``.pdparams`` pickle only through an ``Unpickler`` whose ``find_class``
allows numpy arrays alone).
"""

import re
import sys
from pathlib import Path

import pytest

from padiff_graph import LayerMap, LayerMapError

PACKAGE = Path(__file__).resolve().parent.parent / "padiff_graph"
FORBIDDEN = {
    r"\b(c?pickle|dill|cloudpickle|marshal|shelve)\.loads?\(": "unrestricted unpickling runs code on load",
    r"^\s*(import|from)\s+(dill|cloudpickle|marshal|shelve)\b": "pickle-like modules run code on load",
    r"\bpaddle\.load\(": "paddle.load unpickles; read .npz or safetensors instead",
    r"\byaml\.(load|full_load|unsafe_load|load_all)\(": "use yaml.safe_load or yaml.compose",
    r"\b(Unsafe|Full)?Loader=yaml\.(Unsafe|Full)?Loader\b": "only yaml.SafeLoader",
    r"(?<![.\w])(eval|exec)\(": "no eval/exec of text",
}


def calls(text: str, name: str) -> list[str]:
    """The argument text of each call to ``name`` (up to the matching parenthesis)."""
    found = []
    for match in re.finditer(re.escape(name) + r"\(", text):
        depth, end = 1, match.end()
        while depth and end < len(text):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        found.append(text[match.end() : end - 1])
    return found


@pytest.mark.parametrize("source", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_code_runs_on_load(source: Path) -> None:
    text = source.read_text(encoding="utf-8")
    for pattern, why in FORBIDDEN.items():
        assert not re.search(pattern, text, re.MULTILINE), f"{source.name}: {why}"
    if re.search(r"\(pickle\.Unpickler\)", text):
        assert "def find_class" in text, f"{source.name}: an Unpickler must restrict what find_class allows"
    for arguments in calls(text, "torch.load"):
        assert "weights_only=True" in arguments, f"{source.name}: torch.load needs weights_only=True"
    for name in ("np.load", "numpy.load"):
        for arguments in calls(text, name):
            assert "allow_pickle=False" in arguments, f"{source.name}: {name} needs allow_pickle=False"


def test_a_map_naming_an_init_function_imports_nothing_when_loaded() -> None:
    text = "version: 1\npairs:\n  - {base: a, raw: a, init: 'padiff_never_imported.evil:run'}\n"
    assert LayerMap.loads(text).pairs[0].init == "padiff_never_imported.evil:run"
    assert not any(name.startswith("padiff_never_imported") for name in sys.modules)


@pytest.mark.parametrize(
    "payload",
    [
        "!!python/object/apply:os.system ['echo hacked']",
        "!!python/name:os.system",
        "&a [*a]",  # a recursive alias
    ],
)
def test_yaml_tags_and_aliases_are_rejected_not_run(payload: str) -> None:
    with pytest.raises(LayerMapError):
        LayerMap.loads(f"version: 1\npairs: {payload}\n")
