"""`python_tests`: run the completion's code against HumanEval-style assert tests; the tests run in the trusted
judge and call into the sandboxed program (see the threat model in graders/python_tests/__init__.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from graders.context import GradeContext
from graders.extract import extract_code
from graders.python_tests.prepare import TestsError, prepare
from graders.python_tests.verdict import decide
from graders.registry import grader
from graders.sandbox.base import Judge, SandboxLost
from graders.types import GradeStatus, Outcome

_HERE = Path(__file__).resolve().parent


def _source(*names: str) -> str:
    return "\n\n".join((_HERE / n).read_text() for n in names)


PROGRAM_SRC = _source("wire.py", "program_main.py")
JUDGE_SRC = _source("wire.py", "pytest_shim.py", "judge_main.py")
PROGRAM_ARGV = ["python3", "-I", "-S", "-B", "-c", PROGRAM_SRC]

GOLD: list[dict[str, Any]] = [
    {
        "completion": "```python\ndef add(a, b):\n    return a + b\n```",
        "tests": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
        "entry_point": "add",
    },
    {
        "completion": "def double(x):\n    return 2 * x\n",
        "tests": ["assert double(2) == 4", "assert [double(i) for i in range(3)] == [0, 2, 4]"],
    },
]


def job_for(code: str, tests: Any, entry_point: str | None, timeout_s: float, max_reply: int) -> bytes:
    """The judge's input for one program (public for the benchmark)."""
    return json.dumps({"code": code, "prelude": tests.prelude, "units": tests.sources,
                       "entry_point": entry_point or "", "timeout_s": timeout_s, "max_reply": max_reply}).encode()


@grader("python_tests", sandboxed=True, gold=GOLD)
async def python_tests(
    completion: str,
    *,
    tests: str | list[str],
    entry_point: str | None = None,
    prefix: str = "",
    ctx: GradeContext,
) -> Outcome:
    """Run the completion's Python code (fenced block or bare) with HumanEval-style assert tests in the sandbox."""
    try:
        prepared = prepare(tests, entry_point, prefix)
    except TestsError as e:
        return Outcome.invalid(str(e))
    limits = ctx.limits
    job = job_for(prefix + extract_code(completion), prepared, entry_point, limits.timeout_s, limits.output_bytes)
    lost = ""
    for _attempt in range(2):  # attack class "runner sabotage": a lost sandbox is graded again, once
        try:
            run = await ctx.sandbox.run(PROGRAM_ARGV, b"", limits, judge=Judge(JUDGE_SRC, job))
            return decide(run, prepared, limits.timeout_s)
        except SandboxLost as e:
            lost = str(e)
    return Outcome(0.0, GradeStatus.RUNTIME_ERROR, [], f"the sandbox died twice while running this program: {lost}")
