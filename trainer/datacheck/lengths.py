"""Token lengths under the model's chat template, --max-len truncation, and the assistant-token share.

Truncation keeps the start of a row (TRL's default `truncation_mode="keep_start"`): a row whose assistant
tokens all lie past --max-len trains on nothing (an error); one that loses only some of them loses its
end-of-turn token too, so it teaches the model not to stop (a warning)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trainer.datacheck.problems import Findings
from trainer.datacheck.rows import Row

LOW_SHARE = 0.05
"""A row whose assistant tokens are under 5% of its tokens is flagged: the loss sees almost nothing of it."""


@dataclass
class TokenStats:
    rows: int
    min: int
    median: float
    p95: float
    max: int
    total_tokens: int
    assistant_tokens: int
    assistant_share: float
    """Share of all tokens that the loss sees (after --max-len truncation when given)."""
    max_len: int | None
    truncated_rows: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def token_checks(
    rows: list[Row], findings: Findings, tok: Any, max_len: int | None, skip: set[int],
    chat_template: str | None = None,
) -> TokenStats | None:  # fmt: skip
    """Encode the rows not in skip and report truncation and low assistant share; None when there are none."""
    from trainer.sft.encode import encode_rows

    todo = [r for r in rows if r.line not in skip]
    if not todo:
        return None
    encoded = encode_rows(tok, todo, chat_template)
    lengths = np.array([len(e.input_ids) for e in encoded])
    seen_total = 0
    seen_assistant = 0
    truncated = 0
    for r, e in zip(todo, encoded, strict=True):
        n = len(e.input_ids)
        kept = e.assistant_masks[:max_len] if max_len is not None else e.assistant_masks
        n_assistant, n_kept = sum(e.assistant_masks), sum(kept)
        seen_total += min(n, max_len) if max_len is not None else n
        seen_assistant += n_kept
        if max_len is not None and n > max_len:
            truncated += 1
            if n_kept == 0:
                lost = f"all {n_assistant}"
                findings.add("fully_truncated", r.line, f"{n} tokens; {lost} assistant tokens past {max_len}")
            elif n_kept < n_assistant:
                lost = f"{n_assistant - n_kept} of {n_assistant}"
                findings.add("partially_truncated", r.line, f"{n} tokens; {lost} assistant tokens past {max_len}")
        if n_assistant / max(n, 1) < LOW_SHARE:
            findings.add("low_assistant_share", r.line, f"{n_assistant} of {n} tokens are assistant tokens")
    return TokenStats(
        rows=len(todo), min=int(lengths.min()), median=float(np.median(lengths)),
        p95=float(np.percentile(lengths, 95)), max=int(lengths.max()), total_tokens=seen_total,
        assistant_tokens=seen_assistant, assistant_share=seen_assistant / max(seen_total, 1), max_len=max_len,
        truncated_rows=truncated,
    )  # fmt: skip
