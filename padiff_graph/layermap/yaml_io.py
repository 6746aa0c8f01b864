"""Safe, line-aware parsing of layer-map YAML.

``yaml.compose`` gives nodes with their line numbers and never constructs
Python objects, so no code can run and every error can say where it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from padiff_graph.core.transforms import TensorPair
from padiff_graph.errors import LayerMapError
from padiff_graph.layermap.pairs import FORMAT_VERSION, LayerPair

_PATH = re.compile(r"^[A-Za-z0-9_.]*$")
_INIT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_FRAMEWORKS = ("", "torch", "paddle")
T = TypeVar("T")


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: Node | None, problem: str) -> LayerMapError:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return LayerMapError(f"{self.source}{line}: {problem}")

    def mapping(self, node: Node, what: str, allowed: tuple[str, ...]) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what} must be a mapping of {', '.join(allowed)}")
        result: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            if key not in allowed:
                raise self.fail(key_node, f"unknown key {key!r} in {what}; expected one of {', '.join(allowed)}")
            if key in result:
                raise self.fail(key_node, f"key {key!r} appears twice in {what}")
            result[key] = value_node
        return result

    def string(self, node: Node, what: str) -> str:
        if not isinstance(node, ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            raise self.fail(node, f"{what} must be a string")
        return str(node.value)

    def path(self, node: Node, what: str) -> str:
        value = self.string(node, what)
        if not _PATH.match(value):
            raise self.fail(node, f"{what} {value!r} is not a dotted layer path")
        return value

    def items(self, node: Node, what: str, read: Callable[[Node], T]) -> list[T]:
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return []
        if not isinstance(node, SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return [read(item) for item in node.value]

    def score(self, node: Node) -> float:
        text = self.string(node, "score")
        try:
            value = float(text)
        except ValueError:
            raise self.fail(node, f"score {text!r} is not a number") from None
        if not 0.0 <= value <= 1.0:
            raise self.fail(node, f"score {value} is outside [0, 1]")
        return value

    def tensor(self, node: Node) -> TensorPair:
        text = self.string(node, "a tensor entry")
        try:
            return TensorPair.parse(text)
        except ValueError as error:
            raise self.fail(node, str(error)) from None

    def tensor_name(self, node: Node) -> str:
        return self.string(node, "tensor name")

    def init(self, node: Node) -> str:
        value = self.string(node, "init")
        if not _INIT.match(value):
            raise self.fail(node, f"init {value!r} must name a function as package.module:function")
        return value

    def pair(self, node: Node) -> LayerPair:
        allowed = ("base", "raw", "score", "tensors", "conversion", "init", "candidates", "guessed_layouts")
        fields = self.mapping(node, "a pair", allowed)
        for required in ("base", "raw"):
            if required not in fields:
                raise self.fail(node, f"pair has no {required!r} path")
        return LayerPair(
            base=self.path(fields["base"], "base path"),
            raw=self.path(fields["raw"], "raw path"),
            score=self.score(fields["score"]) if "score" in fields else 1.0,
            tensors=tuple(self.items(fields["tensors"], "tensors", self.tensor)) if "tensors" in fields else (),
            conversion=self.string(fields["conversion"], "conversion") if "conversion" in fields else None,
            init=self.init(fields["init"]) if "init" in fields else None,
            candidates=tuple(self.items(fields["candidates"], "candidates", lambda n: self.path(n, "candidate")))
            if "candidates" in fields
            else (),
            stage="user",
            guessed_layouts=tuple(self.items(fields["guessed_layouts"], "guessed_layouts", self.tensor_name))
            if "guessed_layouts" in fields
            else (),
        )

    def sides(self, node: Node, what: str) -> tuple[list[str], list[str]]:
        fields = self.mapping(node, what, ("base", "raw"))
        read = lambda side: lambda n: self.path(n, f"{what}.{side} entry")  # noqa: E731
        base = self.items(fields["base"], f"{what}.base", read("base")) if "base" in fields else []
        raw = self.items(fields["raw"], f"{what}.raw", read("raw")) if "raw" in fields else []
        return base, raw

    def model(self, node: Node, side: str) -> tuple[str, str]:
        fields = self.mapping(node, side, ("framework", "model"))
        framework = self.string(fields["framework"], f"{side}.framework") if "framework" in fields else ""
        if framework not in _FRAMEWORKS:
            raise self.fail(fields["framework"], f"{side}.framework {framework!r} is not torch or paddle")
        model = self.string(fields["model"], f"{side}.model") if "model" in fields else ""
        return framework, model

    def document(self, text: str) -> dict[str, Any]:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise LayerMapError(f"{self.source}{line}: invalid YAML: {problem}") from None
        if root is None:
            raise LayerMapError(f"{self.source}: the file is empty; expected a layer map with 'version' and 'pairs'")
        fields = self.mapping(root, "the layer map", ("version", "base", "raw", "pairs", "unmatched", "ignore"))
        if "version" not in fields:
            raise self.fail(root, "missing 'version' (this padiff_graph writes version 1)")
        version_text = self.string(fields["version"], "version")
        if version_text != str(FORMAT_VERSION):
            raise self.fail(fields["version"], f"unsupported version {version_text!r}; expected {FORMAT_VERSION}")
        pairs = self.items(fields["pairs"], "pairs", self.pair) if "pairs" in fields else []
        self.check_unique(fields.get("pairs"), pairs)
        base_framework, base_model = self.model(fields["base"], "base") if "base" in fields else ("", "")
        raw_framework, raw_model = self.model(fields["raw"], "raw") if "raw" in fields else ("", "")
        unmatched = self.sides(fields["unmatched"], "unmatched") if "unmatched" in fields else ([], [])
        ignore = self.sides(fields["ignore"], "ignore") if "ignore" in fields else ([], [])
        return dict(
            pairs=pairs,
            unmatched_base=unmatched[0],
            unmatched_raw=unmatched[1],
            ignore_base=ignore[0],
            ignore_raw=ignore[1],
            base_framework=base_framework,
            raw_framework=raw_framework,
            base_model=base_model,
            raw_model=raw_model,
        )

    def check_unique(self, node: Node | None, pairs: list[LayerPair]) -> None:
        seen: dict[tuple[str, str], str] = {}
        for index, pair in enumerate(pairs):
            for side, path in (("base", pair.base), ("raw", pair.raw)):
                if (side, path) in seen:
                    item = node.value[index] if isinstance(node, SequenceNode) else None
                    raise self.fail(item, f"{side} layer {path!r} is paired twice (also with {seen[(side, path)]!r})")
                seen[(side, path)] = pair.raw if side == "base" else pair.base


def parse_layer_map(text: str, source: str) -> dict[str, Any]:
    """The fields of a :class:`~padiff_graph.layermap.LayerMap` in map-file text; raises :class:`LayerMapError`."""
    return _Parser(source).document(text)
