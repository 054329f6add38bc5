"""`math`: the completion's final answer (\\boxed{} or plain) equals the reference, per math-verify."""

from __future__ import annotations

from graders.context import GradeContext
from graders.registry import grader
from graders.types import GradeStatus, Outcome
from graders.workers import WorkerTimeout

GOLD = [
    {"completion": "So the total is \\boxed{42}.", "answer": "42"},
    {"completion": "The probability is \\boxed{\\frac{1}{2}}", "answer": "0.5"},
    {"completion": "x = 3, so the answer is 3", "answer": "3"},
    {"completion": "Therefore $\\boxed{\\sqrt{2}}$", "answer": "\\sqrt{2}"},
]


@grader("math", gold=GOLD)
async def math_answer(completion: str, *, answer: str | int | float, ctx: GradeContext) -> Outcome:
    """Compare the final answer with the reference using math-verify (gold parsed first) in killable workers."""
    gold = str(answer).strip()
    if not gold:
        return Outcome.invalid("field 'answer' is empty")
    try:
        value = await ctx.pool.call("math", {"gold": gold, "answer": completion}, ctx.limits.math_timeout_s)
    except WorkerTimeout as e:
        return Outcome(0.0, GradeStatus.TIMEOUT, [], str(e))
    if not value["gold_ok"]:
        return Outcome.invalid(f"the reference answer {gold[:80]!r} could not be parsed")
    if not value["answer_ok"]:
        return Outcome.failed("no answer found in the completion")
    if value["match"]:
        return Outcome.passed()
    return Outcome.failed(f"answer {value.get('parsed', '')!r} does not match the reference")
