"""The `math` grader's rule: final-answer extraction priority, the gold/answer corpus in the forms real
datasets use (tests/unit/data/math_answer_corpus.jsonl), invalid golds, answers that restate the prompt,
and the strict scorers (last_integer, reasoning_gym) with the real worker pool."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from graders.answer_check import check, parse_number
from graders.builtin.reasoning_gym_score import extract as rg_extract
from graders.context import GradeContext
from graders.extract import final_answer
from graders.registry import REGISTRY, load_builtins, validate_all
from graders.sandbox.base import ExecLimits
from graders.types import GradeStatus
from graders.workers import WorkerPool

DATA = Path(__file__).parent / "data"
CORPUS = [json.loads(line) for line in (DATA / "math_answer_corpus.jsonl").read_text().splitlines() if line]
INVALID_GOLDS = [g for g in (DATA / "math_gold_invalid.txt").read_text().splitlines() if g]
HACK = "To find 92 + 30, we need to perform the arithmetic operation within parentheses."
logging.getLogger("math_verify").setLevel(logging.ERROR)


@pytest.mark.parametrize(("completion", "span", "source"), [
    ("x = 3, so \\boxed{4}. Answer: 5. Finally 6", "4", "boxed"),
    ("\\boxed{1} then \\boxed{\\frac{2}{3}}", "\\frac{2}{3}", "boxed"),
    ("\\boxed{7} and a cut-off \\boxed{8", "7", "boxed"),  # an unclosed box is not an answer
    ("Answer: 41\nsome chatter 99", "41", "answer_line"),
    ("The answer is 41. Because 40 + 1 = 41 and 7", "41", "answer_line"),
    ("**Final answer:** $1,000$", "$1,000$", "answer_line"),
    ("Answer:\n\n  12\nthanks 3", "12", "answer_line"),
    ("I will answer the question: 2 + 2 makes 4", "4", "last_number"),  # "answer" + separator only
    ("92 + 30 = 122", "122", "last_number"),
    ("92-30 is 62", "62", "last_number"),
    ("It is -4 today", "-4", "last_number"),
    ("from 10 to 1,000 apples", "1,000", "last_number"),
    ("half: 1/2", "1/2", "last_number"),
    (HACK, "30", "last_number"),
])
def test_final_answer_priority(completion: str, span: str, source: str) -> None:
    got = final_answer(completion)
    assert got is not None and (got.text, got.source) == (span, source)


def test_no_final_answer() -> None:
    assert final_answer("I do not know") is None
    assert check("122", "I do not know")["match"] is False


def test_the_restated_question_hack_fails() -> None:
    """The completion that taught the demo's policy to restate the question (issue 9, section 0)."""
    prompt = "What is 92 + 30? Reply with only the number."
    assert check("122", HACK, prompt)["match"] is False
    assert check("122", HACK)["match"] is False
    for restated in ("\\boxed{92 + 30}", "The answer is 92 + 30.", "Answer: 92+30"):
        verdict = check("122", restated, prompt)
        assert verdict["match"] is False and "restates the prompt" in verdict["message"]
    assert check("122", "92 + 30 = 122", prompt)["match"] is True
    assert check("122", "\\boxed{122}", prompt)["match"] is True


def test_a_symbolic_answer_copied_from_the_prompt_fails() -> None:
    prompt = "Simplify $\\frac{2}{4}$."
    assert check("\\frac{1}{2}", "\\boxed{\\frac{2}{4}}", prompt)["match"] is False
    assert check("\\sqrt{2}", "\\boxed{\\frac{2}{\\sqrt{2}}}", "Simplify \\frac{2}{\\sqrt{2}}")["match"] is False
    # an answer written as the gold is passes even where the prompt contains it
    assert check("\\sqrt{2}", "\\boxed{\\sqrt{2}}", "Is it \\sqrt{2} or \\sqrt{3}?")["match"] is True
    # a plain number is an answer even when the prompt mentions it
    assert check("5", "5", "What is 5 + 0?")["match"] is True


@pytest.mark.parametrize("case", CORPUS, ids=[c["form"] for c in CORPUS])
def test_corpus(case: dict[str, Any]) -> None:
    for answer in case["pass"]:
        verdict = check(case["gold"], answer)
        assert verdict["gold_ok"] and verdict["match"], (case["gold"], answer, verdict["message"])
    for answer in case["fail"]:
        verdict = check(case["gold"], answer)
        assert verdict["gold_ok"] and not verdict["match"], (case["gold"], answer)


def test_corpus_covers_the_forms_of_real_datasets() -> None:
    forms = " ".join(c["form"] for c in CORPUS)
    for form in ("fraction", "radical", "pi", "set", "interval", "tuple", "percentage", "units", "thousands",
                 "negative", "plain integer"):  # fmt: skip
        assert form in forms
    assert sum(len(c["pass"]) for c in CORPUS) >= 60 and sum(len(c["fail"]) for c in CORPUS) >= 60


@pytest.mark.parametrize("gold", INVALID_GOLDS)
def test_a_gold_that_does_not_parse_completely_is_invalid(gold: str) -> None:
    verdict = check(gold, "\\boxed{1}")
    assert verdict["gold_ok"] is False and "does not parse completely" in verdict["message"]


