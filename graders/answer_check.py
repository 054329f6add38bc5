"""The `math` grader's rule: one final-answer span of a completion against a gold answer (runs in a worker).

1. The gold is parsed first. A gold that is a number (integer, decimal, thousands separators, a fraction,
   a percentage, optionally with a currency sign or a unit: `122`, `1,000`, `-7`, `0.5`, `\\frac{1}{2}`,
   `50\\%`, `\\$18`, `5\\text{ cm}`) is a *numeric* gold. Any other gold is LaTeX (the form of MATH-style
   datasets: `3\\pi`, `\\{1, 2\\}`, `(1, 3]`, `\\sqrt{2}`) and must parse completely as LaTeX with
   math-verify's fallbacks off; a gold that does not is an invalid request, never silently reduced to a part.
2. The completion's answer span is taken by graders.extract.final_answer (last `\\boxed{}` > last "answer"
   line > last number). Nothing else in the completion is looked at. Wrapping `$...$`, `**...**` and a
   leading `x =` are removed from the span (the part after the last `=` is the answer, unless the gold
   itself is an equation).
3. Prompt restatement: when the task's prompt is given, a span that is not a plain number and appears
   verbatim in the prompt (whitespace and `$` ignored) fails unless it is written exactly as the gold is.
   So "92 + 30" for "What is 92 + 30?" is never the answer 122, even where it would evaluate to it.
4. Numeric gold: the span must be a number in the same grammar (an unevaluated `92 + 30` is not 122; a
   fraction must be in lowest terms). Both are then compared by math-verify (percentages: `50%` matches
   50 and 0.5, as math-verify decides). LaTeX gold: the span is parsed as LaTeX only (no fallback to
   extracting an expression from inside it) and compared with math-verify's `verify`; a part of the gold
   (`3` for `3\\pi`, `2` for `\\{1, 2\\}`, `3` for `(1, 3]`) does not match."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from math import gcd
from typing import Any

from graders.extract import AnswerSpan, final_answer

_INT = r"\d{1,3}(?:(?:,|\{,\}|\\,)\d{3})+|\d+"
_NUMBER = re.compile(
    r"^(?P<sign>[-+])?\s*(?:\\\$|\$|\\text\{\s*\\?\$\s*\}|£|€)?\s*(?P<sign2>[-+])?\s*"
    r"(?:\\[dt]?frac\s*\{\s*(?P<fsign>-)?\s*(?P<fn>\d+)\s*\}\s*\{\s*(?P<fd>\d+)\s*\}"
    r"|(?P<sn>\d+)\s*/\s*(?P<sd>\d+)"
    rf"|(?P<num>(?:{_INT})(?:\.\d+)?|\.\d+))"
    r"\s*(?P<pct>\\?%|\s+percent)?"
    # a unit: \text{...}, degrees, or up to three words (a space first: "5x" is not 5)
    r"(?:\s*(?:\\(?:text|mbox|mathrm)\s*\{[^{}]*\}|\^\s*\{?\\circ\}?|°)|\s+[A-Za-z]{2,}(?:\s+[A-Za-z]{2,}){0,2})?"
    r"\s*$"
)
_FRAC_SHORT = re.compile(r"\\frac\s*(\d)\s*(\d)")  # \frac12 = \frac{1}{2}
_WRAPPERS = [(r"\(", r"\)"), (r"\[", r"\]"), ("$$", "$$"), ("$", "$"), ("**", "**"), ("\\text{", "}")]
_SQUASH = re.compile(r"\s+|\$|\\left|\\right|\\[!,;: ]")


@dataclass(frozen=True)
class Number:
    """A number literal: canonical LaTeX for math-verify."""

    latex: str


def parse_number(text: str) -> Number | None:
    """The number a span or gold is written as, or None when it is anything else (an expression, a word)."""
    text = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", text.replace("−", "-").replace("\\dfrac", "\\frac"))
    m = _NUMBER.match(text.strip())
    if m is None:
        return None
    negative = (m["sign"] == "-") != (m["sign2"] == "-")
    pct = "\\%" if m["pct"] else ""
    if m["num"] is not None:
        digits = re.sub(r"\{,\}|\\,|,", "", m["num"])
        body = format(Decimal(digits), "f")
    else:
        num, den = (m["fn"], m["fd"]) if m["fn"] is not None else (m["sn"], m["sd"])
        n, d = int(num), int(den)
        if d == 0 or d == 1 or gcd(n, d) != 1:
            return None  # 4/2, 2/4, 3/1: an unreduced fraction is an unevaluated division, not a final answer
        negative ^= m["fsign"] == "-"
        body = f"\\frac{{{n}}}{{{d}}}"
    return Number(("-" if negative else "") + body + pct)


def clean_span(text: str, keep_equation: bool = False) -> str:
    """Strip `$...$`, `\\(...\\)`, `**...**`, a trailing period and (unless keep_equation) a leading `x =`."""
    s = text.strip()
    changed = True
    while changed:
        changed = False
        s = s.rstrip(" .")
        for left, right in _WRAPPERS:
            if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : -len(right)].strip()
                changed = True
    if not keep_equation and "=" in s:
        s = s.rsplit("=", 1)[1].strip()
    return s


def _squash(text: str) -> str:
    return _SQUASH.sub("", text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac"))


def restates_prompt(span: str, prompt: str, gold: str) -> bool:
    """True when the span is an expression copied from the prompt (and not written as the gold is)."""
    s = _squash(span)
    if not prompt or not s or parse_number(span) is not None:
        return False
    return s in _squash(prompt) and s != _squash(gold)


def _latex(text: str) -> list[Any]:
    """math-verify's parse of `text` as one LaTeX expression, fallbacks off (empty when it does not parse)."""
    from math_verify import LatexExtractionConfig, parse

    return list(parse(f"${text}$", extraction_config=[LatexExtractionConfig()], fallback_mode="no_fallback",
                      parsing_timeout=None))  # type: ignore[arg-type]  # fmt: skip


