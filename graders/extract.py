"""Pull the program, the JSON document or the final answer out of a model completion."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
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


# ---------------------------------------------------------------------------------------------- final answers

ANSWER_SOURCES = ("boxed", "answer_line", "last_number")
"""Where a final answer may come from, in priority order (see final_answer)."""

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
# "Answer: 41", "The answer is 41", "**Final answer:** 41", "answer = 41": the word, then a separator.
_ANSWER_LINE = re.compile(r"\banswer\b[\s*_]*(?:is\b|:|=)[\s*:]*(?P<rest>[^\n]*)", re.I)
# A number in running text: digits with optional thousands groups, decimals, a/b fraction, percent sign. A
# sign counts only where it cannot be a binary minus ("92-30" ends in 30, not -30).
_TEXT_NUMBER = re.compile(
    r"(?<![\w)\].])(?:[-−](?=\d))?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?(?![\d,]*\d)"
    r"|(?<![\w)\].])(?:[-−](?=\d))?\d+(?:\.\d+)?(?:/\d+)?%?"
)


@dataclass(frozen=True)
class AnswerSpan:
    """The one piece of a completion that is graded as its final answer, and where it came from."""

    text: str
    source: str
    """One of ANSWER_SOURCES."""


def _braced(text: str, open_at: int) -> str | None:
    """The content of the brace group whose `{` is at open_at, or None when it is never closed."""
    depth = 0
    for i in range(open_at, len(text)):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            continue
        if c == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif c == "}" and (i == 0 or text[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last complete `\\boxed{...}` (or `\\fbox{...}`), or None."""
    for m in reversed(list(_BOXED.finditer(text))):
        content = _braced(text, m.end() - 1)
        if content is not None:
            return content
    return None


def _answer_line(text: str) -> str | None:
    matches = list(_ANSWER_LINE.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    rest = m.group("rest").strip()
    if not rest:  # "Answer:" alone on its line: the answer is the next non-empty line
        following = [ln.strip() for ln in text[m.end() :].splitlines() if ln.strip()]
        rest = following[0] if following else ""
    # The sentence ends at ". " or ";" (a decimal point or a thousands comma does not end it).
    rest = re.split(r"\.\s|;|\.$", rest, maxsplit=1)[0]
    return rest.strip() or None


def final_answer(completion: str) -> AnswerSpan | None:
    """The completion's final answer, by this priority:

    1. the content of the last complete `\\boxed{...}` (or `\\fbox{...}`);
    2. else the rest of the last "answer" line ("Answer: 41", "The answer is 41.", "**Final answer:** 41";
       "Answer:" alone takes the next non-empty line), up to the end of its sentence;
    3. else the last number in the text (digits, thousands separators, decimals, a/b, a trailing %).

    None when there is none of these. Only this span is ever graded: numbers or expressions elsewhere in the
    completion (the question restated, the working) are never looked at."""
    boxed = last_boxed(completion)
    if boxed is not None and boxed.strip():
        return AnswerSpan(boxed.strip(), "boxed")
    line = _answer_line(completion)
    if line is not None:
        return AnswerSpan(line, "answer_line")
    number = last_number(completion)
    return AnswerSpan(number, "last_number") if number is not None else None


def last_number(text: str) -> str | None:
    """The last number written in the text (as written: `1,000`, `-4`, `2.5`, `3/4`, `50%`), or None."""
    numbers = _TEXT_NUMBER.findall(text)
    return numbers[-1].replace("−", "-") if numbers else None
