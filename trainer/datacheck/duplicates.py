"""Exact, near and conflicting duplicates.

- exact: the same conversation (roles and contents) as an earlier row;
- near: estimated Jaccard similarity of word 3-gram shingles >= threshold with an earlier kept row
  (datasketch MinHash + LSH; the estimate is re-checked on the LSH candidates);
- conflicting: the same prompt as another row but a different final answer (the answer is extracted from
  the final assistant turn; several different solutions with the same final answer are not a conflict).
  Every row of a conflicting prompt is reported: which answer is right cannot be told from the data."""

from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np

from trainer.datacheck.ngrams import ngram_hashes
from trainer.datacheck.problems import Findings
from trainer.datacheck.rows import Row

NUM_PERM = 64
SHINGLE = 3
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
_MARKED = re.compile(r"(?:^|\n)\s*(?:####|(?:final\s+)?answer\s*[:：])\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_answer(text: str) -> str:
    """The final answer of a solution: the last \\boxed{}, else the last `Answer: x` / `#### x` line, else the
    last number, else the whole text; normalised (case, spaces, thousands separators, trailing period)."""
    found = _BOXED.findall(text) or _MARKED.findall(text) or _NUMBER.findall(text) or [text]
    ans = found[-1].strip().rstrip(".").strip().lower()
    if _NUMBER.fullmatch(ans):
        ans = ans.replace(",", "")
    return " ".join(ans.split())


def _key(messages: list[dict[str, str]]) -> str:
    return json.dumps([(m["role"], m["content"]) for m in messages], ensure_ascii=False)


def exact_duplicates(rows: list[Row], findings: Findings) -> set[int]:
    """Report rows repeating an earlier row; returns their lines."""
    first: dict[tuple[bool, str], int] = {}
    dups = set()
    for r in rows:
        k = (r.plain, _key(r.messages))
        if k in first:
            findings.add("exact_duplicate", r.line, f"same as line {first[k]}")
            dups.add(r.line)
        else:
            first[k] = r.line
    return dups


def conflicting_duplicates(rows: list[Row], findings: Findings, skip: set[int]) -> None:
    """Report every row whose prompt also appears with a different final answer."""
    groups: dict[tuple[bool, str], list[Row]] = defaultdict(list)
    for r in rows:
        if r.line not in skip:
            groups[(r.plain, _key(r.prompt))].append(r)
    for group in groups.values():
        answers = {r.line: final_answer(r.final_text) for r in group}
        if len(set(answers.values())) < 2:
            continue
        for r in group:
            other = next(o for o in group if answers[o.line] != answers[r.line])
            findings.add("conflicting_duplicate", r.line,
                         f"prompt also at line {other.line}; final answer {answers[r.line]!r} vs "
                         f"{answers[other.line]!r}")  # fmt: skip


def near_duplicates(
    rows: list[Row], findings: Findings, skip: set[int], threshold: float, words: dict[int, list[list[int]]]
) -> None:
    """Report rows whose shingles are >= threshold similar (estimated Jaccard) to an earlier kept row.
    words: line → word ids of each message (ngrams.Vocab)."""
    from datasketch import MinHash, MinHashLSH

    todo = [r for r in rows if r.line not in skip]
    shingles = [ngram_hashes([t for ids in words[r.line] for t in ids], SHINGLE) for r in todo]
    # hashfunc=int: the shingles are already 32-bit hashes, which skips datasketch's per-item sha1.
    sketches = MinHash.bulk(shingles, num_perm=NUM_PERM, hashfunc=int)
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    kept: dict[int, np.ndarray] = {}
    for r, m in zip(todo, sketches, strict=True):
        cands = lsh.query(m)
        if cands:
            # The estimate for all candidates at once (what MinHash.jaccard computes one pair at a time).
            sims = (np.stack([kept[c] for c in cands]) == m.hashvalues).mean(axis=1)
            best = int(sims.argmax())
            if sims[best] >= threshold:
                findings.add("near_duplicate", r.line, f"~{sims[best]:.2f} similar to line {cands[best]}")
                continue
        lsh.insert(r.line, m)
        kept[r.line] = m.hashvalues
