"""Character vocabulary (torch-free: shared by training, the exporter and the on-device runtime)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rnnedge.errors import ConfigError, UnknownCharacterError

OnUnknown = Literal["error", "skip"]
_MAX_LISTED = 5


@dataclass(frozen=True)
class CharVocab:
    """A sorted set of characters; token id = index in `chars`."""

    chars: str
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.chars, str):
            raise ConfigError(f"vocabulary must be a string of characters, not {type(self.chars).__name__}")
        if not self.chars:
            raise ConfigError("vocabulary is empty")
        if len(set(self.chars)) != len(self.chars):
            raise ConfigError("vocabulary has repeated characters")
        bad = next((c for c in self.chars if "\ud800" <= c <= "\udfff"), None)
        if bad is not None:  # a lone surrogate is no character: no UTF-8 file, graph or terminal can hold it
            raise ConfigError(f"vocabulary holds {bad!r}, a lone surrogate, which is not a character")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """Build the vocabulary of every distinct character in `text`."""
        if not text:
            raise ConfigError("cannot build a vocabulary from empty text")
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: object) -> bool:
        return ch in self._index

    def encode(self, text: str, on_unknown: OnUnknown = "error") -> np.ndarray:
        """Text -> int64 ids. Unknown characters raise (naming them and their positions) or are skipped."""
        if on_unknown not in ("error", "skip"):
            raise ConfigError(f"on_unknown must be 'error' or 'skip', not {on_unknown!r}")
        index = self._index
        ids = [index.get(c, -1) for c in text]
        arr = np.fromiter(ids, dtype=np.int64, count=len(ids))
        bad = np.flatnonzero(arr < 0)
        if bad.size:
            if on_unknown == "skip":
                return arr[arr >= 0]
            raise UnknownCharacterError(describe_unknown(text, bad))
        return arr

    def decode(self, ids: np.ndarray | list[int]) -> str:
        """Ids -> text; ids outside the vocabulary raise."""
        chars = self.chars
        out = []
        for i in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            if not 0 <= i < len(chars):
                raise UnknownCharacterError(f"token id {i} is outside the vocabulary (size {len(chars)})")
            out.append(chars[i])
        return "".join(out)


def describe_unknown(text: str, positions: np.ndarray) -> str:
    """One line naming the unknown characters and where they first occur."""
    seen: dict[str, int] = {}
    for p in positions.tolist():
        seen.setdefault(text[p], p)
    listed = ", ".join(f"{c!r} at position {p}" for c, p in list(seen.items())[:_MAX_LISTED])
    more = f" and {len(seen) - _MAX_LISTED} more" if len(seen) > _MAX_LISTED else ""
    return (
        f"{len(positions)} character(s) outside the vocabulary: {listed}{more} "
        "(use on_unknown='skip' / --on-unknown skip to drop them)"
    )
