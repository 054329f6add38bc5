"""`python_tests`: run the completion's code against HumanEval-style assert tests in the sandbox."""

from __future__ import annotations

import marshal
import secrets
from pathlib import Path
from typing import Any

from graders.asserts import TestsError, prepare
from graders.context import GradeContext
from graders.extract import extract_code
from graders.registry import grader
from graders.types import Outcome
from graders.verdict import decide

HARNESS_SRC = (Path(__file__).resolve().parent.parent / "harness.py").read_text()

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
        prepared = prepare(tests, entry_point)
    except TestsError as e:
        return Outcome.invalid(str(e))
    key = secrets.token_bytes(32)
    payload = marshal.dumps({
        "key": key.hex(),
        "code": prefix + extract_code(completion),
        "units": prepared.sources,
        "entry_point": entry_point or "",
        "test_imports": prepared.imports,
    })
    run = await ctx.sandbox.run(["python3", "-I", "-S", "-B", "-c", HARNESS_SRC], payload, ctx.limits)
    return decide(run, key, prepared, ctx.limits.timeout_s)
