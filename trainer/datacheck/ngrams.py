"""Word tokens and n-gram hashes of raw text, shared by the near-duplicate and contamination checks.

Text is lower-cased and split into words and single punctuation marks (so "12 + 29?" is 5 tokens), the
usual unit of decontamination reports. Tokens become small ints through one vocabulary per check run, and
n-grams are hashed as int tuples: Python's hash of ints is not salted per process, so results are the same
from run to run (string hashes are salted)."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+|[^\w\s]")
_MASK32 = 0xFFFFFFFF


class Vocab:
    """word → int id, assigned in order of first appearance."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def ids(self, text: str) -> list[int]:
        ids = self._ids
        return [ids.setdefault(w, len(ids)) for w in _WORD.findall(text.lower())]

    def words(self) -> dict[int, str]:
        """id → word (to show a matched n-gram)."""
        return {v: k for k, v in self._ids.items()}


def ngram_hashes(ids: list[int], n: int) -> set[int]:
    """32-bit hashes of every n-gram (the whole sequence when shorter than n)."""
    if len(ids) <= n:
        return {hash(tuple(ids)) & _MASK32}
    return {hash(g) & _MASK32 for g in zip(*(ids[i:] for i in range(n)), strict=False)}


def ngrams(ids: list[int], n: int) -> list[tuple[int, ...]]:
    """Every n-gram of ids, in order (none when shorter than n)."""
    return list(zip(*(ids[i:] for i in range(n)), strict=False))
