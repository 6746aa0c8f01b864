"""The layer map: which base layer is which raw layer, and how tensors move.

It is the matcher's output and a file people edit. The YAML format
(``docs/layer-map.md``)::

    version: 1
    base: {framework: torch, model: Net}
    raw: {framework: paddle, model: Net}
    pairs:
      - base: encoder.fc
        raw: backbone.fc
        score: 0.93
        tensors:
          - "weight -> weight: transpose"
          - "bias -> bias"
    unmatched: {base: [aux_head], raw: []}
    ignore: {base: [], raw: []}

Loading parses with ``yaml.compose`` (safe, no code runs) and validates every
field, so an error names the line and the problem.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from padiff_graph.core.atomic import write_atomically
from padiff_graph.core.transforms import TensorPair
from padiff_graph.core.tree import is_within
from padiff_graph.errors import LayerMapError
from padiff_graph.layermap.pairs import FORMAT_VERSION, LayerPair
from padiff_graph.layermap.yaml_io import parse_layer_map


@dataclass
class LayerMap:
    """The full correspondence between a base and a raw model."""

    pairs: list[LayerPair]
    unmatched_base: list[str] = field(default_factory=list)
    unmatched_raw: list[str] = field(default_factory=list)
    ignore_base: list[str] = field(default_factory=list)
    ignore_raw: list[str] = field(default_factory=list)
    base_framework: str = ""
    raw_framework: str = ""
    base_model: str = ""
    raw_model: str = ""
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self._by_base = {pair.base: pair for pair in self.pairs}
        self._by_raw = {pair.raw: pair for pair in self.pairs}

    def raw_of(self, base_path: str) -> str | None:
        pair = self._by_base.get(base_path)
        return None if pair is None else pair.raw

    def base_of(self, raw_path: str) -> str | None:
        pair = self._by_raw.get(raw_path)
        return None if pair is None else pair.base

    def pair_for_base(self, base_path: str) -> LayerPair | None:
        return self._by_base.get(base_path)

    def ignores(self, base: str | None = None, raw: str | None = None) -> bool:
        """Whether a base or raw layer lies under an ``ignore`` entry (which covers its whole subtree)."""
        return (base is not None and any(is_within(base, root) for root in self.ignore_base)) or (
            raw is not None and any(is_within(raw, root) for root in self.ignore_raw)
        )

    def active_pairs(self) -> list[LayerPair]:
        """The pairs neither of whose layers is ignored: what is copied and compared."""
        return [pair for pair in self.pairs if not self.ignores(pair.base, pair.raw)]

    def tensor_pairs(self) -> Iterator[TensorPair]:
        """Every tensor pair by full dotted names, in pair order."""
        for pair in self.pairs:
            for tensor_pair in pair.tensors:
                yield tensor_pair.prefixed(pair.base, pair.raw)

    def as_dict(self) -> dict[str, Any]:
        """The plain-data form written to YAML and JSON."""
        pairs = []
        for pair in self.pairs:
            entry: dict[str, Any] = {"base": pair.base, "raw": pair.raw, "score": round(pair.score, 3)}
            if pair.tensors:
                entry["tensors"] = [tensor.describe() for tensor in pair.tensors]
            if pair.conversion:
                entry["conversion"] = pair.conversion
            if pair.init:
                entry["init"] = pair.init
            if pair.candidates:
                entry["candidates"] = list(pair.candidates)
            if pair.guessed_layouts:
                entry["guessed_layouts"] = list(pair.guessed_layouts)
            pairs.append(entry)
        return {
            "version": self.version,
            "base": {"framework": self.base_framework, "model": self.base_model},
            "raw": {"framework": self.raw_framework, "model": self.raw_model},
            "pairs": pairs,
            "unmatched": {"base": list(self.unmatched_base), "raw": list(self.unmatched_raw)},
            "ignore": {"base": list(self.ignore_base), "raw": list(self.ignore_raw)},
        }

    def dumps(self) -> str:
        header = (
            "# padiff_graph layer map (docs/layer-map.md). Edit freely: fix a pair's raw path,\n"
            "# add 'init: package.module:function', or list one-sided layers under 'ignore'.\n"
        )
        return header + yaml.safe_dump(self.as_dict(), sort_keys=False, width=120)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the YAML file atomically (temporary file, then rename)."""
        write_atomically(Path(path), self.dumps())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LayerMap:
        """Read and validate a map file.

        Raises:
            LayerMapError: the file is missing or malformed; the message names the line.
        """
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as error:
            raise LayerMapError(f"cannot read layer map {file}: {error.strerror or error}") from None
        except UnicodeDecodeError:
            raise LayerMapError(f"{file}: not a text file (expected UTF-8 YAML)") from None
        return cls.loads(text, source=str(file))

    @classmethod
    def loads(cls, text: str, source: str = "<layer map>") -> LayerMap:
        """Parse and validate map-file text (``source`` names it in errors).

        Raises:
            LayerMapError: the text is not a valid layer map; the message names the line.
        """
        return cls(**parse_layer_map(text, source))

    def with_pairs(self, pairs: Sequence[LayerPair]) -> LayerMap:
        return LayerMap(
            pairs=list(pairs),
            unmatched_base=self.unmatched_base,
            unmatched_raw=self.unmatched_raw,
            ignore_base=self.ignore_base,
            ignore_raw=self.ignore_raw,
            base_framework=self.base_framework,
            raw_framework=self.raw_framework,
            base_model=self.base_model,
            raw_model=self.raw_model,
        )
