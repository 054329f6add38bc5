"""math / regex / exact_match / json_schema graders with the real killable worker pool (no sandbox)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from graders.context import GradeContext
from graders.registry import REGISTRY, load_builtins, validate_all
from graders.sandbox.base import ExecLimits
from graders.types import GradeStatus
from graders.workers import WorkerPool

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx() -> AsyncIterator[GradeContext]:
    load_builtins()
    pool = WorkerPool(2)
    await pool.start()
    yield GradeContext(ExecLimits(math_timeout_s=2.0), None, pool)
    await pool.close()


async def grade(ctx: GradeContext, name: str, completion: str, **fields: object) -> tuple[GradeStatus, float, str]:
    spec = REGISTRY.get(name)
    assert spec is not None
    out = await spec.run(completion, dict(fields), ctx)
    return out.status, out.reward, out.message


@pytest.mark.parametrize(("completion", "answer", "status"), [
    ("so the answer is \\boxed{42}", "42", GradeStatus.PASSED),
    ("The answer is 42.", "42", GradeStatus.PASSED),
    ("\\boxed{\\frac{1}{2}}", "0.5", GradeStatus.PASSED),
    ("\\boxed{0.5}", "\\frac{1}{2}", GradeStatus.PASSED),
    ("$\\boxed{2\\sqrt{2}}$", "\\sqrt{8}", GradeStatus.PASSED),
    ("\\boxed{41}", "42", GradeStatus.FAILED),
    ("I have no idea", "42", GradeStatus.FAILED),
    ("\\boxed{7}", "", GradeStatus.INVALID_REQUEST),
    ("\\boxed{7}", "  ", GradeStatus.INVALID_REQUEST),
])
async def test_math_cases(ctx: GradeContext, completion: str, answer: str, status: GradeStatus) -> None:
    assert (await grade(ctx, "math", completion, answer=answer))[0] is status


async def test_math_numeric_answer_field(ctx: GradeContext) -> None:
    assert (await grade(ctx, "math", "\\boxed{3}", answer=3))[0] is GradeStatus.PASSED
    assert (await grade(ctx, "math", "\\boxed{3}"))[0] is GradeStatus.INVALID_REQUEST


async def test_pathological_answer_costs_its_deadline_only(ctx: GradeContext) -> None:
    start = time.monotonic()
    # a symbolic gold: the answer is parsed and evaluated by sympy (a numeric gold refuses it as not a number)
    slow = asyncio.ensure_future(grade(ctx, "math", "\\boxed{9^{9^{9^9}}}", answer="x + 1"))
    await asyncio.sleep(0.2)
    quick_start = time.monotonic()
    quick = await grade(ctx, "math", "\\boxed{5}", answer="5")
    assert quick[0] is GradeStatus.PASSED and time.monotonic() - quick_start < 1.5  # not stalled
    status, reward, message = await slow
    assert status is GradeStatus.TIMEOUT and reward == 0.0 and "deadline" in message
    assert time.monotonic() - start < 2.0 + 1.5
    # the killed worker was replaced: the pool still grades at full width
    results = await asyncio.gather(*(grade(ctx, "math", f"\\boxed{{{i}}}", answer=str(i)) for i in range(6)))
    assert all(r[0] is GradeStatus.PASSED for r in results)


async def test_regex_and_exact_match(ctx: GradeContext) -> None:
    fmt = r"<think>.*</think>\s*<answer>.*</answer>"
    assert (await grade(ctx, "regex", "<think>a</think> <answer>1</answer>", pattern=fmt))[0] is GradeStatus.PASSED
    assert (await grade(ctx, "regex", "<answer>1</answer>", pattern=fmt))[0] is GradeStatus.FAILED
    assert (await grade(ctx, "regex", "x", pattern="("))[0] is GradeStatus.INVALID_REQUEST
    assert (await grade(ctx, "regex", "x", pattern="x", flags="q"))[0] is GradeStatus.INVALID_REQUEST
    evil = await grade(ctx, "regex", "a" * 40 + "!", pattern="(a+)+$")
    assert evil[0] is GradeStatus.TIMEOUT
    assert (await grade(ctx, "exact_match", " PARIS\n", answer="paris"))[0] is GradeStatus.PASSED
    assert (await grade(ctx, "exact_match", "Paris", answer="paris", case_sensitive=True))[0] is GradeStatus.FAILED


async def test_json_schema(ctx: GradeContext) -> None:
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    assert (await grade(ctx, "json_schema", '{"a": 1}', schema=schema))[0] is GradeStatus.PASSED
    status, reward, message = await grade(ctx, "json_schema", '```json\n{"a": "x"}\n```', schema=schema)
    assert status is GradeStatus.FAILED and reward == 0.0 and "not of type" in message
    assert (await grade(ctx, "json_schema", "nothing", schema=schema))[0] is GradeStatus.FAILED
    bad_schema = {"type": "no-such-type"}
    assert (await grade(ctx, "json_schema", "{}", schema=bad_schema))[0] is GradeStatus.INVALID_REQUEST


async def test_gold_self_tests_of_in_process_builtins(ctx: GradeContext) -> None:
    assert await validate_all(REGISTRY, ctx, ["math", "regex", "exact_match", "json_schema"]) == []
