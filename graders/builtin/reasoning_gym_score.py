"""`reasoning_gym`: a reasoning-gym task scored by its own `score_answer`; correct only at a score of 1.0.

Fields: `dataset` (the reasoning-gym dataset name, e.g. "basic_arithmetic") and `entry` (the dataset entry
as JSON: question, answer, metadata; what `score_answer(answer, entry)` reads). The answer handed to
`score_answer` is, in this order: the content of the last `<answer>...</answer>` (reasoning-gym's own
format), else of the last `\\boxed{}`, else the rest of the last "Answer:" line, else the completion itself when
it is one non-empty line (a bare answer). A completion of several lines without any of those markers has no
answer: taking its last line credited degenerate repetition ("8\\n2\\n0\\n1\\n1\\n1...", cut by the token limit,
"answers" 1), 6 of 200 held-out completions of a collapsed on-policy student (benchmarks/results/
distill_arith_on_policy.json, scored before this rule). A partial score (some datasets give 0.01-0.99 for near
answers) is `failed` with reward 0: this grader is a strict scorer for held-out evaluation. score_answer runs in a
killable worker; the first call of a worker imports reasoning-gym, hence the longer deadline."""

from __future__ import annotations

import re
from typing import Any

from graders.context import GradeContext
from graders.extract import last_boxed
from graders.registry import grader
from graders.types import GradeStatus, Outcome
from graders.workers import WorkerTimeout

DEADLINE_S = 30.0
_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_LINE = re.compile(r"^[\s*_#]*answer[\s*_]*:[\s*]*(.*)$", re.I | re.M)

_ENTRY = {"question": "Calculate 5 - 3 - 6.", "answer": "-4",
          "metadata": {"source_dataset": "basic_arithmetic", "expression": "5 - 3 - 6"}}  # fmt: skip


def extract(completion: str) -> str | None:
    """The answer text the completion gives (see the module docstring), or None when it gives none."""
    tags = _TAG.findall(completion)
    if tags:
        return str(tags[-1]).strip() or None
    boxed = last_boxed(completion)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    lines = [m.strip() for m in _LINE.findall(completion) if m.strip()]
    if lines:
        return lines[-1]
    rest = [ln.strip() for ln in completion.splitlines() if ln.strip()]
    return rest[0] if len(rest) == 1 else None


@grader("reasoning_gym", gold=[
    {"completion": "5 - 3 = 2, 2 - 6 = -4\nAnswer: -4", "dataset": "basic_arithmetic", "entry": _ENTRY},
    {"completion": "<answer>-4</answer>", "dataset": "basic_arithmetic", "entry": _ENTRY},
])
async def reasoning_gym_score(
    completion: str, *, dataset: str, entry: dict[str, Any], ctx: GradeContext
) -> Outcome:
    """reasoning-gym's score_answer(extracted answer, entry) == 1.0 (partial credit is not correct)."""
    if "answer" not in entry:
        return Outcome.invalid("field 'entry' must be the reasoning-gym entry (it has no 'answer')")
    answer = extract(completion)
    if answer is None:
        return Outcome.failed("no answer: an empty completion, or several lines without an 'Answer:' line, "
                              "<answer> tag or \\boxed{}")
    timeout = max(DEADLINE_S, ctx.limits.math_timeout_s)
    try:
        value = await ctx.pool.call("reasoning_gym", {"dataset": dataset, "answer": answer, "entry": entry}, timeout)
    except WorkerTimeout as e:
        return Outcome(0.0, GradeStatus.TIMEOUT, [], str(e))
    if value.get("error"):
        return Outcome.invalid(value["error"])
    score = float(value["score"])
    if score == 1.0:
        return Outcome.passed()
    return Outcome.failed(f"score_answer({answer[:60]!r}) = {score:g}")
