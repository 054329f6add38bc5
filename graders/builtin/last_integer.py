"""`last_integer`: the canonical checker of integer-answer tasks (e.g. addition): the last number of the
completion is an integer equal to the reference.

Numbers are read as in graders.extract (digits with optional thousands groups `1,000`, decimals, a sign
where it cannot be a binary minus). Only the last one counts; a decimal there (`122.5`) is not an integer
and fails. Nothing is evaluated: "92 + 30" ends in 30, not 122. Meant as an independent strict scorer for
held-out evaluation, and usable as a reward."""

from __future__ import annotations

import re

from graders.extract import last_number
from graders.registry import grader
from graders.types import Outcome

_INTEGER = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+|[-+]?\d+")


def _as_int(text: str) -> int | None:
    text = text.strip().replace("−", "-")
    return int(text.replace(",", "")) if _INTEGER.fullmatch(text) else None


@grader("last_integer", gold=[
    {"completion": "92 + 30 = 122", "answer": "122"},
    {"completion": "122", "answer": 122},
    {"completion": "The total is 1,000.", "answer": "1000"},
    {"completion": "It drops to -4 degrees", "answer": "-4"},
])
def last_integer(completion: str, *, answer: str | int) -> Outcome:
    """The last number in the completion is an integer equal to `answer`."""
    gold = answer if isinstance(answer, int) else _as_int(answer)
    if gold is None:
        return Outcome.invalid(f"field 'answer' must be an integer, got {answer!r}")
    token = last_number(completion)
    if token is None:
        return Outcome.failed("no number in the completion")
    got = _as_int(token)
    if got is None:
        return Outcome.failed(f"the last number {token!r} is not an integer")
    return Outcome.passed() if got == gold else Outcome.failed(f"the last integer is {got}, expected {gold}")
