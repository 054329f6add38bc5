"""Tokenizer metadata for a GGUF file: a GPT-2-style byte-level BPE vocabulary (tokens, token types, merges),
the pre-tokenizer name llama.cpp knows, special-token ids, add-BOS/EOS flags and the chat template.

Token types follow llama.cpp's converter: an added token flagged special is CONTROL, another added token is
USER_DEFINED, the rest NORMAL. SmolLM2's <|im_start|> etc. sit inside the base vocabulary (ids 0-16), so a
writer that looks only at added-beyond-the-vocab tokens (gguf-py's BpeVocab) marks them NORMAL, and llama.cpp
then splits "<|im_start|>" into characters while transformers' GGUF reader does not notice.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gguf import GGUFWriter, SpecialVocab, TokenType


class VocabError(ValueError):
    """The tokenizer cannot be written as GGUF metadata (names the file and field)."""


@dataclass
class GgufVocab:
    tokens: list[str]
    types: list[int]
    pre: str
    special: SpecialVocab
    add_bos: bool
    add_eos: bool
    chat_template: str | None
    summary: dict[str, Any] = field(default_factory=dict)

    def add_to(self, writer: GGUFWriter) -> None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        self.special.add_to_gguf(writer, quiet=True)


def pre_tokenizer_name(tokenizer_json: dict[str, Any], where: str) -> str:
    """llama.cpp's name for the pre-tokenizer regex (it cannot read HF's pre-tokenizer description).

    Plain byte-level with the GPT-2 regex is "gpt-2"; individual digits then byte-level is "smollm"
    (SmolLM/SmolLM2's original tokenizer). Anything else is refused: a wrong name tokenizes differently."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    raise VocabError(f"{where}: pre_tokenizer {json.dumps(pre)[:200]} has no known llama.cpp name "
                     f"(supported: byte-level GPT-2 regex, individual digits + byte-level)")  # fmt: skip


def _token_types(tok: Any, n_vocab: int) -> tuple[list[str], list[int]]:
    reverse = {i: t for t, i in tok.get_vocab().items()}
    added = tok.added_tokens_decoder  # id -> AddedToken, including those inside the base vocabulary
    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            types.append(TokenType.CONTROL if added[i].special else TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(TokenType.NORMAL)
    return tokens, types


def build_vocab(tok: Any, n_vocab: int) -> GgufVocab:
    """GGUF tokenizer metadata from an HF fast tokenizer whose model is byte-level BPE."""
    with tempfile.TemporaryDirectory(prefix="rlvr-vocab-") as tmp:
        tok.save_pretrained(tmp)
        path = Path(tmp) / "tokenizer.json"
        if not path.is_file():
            raise VocabError("the tokenizer has no tokenizer.json (a fast tokenizer is required)")
        data = json.loads(path.read_text(encoding="utf-8"))
        model = data.get("model", {})
        if model.get("type") != "BPE" or model.get("byte_fallback") or (data.get("decoder") or {}).get(
            "type"
        ) != "ByteLevel":
            raise VocabError("tokenizer.json: model.type must be byte-level BPE (GPT-2 style) for GGUF export")
        pre = pre_tokenizer_name(data, "tokenizer.json")
        special = SpecialVocab(tmp, load_merges=True, n_vocab=n_vocab)
    if not special.merges:
        raise VocabError("tokenizer.json: model.merges is empty")
    if len(tok) > n_vocab:
        raise VocabError(f"the tokenizer has {len(tok)} tokens but config.vocab_size is {n_vocab}")
    tokens, types = _token_types(tok, n_vocab)
    # Written explicitly: llama.cpp's default for a BPE vocabulary is not SmolLM2's (it adds no BOS).
    probe = tok("a", add_special_tokens=True).input_ids
    add_bos = tok.bos_token_id is not None and probe[:1] == [tok.bos_token_id]
    add_eos = tok.eos_token_id is not None and probe[-1:] == [tok.eos_token_id]
    special.add_special_token = {"bos": add_bos, "eos": add_eos}
    template = tok.chat_template if isinstance(tok.chat_template, str) else None
    special.chat_template = template
    counts = {TokenType(t).name: types.count(t) for t in sorted(set(types))}
    return GgufVocab(tokens, types, pre, special, add_bos, add_eos, template,
                     {"pre": pre, "types": counts, "merges": len(special.merges)})  # fmt: skip