def _reply(ok: bool, message: str, span: AnswerSpan | None = None, gold_ok: bool = True) -> dict[str, Any]:
    return {"gold_ok": gold_ok, "match": ok, "message": message,
            "span": span.text[:200] if span else None, "source": span.source if span else None}  # fmt: skip


def check_gold(gold: str) -> tuple[Number | None, list[Any], str | None]:
    """(number, parsed, error): a numeric gold's Number, the gold parsed by math-verify, or why it cannot be."""
    text = clean_span(gold, keep_equation=True)
    number = parse_number(text)
    parsed = _latex(number.latex if number else text)
    if not parsed:
        what = "number" if number else "LaTeX expression"
        return number, [], f"the reference answer {gold[:80]!r} does not parse completely as a {what}"
    return number, parsed, None


def check(gold: str, completion: str, prompt: str = "") -> dict[str, Any]:
    """The verdict of one completion against the gold (see the module docstring)."""
    from math_verify import verify

    number, gold_parsed, error = check_gold(gold)
    if error is not None:
        return _reply(False, error, gold_ok=False)
    span = final_answer(completion)
    if span is None:
        return _reply(False, "no final answer found (no \\boxed{}, no answer line, no number)")
    text = clean_span(span.text, keep_equation="=" in gold)
    if restates_prompt(text, prompt, gold):
        return _reply(False, f"the answer {text[:80]!r} only restates the prompt", span)
    if number is not None:
        got = parse_number(text)
        if got is None:
            return _reply(False, f"the answer {text[:80]!r} is not a number (the reference is a number)", span)
        answer_parsed = _latex(got.latex)
    else:
        answer_parsed = _latex(text)
    if not answer_parsed:
        return _reply(False, f"the answer {text[:80]!r} does not parse as LaTeX", span)
    if verify(gold_parsed, answer_parsed, timeout_seconds=None):  # type: ignore[arg-type]
        return _reply(True, "", span)
    return _reply(False, f"answer {text[:80]!r} ({span.source}) does not match the reference", span)
