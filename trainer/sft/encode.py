"""Token ids and the assistant-token mask of an SFT example, under the model's chat template.

TRL's `assistant_only_loss` needs `{% generation %}` markers, which most chat templates (SmolLM2's among
them) lack, so the mask is computed here and handed to SFTTrainer as the `assistant_masks` column (TRL then
builds labels = -100 outside it; padding is masked by the collator, never by pad id, which for SmolLM2 is
its EOS `<|im_end|>` — masking by pad id would teach the model never to stop).

How the mask is found: the conversation is rendered once, and each assistant turn's prefix (the
conversation before it, with the generation prompt) is rendered too; the turn is the text from the end of
that prefix through its content and the end-of-turn token (the template's trailing newline is not trained:
generation stops at EOS). Characters map to tokens through the fast tokenizer's offsets. Plain-text
prompt/completion rows are not templated: prompt + completion + EOS, with the completion and EOS trained
(what TRL does for them)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trainer.datacheck.rows import Row


class TemplateError(ValueError):
    """The chat template renders a conversation in a way the assistant mask cannot be found in."""


@dataclass
class Encoded:
    input_ids: list[int]
    assistant_masks: list[int]
    """1 for tokens the loss sees (assistant content and its end-of-turn token)."""


def _spans_chat(tok: Any, messages: list[dict[str, str]], template: str | None) -> tuple[str, list[tuple[int, int]]]:
    full = tok.apply_chat_template(messages, tokenize=False, chat_template=template)
    eos = tok.eos_token or ""
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True,
                                         chat_template=template) if i else ""  # fmt: skip
        if not full.startswith(prefix):
            raise TemplateError(f"the chat template renders turn {i} differently with and without what follows it")
        at = full.find(m["content"], len(prefix))
        if at < 0:
            raise TemplateError(f"the chat template changes the text of assistant turn {i}; cannot mask it")
        end = at + len(m["content"])
        if eos and full.startswith(eos, end):
            end += len(eos)
        spans.append((len(prefix), end))
    return full, spans


_SENTINEL = "\x00{}\x00"
"""Stands in for assistant turn i in the one-render fast path (control characters are data-check errors)."""


def _spans_sentinel(
    tok: Any, messages: list[dict[str, str]], template: str | None
) -> tuple[str, list[tuple[int, int]]]:
    """One template render instead of one per assistant turn: the assistant contents are rendered as sentinels
    and put back. Equivalent to _spans_chat for templates that insert contents verbatim and add nothing after
    the generation prompt; encode_rows checks that on sample rows before using it."""
    marked = [{**m, "content": _SENTINEL.format(i)} if m["role"] == "assistant" else m for i, m in enumerate(messages)]
    text = tok.apply_chat_template(marked, tokenize=False, chat_template=template)
    eos = tok.eos_token or ""
    parts: list[str] = []
    spans = []
    pos = length = 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        mark = _SENTINEL.format(i)
        at = text.find(mark, pos)
        if at < 0:
            raise TemplateError(f"the chat template changes the text of assistant turn {i}; cannot mask it")
        parts += [text[pos:at], m["content"]]
        start = length + at - pos
        length = start + len(m["content"])
        pos = at + len(mark)
        end = length + (len(eos) if eos and text.startswith(eos, pos) else 0)
        spans.append((start, end))
    parts.append(text[pos:])
    return "".join(parts), spans


def _fast_path_ok(tok: Any, rows: Sequence[Row], template: str | None, sample: int = 8) -> bool:
    chat = [r for r in rows if not r.plain][:sample]
    try:
        return all(_spans_sentinel(tok, r.messages, template) == _spans_chat(tok, r.messages, template) for r in chat)
    except TemplateError:
        return False


def _spans_plain(tok: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    prompt, completion = messages[0]["content"], messages[1]["content"]
    eos = tok.eos_token or ""
    if eos and not completion.endswith(eos):
        completion += eos
    return prompt + completion, [(len(prompt), len(prompt) + len(completion))]


def _mask(offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """1 for tokens that start inside a span (spans are in order and disjoint)."""
    if len(spans) == 1:
        a, b = spans[0]
        return [1 if a <= s < b else 0 for s, _ in offsets]
    starts = [a for a, _ in spans]
    out = []
    for s, _ in offsets:
        i = bisect.bisect_right(starts, s) - 1
        out.append(1 if i >= 0 and s < spans[i][1] else 0)
    return out


def encode_rows(tok: Any, rows: Sequence[Row], chat_template: str | None = None, batch: int = 1024) -> list[Encoded]:
    """Encode rows (in batches: the fast tokenizer runs them in parallel)."""
    if not getattr(tok, "is_fast", False):
        raise TemplateError("assistant masks need a fast (Rust) tokenizer for character offsets")
    spans_chat = _spans_sentinel if _fast_path_ok(tok, rows, chat_template) else _spans_chat
    # The Rust tokenizer directly: same ids and offsets as tok(...), without converting every encoding to
    # Python dicts first (a third of the check's time on 100k rows).
    backend = tok.backend_tokenizer
    out: list[Encoded] = []
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        rendered = [_spans_plain(tok, r.messages) if r.plain else spans_chat(tok, r.messages, chat_template)
                    for r in chunk]  # fmt: skip
        for (_, spans), enc in zip(rendered, backend.encode_batch([t for t, _ in rendered], add_special_tokens=False),
                                   strict=True):  # fmt: skip
            out.append(Encoded(enc.ids, _mask(enc.offsets, spans)))
    return out
