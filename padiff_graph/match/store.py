"""The mapping store every matcher stage reads and extends."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Match:
    """A proposed layer pair with its confidence, ambiguity and origin."""

    base: str
    raw: str
    score: float
    stage: str
    candidates: tuple[str, ...] = ()


class MappingStore:
    """One-to-one base <-> raw layer matches."""

    def __init__(self) -> None:
        self.by_base: dict[str, Match] = {}
        self.by_raw: dict[str, Match] = {}

    def add(self, base: str, raw: str, score: float, stage: str, candidates: tuple[str, ...] = ()) -> None:
        if base in self.by_base or raw in self.by_raw:
            raise ValueError(f"{base!r} or {raw!r} is already matched")
        match = Match(base, raw, float(score), stage, candidates)  # plain floats: maps are written as YAML
        self.by_base[base] = match
        self.by_raw[raw] = match

    def remove(self, base: str) -> None:
        match = self.by_base.pop(base)
        del self.by_raw[match.raw]

    def has_base(self, path: str) -> bool:
        return path in self.by_base

    def has_raw(self, path: str) -> bool:
        return path in self.by_raw

    def raw_of(self, base: str) -> str | None:
        match = self.by_base.get(base)
        return None if match is None else match.raw

    def base_of(self, raw: str) -> str | None:
        match = self.by_raw.get(raw)
        return None if match is None else match.base

    def __len__(self) -> int:
        return len(self.by_base)
