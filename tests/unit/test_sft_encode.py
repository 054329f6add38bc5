"""Assistant-only masks on the real SmolLM2 chat template (no {% generation %} markers; pad = EOS): exactly the
assistant contents and their <|im_end|> are trained, for every format; nothing is masked by pad id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trainer.datacheck.rows import parse_line
from trainer.sft.encode import TemplateError, _spans_chat, _spans_sentinel, encode_rows


@pytest.fixture(scope="module")
def tok(base_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_model_dir))


def rows(*records: dict[str, Any]) -> list[Any]:
    return [parse_line(json.dumps(r).encode(), i + 1) for i, r in enumerate(records)]


def trained_segments(tok: Any, ids: list[int], mask: list[int]) -> list[str]:
    """Decoded runs of consecutive trained tokens."""
    out, cur = [], []
    for i, m in zip(ids, mask, strict=True):
        if m:
            cur.append(i)
        elif cur:
            out.append(tok.decode(cur))
            cur = []
    if cur:
        out.append(tok.decode(cur))
    return out


def test_template_is_the_real_one(tok: Any) -> None:
    assert "{% generation %}" not in tok.chat_template and tok.pad_token == tok.eos_token == "<|im_end|>"


def test_multi_turn_messages_train_every_assistant_turn_with_its_eos(tok: Any) -> None:
    (e,) = encode_rows(tok, rows({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "2 + 3 = 5\nAnswer: 5"}, {"role": "user", "content": "And 4+4?"},
        {"role": "assistant", "content": "Answer: 8"}]}))  # fmt: skip
    assert trained_segments(tok, e.input_ids, e.assistant_masks) == ["2 + 3 = 5\nAnswer: 5<|im_end|>",
                                                                     "Answer: 8<|im_end|>"]  # fmt: skip
    eos = tok.eos_token_id
    # <|im_end|> (= pad id) occurs 5 times; only the two ending assistant turns are trained.
    eos_masks = [m for i, m in zip(e.input_ids, e.assistant_masks, strict=True) if i == eos]
    assert eos_masks == [0, 0, 1, 0, 1]


def test_ids_equal_the_templated_tokenisation(tok: Any) -> None:
    msgs = [{"role": "user", "content": "What is 12 + 29?"},
            {"role": "assistant", "content": "12 + 29 = 41\nAnswer: 41"}]
    (e,) = encode_rows(tok, rows({"messages": msgs}))
    assert e.input_ids == tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
    assert tok.decode(e.input_ids[-2:]) == "<|im_end|>\n" and e.assistant_masks[-2:] == [1, 0]


def test_prompt_completion_formats(tok: Any) -> None:
    conv, plain = encode_rows(tok, rows(
        {"prompt": [{"role": "user", "content": "Name a colour."}],
         "completion": [{"role": "assistant", "content": "Blue."}]},
        {"prompt": "Q: 2+2=", "completion": " 4"}))  # fmt: skip
    assert trained_segments(tok, conv.input_ids, conv.assistant_masks) == ["Blue.<|im_end|>"]
    assert trained_segments(tok, plain.input_ids, plain.assistant_masks) == [" 4<|im_end|>"]
    assert tok.decode(plain.input_ids).startswith("Q: 2+2=")  # plain text: no chat template


def test_template_that_rewrites_content_is_refused(tok: Any) -> None:
    upper = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | upper }}<|im_end|>\n{% endfor %}"
    with pytest.raises(TemplateError, match="changes the text of assistant turn 1"):
        msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "abc"}]
        encode_rows(tok, rows({"messages": msgs}), chat_template=upper)


def test_one_render_fast_path_equals_the_per_turn_renders(tok: Any) -> None:
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "say 8"},
            {"role": "assistant", "content": "8"}, {"role": "user", "content": "8 again"},
            {"role": "assistant", "content": "8\nAnswer: 8"}]  # fmt: skip
    assert _spans_sentinel(tok, msgs, None) == _spans_chat(tok, msgs, None)
    # A generation prompt the rendered turn does not start with: the fast path would not notice, the per-turn
    # renders do, and encode_rows refuses rather than mask the wrong tokens.
    think = tok.chat_template.replace("{{ '<|im_start|>assistant\n' }}", "{{ '<|im_start|>assistant\n<think>' }}")
    with pytest.raises(TemplateError, match="renders turn 2 differently"):
        _spans_chat(tok, msgs[:3], think)
    with pytest.raises(TemplateError):
        encode_rows(tok, rows({"messages": msgs[1:3]}), chat_template=think)
