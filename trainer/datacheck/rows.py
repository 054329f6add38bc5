"""Reading an SFT JSONL file into rows, with the structural checks (parse, types, roles, turn order, text).

Accepted formats are the ones TRL's SFTTrainer takes:
- conversational: `{"messages": [{"role": ..., "content": ...}, ...]}` (every assistant turn is trained);
- prompt-completion, conversational: `{"prompt": [messages], "completion": [assistant messages]}`;
- prompt-completion, plain text: `{"prompt": "...", "completion": "..."}` (no chat template, EOS appended).
Other keys (ids, answers, metadata) are ignored. A row with any structural problem is reported and left out
of the later checks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trainer.datacheck.problems import Findings

ROLES = ("system", "user", "assistant", "tool")
Format = Literal["messages", "conversational_pc", "plain_pc"]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class Row:
    """One structurally valid example."""

    line: int
    raw: bytes
    """The line as read (what --write-clean writes back)."""
    format: Format
    messages: list[dict[str, str]]
    """The whole conversation; plain rows become [user: prompt, assistant: completion] for the text checks."""
    prompt_len: int
    """messages[:prompt_len] is the prompt: what comes before the last assistant turn (or the 'prompt' field)."""

    @property
    def prompt(self) -> list[dict[str, str]]:
        return self.messages[: self.prompt_len]

    @property
    def final_text(self) -> str:
        return self.messages[-1]["content"]

    @property
    def plain(self) -> bool:
        return self.format == "plain_pc"


class _Bad(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _messages(value: Any, field: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise _Bad("wrong_type", f"'{field}' must be a list of {{role, content}}, got {type(value).__name__}")
    if not value:
        raise _Bad("empty_content", f"'{field}' is an empty list")
    out = []
    for i, m in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(m, dict):
            raise _Bad("wrong_type", f"'{where}' must be an object, got {type(m).__name__}")
        if m.get("role") is None:
            raise _Bad("missing_role", f"'{where}' has no role")
        if m["role"] not in ROLES:
            raise _Bad("unknown_role", f"'{where}.role' = {m['role']!r} (expected one of {', '.join(ROLES)})")
        content = m.get("content")
        if not isinstance(content, str):
            raise _Bad("wrong_type", f"'{where}.content' must be a string, got {type(content).__name__}")
        out.append({"role": m["role"], "content": content})
    return out


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise _Bad("wrong_type", f"'{field}' must be a string or a list of messages, got {type(value).__name__}")
    return value


def _structure(rec: Any) -> tuple[Format, list[dict[str, str]], int]:
    if not isinstance(rec, dict):
        raise _Bad("wrong_type", f"a row must be a JSON object, got {type(rec).__name__}")
    if "messages" in rec:
        msgs = _messages(rec["messages"], "messages")
        last_assistant = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=len(msgs))
        return "messages", msgs, last_assistant
    if "prompt" in rec and "completion" in rec:
        p, c = rec["prompt"], rec["completion"]
        if isinstance(p, list) or isinstance(c, list):
            prompt, completion = _messages(p, "prompt"), _messages(c, "completion")
            bad = [m["role"] for m in completion if m["role"] != "assistant"]
            if bad:
                raise _Bad("unknown_role", f"'completion' holds a {bad[0]!r} turn (only assistant turns)")
            return "conversational_pc", prompt + completion, len(prompt)
        user, assistant = _text(p, "prompt"), _text(c, "completion")
        return "plain_pc", [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}], 1
    raise _Bad("missing_field", f"expected 'messages', or 'prompt' and 'completion' (got keys {sorted(rec)[:8]})")


def _conversation(fmt: Format, msgs: list[dict[str, str]]) -> None:
    for i, m in enumerate(msgs):
        if not m["content"].strip():
            where = ("prompt" if i == 0 else "completion") if fmt == "plain_pc" else f"message {i} ({m['role']})"
            raise _Bad("empty_content", f"{where} is empty")
        if _CONTROL.search(m["content"]):
            ch = _CONTROL.search(m["content"]).group()  # type: ignore[union-attr]
            raise _Bad("control_characters", f"message {i} ({m['role']}) holds {ch!r}")
        try:
            m["content"].encode("utf-8")
        except UnicodeEncodeError:
            raise _Bad("invalid_utf8", f"message {i} ({m['role']}) holds an unpaired surrogate") from None
        if m["role"] == "system" and i > 0:
            raise _Bad("system_not_first", f"message {i} is a system turn")
        if m["role"] == "user" and i > 0 and msgs[i - 1]["role"] == "user":
            raise _Bad("consecutive_user", f"messages {i - 1} and {i} are both user turns")
    if msgs[-1]["role"] != "assistant":
        raise _Bad("no_final_assistant", f"the last turn is {msgs[-1]['role']!r}")


def parse_line(raw: bytes, line: int) -> Row:
    """One JSONL line → Row, or _Bad naming the problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Bad("invalid_utf8", f"byte {e.start}: {e.reason}") from None
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        raise _Bad("unparseable", f"{e.msg} at column {e.colno}") from None
    fmt, msgs, prompt_len = _structure(rec)
    _conversation(fmt, msgs)
    return Row(line=line, raw=raw, format=fmt, messages=msgs, prompt_len=prompt_len)


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes without the newline) of each non-blank line."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield n, raw


def read_rows(path: Path, findings: Findings) -> tuple[list[Row], int]:
    """(structurally valid rows, number of non-blank lines); problems go to findings."""
    rows: list[Row] = []
    total = 0
    for n, raw in iter_lines(path):
        total += 1
        try:
            rows.append(parse_line(raw, n))
        except _Bad as e:
            findings.add(e.kind, n, e.detail)
    return rows, total
