"""Pull the program or the JSON document out of a model completion (fenced block or bare text)."""

from __future__ import annotations

import json
import re
from typing import Any

_FENCE = re.compile(r"^[ \t]*(```+|~~~+)[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.M | re.S)
_PY_TAGS = {"python", "py", "python3", "py3", ""}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, body) of every fenced block; an unclosed last fence runs to the end (truncation)."""
    return [(m.group(2).lower(), m.group(3)) for m in _FENCE.finditer(text)]


def extract_code(completion: str) -> str:
    """The Python program in a completion.

    With fenced blocks: the last python (or untagged) block that defines something, else the last such
    block. Without fences the whole completion is taken as code."""
    blocks = [body for tag, body in fenced_blocks(completion) if tag in _PY_TAGS]
    if not blocks:
        return completion
    defining = [b for b in blocks if re.search(r"^\s*(def|class|async\s+def)\s", b, re.M)]
    return (defining or blocks)[-1]


def extract_json(completion: str, strict: bool = False) -> tuple[Any, str | None]:
    """(document, None) or (None, why not). strict: the whole completion must be the JSON document."""
    text = completion.strip()
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        if strict:
            return None, f"completion is not a JSON document: {e}"
    for tag, body in reversed(fenced_blocks(completion)):
        if tag in ("json", "", "jsonc", "json5"):
            try:
                return json.loads(body), None
            except json.JSONDecodeError:
                continue
    decoder = json.JSONDecoder()
    for m in re.finditer(r"[\[{]", text):
        try:
            doc, _ = decoder.raw_decode(text, m.start())
            return doc, None
        except json.JSONDecodeError:
            continue
    return None, "no JSON document found in the completion"
