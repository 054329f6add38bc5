"""trainer/evaluate.py with fake rollout and grader services: accuracy comes from the strict scorer (never
the rewards), rows carry prompt → answer → verdict, infrastructure failures are no verdict (not wrong)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from graders.builtin.last_integer import last_integer
from graders.client import Catalog
from graders.registry import REGISTRY, load_builtins
from graders.types import GradeItem, GradeResult, GradeStatus, Outcome
from rollout.types import PromptInput, Sample, SamplingConfig
from trainer.config import GRPOConfig
from trainer.data import DataError, Task, addition_tasks
from trainer.evaluate import EvalReport, ScorerSpec, evaluate
from trainer.pipeline import GradeRetry
from trainer.rewards import RewardSpec, check_task_fields, check_task_golds

HACK = "To find {a} + {b}, we need to perform the arithmetic operation within parentheses."


class FakeRollout:
    """Answers each prompt with `answer(task_id)`."""

    def __init__(self, answer: Callable[[str], str]) -> None:
        self.answer = answer
        self.adapters: list[str | None] = []

    async def generate(
        self, prompts: Sequence[PromptInput], params: SamplingConfig | None = None, adapter: str | None = None
    ) -> list[Sample]:
        self.adapters.append(adapter)
        return [Sample(p.id, i, 0, [1], [2, 3], self.answer(p.id), [-0.1, -0.2], "stop", 0)
                for i, p in enumerate(prompts)]  # fmt: skip


def gameable_math(completion: str, answer: str, prompt: str) -> Outcome:
    """A reward that evaluates the question restated (the bug of issue 9): it passes the hack."""
    expr = prompt.split("What is ")[1].split("?")[0]  # "92 + 30", which such a grader evaluates to the gold
    return Outcome.passed() if expr in completion or answer in completion else Outcome.failed()


class FakeGrader:
    """last_integer is the real grader function; `math` is the gameable reward above; ids in `broken` fail."""

    def __init__(self, broken: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.broken = broken
        self.items: list[GradeItem] = []

    async def grade_stream(self, items: Sequence[GradeItem]) -> AsyncIterator[GradeResult]:
        for i, item in enumerate(items):
            self.items.append(item)
            if any(item.id.startswith(b) for b in self.broken):
                yield GradeResult(item.id, item.grader, 0.0, GradeStatus.INFRA_ERROR, [], "sandbox died", index=i)
                continue
            f = item.fields
            if item.grader == "last_integer":
                out = last_integer(item.completion, answer=f["answer"])
            else:
                out = gameable_math(item.completion, f["answer"], f["prompt"])
            yield GradeResult(item.id, item.grader, out.reward, out.status, [], out.message, index=i)

    async def grade(self, items: Sequence[GradeItem]) -> list[GradeResult]:
        return [r async for r in self.grade_stream(items)]


def _tasks(n: int) -> list[Task]:
    return addition_tasks(n, seed=1)


def _answers(hacked: set[str]) -> Callable[[str], str]:
    def answer(task_id: str) -> str:
        _, a, b = task_id.split("-")
        return HACK.format(a=a, b=b) if task_id in hacked else f"{a} + {b} = {int(a) + int(b)}"

    return answer


async def test_accuracy_is_the_scorers_not_the_rewards(tmp_path: Path) -> None:
    tasks = _tasks(10)
    hacked = {t.id for t in tasks[:6]}
    rollout, grader = FakeRollout(_answers(hacked)), FakeGrader()
    report = await evaluate(tasks, rollout, grader, ScorerSpec(grader="last_integer"),
                            SamplingConfig(n=1, temperature=0.0, max_tokens=16), adapter="policy",
                            rewards=[RewardSpec(grader="math")], retry=GradeRetry(0, 0.0, 5.0))  # fmt: skip
    m = report.metrics()
    assert m["eval/accuracy"] == pytest.approx(0.4) and m["eval/correct"] == 4 and m["eval/samples"] == 10
    assert m["eval/rewards/reward_mean"] == pytest.approx(1.0)  # the gameable reward passes the hack...
    assert m["eval/rewards/pass_rate"] == pytest.approx(1.0)  # ...and is reported apart, labelled as a reward
    assert rollout.adapters == ["policy"]
    row = report.rows[0]
    assert row.task_id in hacked and row.verdict == "failed" and not row.correct
    assert row.prompt.startswith("What is") and row.completion.startswith("To find")
    assert row.gold == str(sum(int(x) for x in row.task_id.split("-")[1:]))
    assert "expected" in row.message and row.rewards == {"math": 1.0}
    # every grade request carries the task's prompt (the math grader refuses answers that restate it)
    first = [i for i in grader.items if i.id.startswith(f"{tasks[0].id}:")]
    assert len(first) == 2 and all(i.fields["prompt"] == tasks[0].messages[-1]["content"] for i in first)
    lines = report.examples(3).splitlines()
    assert len(lines) == 3 and "→ failed (gold" in lines[0]
    report.write_jsonl(tmp_path / "eval.jsonl", step=7)
    rows = [json.loads(line) for line in (tmp_path / "eval.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and rows[0]["step"] == 7 and rows[0]["scorer"] == "last_integer"
    assert {"prompt", "completion", "gold", "verdict", "correct", "message", "rewards"} <= set(rows[0])


async def test_no_verdict_is_not_counted_wrong() -> None:
    tasks = _tasks(4)
    grader = FakeGrader(broken={tasks[0].id})
    report = await evaluate(tasks, FakeRollout(_answers(set())), grader, ScorerSpec(grader="last_integer"),
                            SamplingConfig(n=1), retry=GradeRetry(1, 0.0, 5.0))  # fmt: skip
    assert [r.verdict for r in report.rows] == ["no_verdict", "passed", "passed", "passed"]
    assert report.accuracy == 1.0 and report.metrics()["eval/scorer_no_verdict"] == 1.0
    assert report.reward_metrics == {}  # rewards not asked for
    assert EvalReport(scorer="x").metrics()["eval/samples"] == 0.0


async def test_scorer_field_map_and_static_fields() -> None:
    task = Task("t1", [{"role": "user", "content": "What is 2 + 2?"}], {"solution": "4"}, "f.jsonl:3")
    grader = FakeGrader()
    scorer = ScorerSpec(grader="last_integer", field_map={"answer": "solution"}, fields={"unused": 1})
    report = await evaluate([task], FakeRollout(lambda _: "it is 4"), grader, scorer, SamplingConfig(n=1))
    assert report.accuracy == 1.0 and report.rows[0].gold == "4"
    assert grader.items[0].fields["answer"] == "4" and grader.items[0].fields["unused"] == 1


def test_default_scorer_per_source_and_required_for_files() -> None:
    assert GRPOConfig().scorer.grader == "last_integer"
    assert GRPOConfig.model_validate({"data": {"source": "humaneval"}}).scorer.grader == "python_tests"
    cfg = GRPOConfig.model_validate({"data": {"source": "jsonl", "path": "x"}, "eval": {"scorer": "math"}})
    assert cfg.scorer == ScorerSpec(grader="math") and cfg.used_graders() == ["math"]
    with pytest.raises(ValueError, match=r"eval\.scorer: required for data\.source = 'jsonl'"):
        GRPOConfig.model_validate({"data": {"source": "jsonl", "path": "x"}})


def _catalog() -> Catalog:
    load_builtins()
    return Catalog.of_registry(REGISTRY)


def test_task_fields_are_checked_against_list_graders() -> None:
    catalog = _catalog()
    task = Task("t1", [{"role": "user", "content": "2+2?"}], {"answer": "4"}, "d.jsonl:7")
    check_task_fields([task], [RewardSpec(grader="math")], catalog)  # `prompt` is optional, `answer` present
    with pytest.raises(DataError, match=r"d.jsonl:7: field 'tests': required by grader 'python_tests'"):
        check_task_fields([task], [RewardSpec(grader="python_tests")], catalog)
    with pytest.raises(DataError, match=r"d.jsonl:7: field 'entry': required by grader 'reasoning_gym'|"
                                        r"d.jsonl:7: field 'dataset'"):
        check_task_fields([task], [RewardSpec(grader="reasoning_gym")], catalog)
    with pytest.raises(DataError, match="grader 'my_plugin' is not served"):
        check_task_fields([task], [RewardSpec(grader="my_plugin")], catalog)


async def test_bad_gold_answers_fail_when_the_dataset_is_loaded() -> None:
    class Refusing(FakeGrader):
        async def grade_stream(self, items: Sequence[GradeItem]) -> AsyncIterator[GradeResult]:
            for i, item in enumerate(items):
                bad = item.fields["answer"] == "\\frac{1}{"
                status = GradeStatus.INVALID_REQUEST if bad else GradeStatus.FAILED
                yield GradeResult(item.id, item.grader, 0.0, status, [], "does not parse completely", index=i)

    good = Task("a", [{"role": "user", "content": "q"}], {"answer": "\\frac{1}{2}"}, "m.jsonl:1")
    bad = Task("b", [{"role": "user", "content": "q"}], {"answer": "\\frac{1}{"}, "m.jsonl:2")
    await check_task_golds(Refusing(), [good], [RewardSpec(grader="math")], _catalog())
    with pytest.raises(DataError, match=r"m.jsonl:2: grader 'math' refuses the task: does not parse completely"):
        await check_task_golds(Refusing(), [good, bad], [RewardSpec(grader="math")], _catalog(), batch=1)