@pytest.mark.parametrize(("text", "latex"), [
    ("122", "122"), ("1,000", "1000"), ("1{,}000", "1000"), ("-7", "-7"), ("−7", "-7"), ("033", "33"),
    ("\\$18", "18"), ("18 dollars", "18"), ("50\\%", "50\\%"), ("50 percent", "50\\%"), (".5", "0.5"),
    ("\\frac{1}{2}", "\\frac{1}{2}"), ("\\dfrac12", "\\frac{1}{2}"), ("-\\frac{3}{4}", "-\\frac{3}{4}"),
    ("3/4", "\\frac{3}{4}"), ("5\\text{ cm}", "5"), ("90^\\circ", "90"),
])
def test_number_forms(text: str, latex: str) -> None:
    number = parse_number(text)
    assert number is not None and number.latex == latex


@pytest.mark.parametrize("text", ["92 + 30", "2/4", "4/2", "3/1", "1/0", "5x", "3\\pi", "10^3", "x", "1,0000", ""])
def test_not_number_forms(text: str) -> None:
    assert parse_number(text) is None


def test_reasoning_gym_answer_extraction() -> None:
    assert rg_extract("think\n<answer> 12 </answer>\nAnswer: 13") == "12"
    assert rg_extract("work\n**Answer:** 13\nbye") == "13"
    assert rg_extract("so \\boxed{14}.\nAnswer: 13") == "14"
    assert rg_extract("  42\n") == "42"  # a bare answer
    assert rg_extract("work\n\n42\n") is None  # several lines, no answer marker: no answer
    assert rg_extract("8\n2\n0\n1\n1\n1\n1\n1") is None  # degenerate repetition cut by the token limit
    assert rg_extract("  \n") is None


# ---------------------------------------------------------------------------------------------- with workers

pytestmark_async = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ctx() -> AsyncIterator[GradeContext]:
    load_builtins()
    pool = WorkerPool(2)
    await pool.start()
    yield GradeContext(ExecLimits(math_timeout_s=5.0), None, pool)
    await pool.close()


async def grade(ctx: GradeContext, name: str, completion: str, **fields: Any) -> tuple[GradeStatus, str]:
    spec = REGISTRY.get(name)
    assert spec is not None
    out = await spec.run(completion, dict(fields), ctx)
    return out.status, out.message


@pytestmark_async
async def test_math_grader_prompt_field_and_invalid_gold(ctx: GradeContext) -> None:
    prompt = "What is 92 + 30? Reply with only the number."
    assert (await grade(ctx, "math", HACK, answer="122", prompt=prompt))[0] is GradeStatus.FAILED
    assert (await grade(ctx, "math", "\\boxed{92+30}", answer="122", prompt=prompt))[0] is GradeStatus.FAILED
    assert (await grade(ctx, "math", "122", answer=122, prompt=prompt))[0] is GradeStatus.PASSED
    assert (await grade(ctx, "math", "\\boxed{3}", answer="3\\pi"))[0] is GradeStatus.FAILED
    status, message = await grade(ctx, "math", "\\boxed{1}", answer="\\frac{1}{")
    assert status is GradeStatus.INVALID_REQUEST and "does not parse completely" in message


@pytestmark_async
async def test_last_integer(ctx: GradeContext) -> None:
    cases = [
        ("92 + 30 = 122", "122", GradeStatus.PASSED), (HACK, "122", GradeStatus.FAILED),
        ("122.5", "122", GradeStatus.FAILED), ("the sum is 122, not 121", "122", GradeStatus.FAILED),
        ("nothing", "122", GradeStatus.FAILED), ("-4", -4, GradeStatus.PASSED), ("1,000", "1000", GradeStatus.PASSED),
        ("4", "four", GradeStatus.INVALID_REQUEST), ("4", "4.0", GradeStatus.INVALID_REQUEST),
    ]  # fmt: skip
    for completion, answer, status in cases:
        assert (await grade(ctx, "last_integer", completion, answer=answer))[0] is status, completion


@pytestmark_async
async def test_reasoning_gym_scorer(ctx: GradeContext) -> None:
    import reasoning_gym

    entry = json.loads(json.dumps(reasoning_gym.create_dataset("basic_arithmetic", seed=3, size=1)[0]))
    gold = str(entry["answer"])
    fields = {"dataset": "basic_arithmetic", "entry": entry}
    assert (await grade(ctx, "reasoning_gym", f"Answer: {gold}", **fields))[0] is GradeStatus.PASSED
    assert (await grade(ctx, "reasoning_gym", f"Answer: {int(gold) + 1}", **fields))[0] is GradeStatus.FAILED
    # a partial score (an answer that contains the gold gets len(gold)/len(answer)) is not correct
    status, message = await grade(ctx, "reasoning_gym", f"Answer: x = {gold}", **fields)
    assert status is GradeStatus.FAILED and "= 0." in message
    status, message = await grade(ctx, "reasoning_gym", "Answer: 1", dataset="no_such_dataset", entry=entry)
    assert status is GradeStatus.INVALID_REQUEST and "no_such_dataset" in message
    assert (await grade(ctx, "reasoning_gym", "1", dataset="basic_arithmetic", entry={}))[0] is (
        GradeStatus.INVALID_REQUEST
    )


@pytestmark_async
async def test_gold_self_tests_of_the_answer_graders(ctx: GradeContext) -> None:
    assert await validate_all(REGISTRY, ctx, ["math", "last_integer", "reasoning_gym"]) == []
