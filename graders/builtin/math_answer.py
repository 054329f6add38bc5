"""`math`: the completion's ONE final answer equals the reference, per math-verify.

The rule (details in graders/answer_check.py):
- the graded span is the last `\\boxed{}`, else the last "answer" line ("Answer: 41", "The answer is 41"),
  else the last number of the completion; nothing else in the completion counts;
- a numeric reference (`122`, `1,000`, `0.5`, `\\frac{1}{2}`, `50\\%`) needs a number as the answer (a
  literal, a fraction in lowest terms or a percentage): the unevaluated `92 + 30` is not 122;
- any other reference is LaTeX (`3\\pi`, `\\{1, 2\\}`, `(1, 3]`) compared by math-verify with its fallbacks
  off; a part of it (`3` for `3\\pi`) never matches; a reference that does not parse completely is
  `invalid_request`;
- with the optional `prompt` field (the trainer sends the task's prompt), an answer that is an expression
  copied from the prompt fails."""

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
    {"completion": "The area is $\\boxed{3\\pi}$.", "answer": "3\\pi"},
    {"completion": "92 + 30 = 122", "answer": "122", "prompt": "What is 92 + 30?"},
    {"completion": "Answer: 1,000 dollars", "answer": "1000"},
    {"completion": "The solution set is \\boxed{(1, 3]}", "answer": "(1, 3]"},
]


@grader("math", gold=GOLD)
async def math_answer(
    completion: str, *, answer: str | int | float, prompt: str = "", ctx: GradeContext
) -> Outcome:
    """One extracted final answer (\\boxed{} > answer line > last number) equals the reference (math-verify)."""
    gold = str(answer).strip()
    if not gold:
        return Outcome.invalid("field 'answer' is empty")
    args = {"gold": gold, "answer": completion, "prompt": prompt}
    try:
        value = await ctx.pool.call("math", args, ctx.limits.math_timeout_s)
    except WorkerTimeout as e:
        return Outcome(0.0, GradeStatus.TIMEOUT, [], str(e))
    if not value["gold_ok"]:
        return Outcome.invalid(value["message"])
    return Outcome.passed() if value["match"] else Outcome.failed(value["message"])
