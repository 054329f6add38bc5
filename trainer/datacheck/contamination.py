"""Contamination against a held-out file: a training row is contaminated when one of its message contents
shares a 13-token n-gram with a held-out item, or contains a short held-out item (< 13 tokens) whole.

Held-out items are the raw strings of each held-out row: message contents and the prompt / completion /
question / answer / solution fields, so task files (prompt + answer) and SFT files both work. N-grams (and
short items) found in more than 1% of the held-out rows are boilerplate (instructions, answer formats) and
ignored: boilerplate is every word 5-gram found in more than 1% of the held-out rows (and in more than one),
and what it covers is cut out of each held-out item before its 13-grams are taken. A templated question
"<instruction> 3 - 4 - 5 = <format rule>" thus contributes "3 - 4 - 5", matched whole; without the cut, its
13-grams would mix the instruction with the first numbers and flag every training question that merely starts
the same way. Items (or what is left of them) of fewer than MIN_WHOLE tokens — a bare number, "3 - 4" — are
too common to be evidence and are not matched."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.datacheck.ngrams import Vocab, ngrams
from trainer.datacheck.problems import Findings
from trainer.datacheck.rows import Row, iter_lines

N = 13
MIN_WHOLE = 5
BOILER_N = 5
"""Boilerplate is found as word 5-grams: short enough to cover an instruction right up to the problem text."""
BOILERPLATE_SHARE = 0.01
_TEXT_FIELDS = ("prompt", "completion", "question", "answer", "solution")


class HeldOutError(ValueError):
    """The held-out file cannot be read (names the file:line)."""


def _strings(rec: Any) -> Iterator[str]:
    if not isinstance(rec, dict):
        return
    for m in rec.get("messages") or []:
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            yield m["content"]
    for key in _TEXT_FIELDS:
        value = rec.get(key)
        if isinstance(value, str):
            yield value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield str(value)
        elif isinstance(value, list):
            yield from (m["content"] for m in value if isinstance(m, dict) and isinstance(m.get("content"), str))


@dataclass
class HeldOut:
    """The held-out n-grams and short items, boilerplate removed, with the held-out line of each."""

    rows: int = 0
    grams: dict[tuple[int, ...], int] = field(default_factory=dict)
    """13-gram → the first held-out line holding it."""
    short: dict[int, dict[tuple[int, ...], int]] = field(default_factory=lambda: defaultdict(dict))
    """first token → {whole short item → held-out line}."""
    ignored: int = 0
    """Distinct boilerplate 5-grams cut out."""


def _segments(ids: list[int], boiler: set[tuple[int, ...]]) -> list[list[int]]:
    """The runs of ids not covered by any boilerplate BOILER_N-gram."""
    covered = [False] * len(ids)
    for i, g in enumerate(ngrams(ids, BOILER_N)):
        if g in boiler:
            covered[i : i + BOILER_N] = [True] * BOILER_N
    out: list[list[int]] = []
    cur: list[int] = []
    for t, c in zip(ids, covered, strict=True):
        if c:
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(t)
    if cur:
        out.append(cur)
    return out


def load_held_out(path: Path, vocab: Vocab) -> HeldOut:
    items: list[tuple[int, list[list[int]]]] = []
    freq: Counter[tuple[int, ...]] = Counter()
    for n, raw in iter_lines(path):
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HeldOutError(f"{path}:{n}: not a JSON line ({e})") from None
        texts = [vocab.ids(t) for t in _strings(rec)]
        items.append((n, texts))
        freq.update({g for ids in texts for g in ngrams(ids, BOILER_N)})
    out = HeldOut(rows=len(items))
    limit = max(1.0, BOILERPLATE_SHARE * out.rows)
    boiler = {g for g, count in freq.items() if count > limit}
    out.ignored = len(boiler)
    for n, texts in items:
        for ids in texts:
            for seg in _segments(ids, boiler) if boiler else [ids]:
                if len(seg) >= N:
                    for g in ngrams(seg, N):
                        out.grams.setdefault(g, n)
                elif len(seg) >= MIN_WHOLE:
                    out.short[seg[0]].setdefault(tuple(seg), n)
    return out


def _match(ids: list[int], held: HeldOut) -> tuple[tuple[int, ...], int] | None:
    for g in ngrams(ids, N):
        if g in held.grams:
            return g, held.grams[g]
    for i, t in enumerate(ids):
        for item, line in held.short.get(t, {}).items():
            if tuple(ids[i : i + len(item)]) == item:
                return item, line
    return None


def contamination(
    rows: list[Row], findings: Findings, held: HeldOut, vocab: Vocab, skip: set[int], words: dict[int, list[list[int]]]
) -> None:
    """Report every training row that overlaps the held-out set (with the shared text and held-out line).
    words: line → word ids of each message, from the vocab the held-out set was read with."""
    names = vocab.words()
    for r in rows:
        if r.line in skip:
            continue
        for m, ids in zip(r.messages, words[r.line], strict=True):
            hit = _match(ids, held)
            if hit is not None:
                text = " ".join(names.get(t, "?") for t in hit[0])
                findings.add("contamination", r.line, f"{m['role']} text shares {text!r} with held-out line {hit[1]}")
                break
