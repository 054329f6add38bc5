"""`regex` and `exact_match`: simple format and string graders (a `format` reward is just `regex`)."""

from __future__ import annotations

import re
import unicodedata

from graders.context import GradeContext
from graders.registry import grader
from graders.types import GradeStatus, Outcome
from graders.workers import WorkerTimeout

_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}


@grader("regex", gold=[
    {"completion": "<think>x</think><answer>4</answer>", "pattern": r"<think>.*</think>\s*<answer>.*</answer>"},
    {"completion": "Answer: 12", "pattern": r"answer:\s*\d+", "flags": "i", "mode": "search"},
])
async def regex(
    completion: str, *, pattern: str, flags: str = "s", mode: str = "fullmatch", ctx: GradeContext
) -> Outcome:
    """The completion (stripped) matches `pattern` (mode fullmatch or search; flags from "imsx")."""
    if mode not in ("fullmatch", "search"):
        return Outcome.invalid(f"mode must be 'fullmatch' or 'search', got {mode!r}")
    bad = set(flags) - set(_FLAGS)
    if bad:
        return Outcome.invalid(f"unknown regex flag(s) {''.join(sorted(bad))!r}; allowed: imsx")
    bits = 0
    for f in flags:
        bits |= _FLAGS[f]
    try:
        re.compile(pattern, bits)
    except re.error as e:
        return Outcome.invalid(f"pattern does not compile: {e}")
    args = {"pattern": pattern, "text": completion.strip(), "flags": bits, "mode": mode}
    try:  # in a killable worker: a backtracking pattern must not stall the server
        matched = await ctx.pool.call("regex", args, ctx.limits.math_timeout_s)
    except WorkerTimeout as e:
        return Outcome(0.0, GradeStatus.TIMEOUT, [], str(e))
    return Outcome.passed() if matched else Outcome.failed(f"does not {mode} the pattern")


def _normalize(text: str, case_sensitive: bool) -> str:
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    return text if case_sensitive else text.casefold()


@grader("exact_match", gold=[{"completion": "  Paris\n", "answer": "paris"}])
def exact_match(completion: str, *, answer: str | list[str], case_sensitive: bool = False) -> Outcome:
    """The completion equals the answer (or one of a list) after whitespace/Unicode normalization."""
    answers = [answer] if isinstance(answer, str) else answer
    if not answers:
        return Outcome.invalid("field 'answer' is an empty list")
    got = _normalize(completion, case_sensitive)
    if any(got == _normalize(a, case_sensitive) for a in answers):
        return Outcome.passed()
    return Outcome.failed(f"{completion.strip()[:80]!r} is not the expected answer")
