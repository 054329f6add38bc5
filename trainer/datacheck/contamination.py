"""Contamination against a held-out file: a training row is contaminated when one of its message contents
shares a 13-token n-gram with a held-out item, or contains a short held-out item (< 13 tokens) whole.

Held-out items are the raw strings of each held-out row: message contents and the prompt / completion /
question / answer / solution fields, so task files (prompt + answer) and SFT files both work. N-grams (and
short items) found in more than 1% of the held-out rows are boilerplate (instructions, answer formats) and
ignored; one held-out row is never boilerplate by itself. Short items of fewer than MIN_WHOLE tokens (a bare
number, "Answer: 41") are too common to be evidence and are not matched whole."""

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
    short: dict[int, dict[tuple[int, ...], int]] = field(default_factory=lambda: defaultdict(dict))
    """first token → {whole short item → held-out line}."""
    ignored: int = 0
    """Distinct n-grams / short items dropped as boilerplate."""


def load_held_out(path: Path, vocab: Vocab) -> HeldOut:
    seen: Counter[tuple[int, ...]] = Counter()
    where: dict[tuple[int, ...], int] = {}
    short: set[tuple[int, ...]] = set()
    out = HeldOut()
    for n, raw in iter_lines(path):
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HeldOutError(f"{path}:{n}: not a JSON line ({e})") from None
        out.rows += 1
        row_grams: set[tuple[int, ...]] = set()
        for text in _strings(rec):
            ids = vocab.ids(text)
            if len(ids) >= N:
                row_grams.update(ngrams(ids, N))
            elif len(ids) >= MIN_WHOLE:
                row_grams.add(tuple(ids))
                short.add(tuple(ids))
        seen.update(row_grams)
        for g in row_grams:
            where.setdefault(g, n)
    limit = max(1.0, BOILERPLATE_SHARE * out.rows)
    for g, count in seen.items():
        if count > limit:
            out.ignored += 1
        elif g in short:
            out.short[g[0]][g] = where[g]
        else:
            out.grams[g] = where[g]
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


def contamination(rows: list[Row], findings: Findings, held: HeldOut, vocab: Vocab, skip: set[int]) -> None:
    """Report every training row that overlaps the held-out set (with the shared text and held-out line)."""
    words = vocab.words()
    for r in rows:
        if r.line in skip:
            continue
        for m in r.messages:
            hit = _match(vocab.known_ids(m["content"]), held)
            if hit is not None:
                text = " ".join(words.get(t, "?") for t in hit[0])
                findings.add("contamination", r.line, f"{m['role']} text shares {text!r} with held-out line {hit[1]}")
                break
