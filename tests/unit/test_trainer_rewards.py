"""trainer/rewards.py: weighted multi-grader rewards; no verdict → no reward (never a silent 0)."""

from __future__ import annotations

import pytest

from graders.types import GradeItem, GradeResult, GradeStatus
from trainer.data import Task
from trainer.rewards import RewardSpec, check_specs, combine, grade_items, score

TASK = Task(id="t1", messages=[{"role": "user", "content": "2+2?"}], fields={"answer": "4"}, source="d.jsonl:7")
SPECS = [
    RewardSpec(grader="regex", weight=0.2, name="format", fields={"pattern": r"^\d+$", "answer": "static"}),
    RewardSpec(grader="math", weight=1.0),
]


def _result(grader: str, reward: float, status: GradeStatus, message: str = "") -> GradeResult:
    return GradeResult(id="", grader=grader, reward=reward, status=status, message=message)


def test_grade_items_merge_static_fields_under_task_fields() -> None:
    items = grade_items(TASK, "4", SPECS, sample_id="t1#3")
    assert [i.grader for i in items] == ["regex", "math"]
    assert items[0].fields == {"pattern": r"^\d+$", "answer": "4", "prompt": "2+2?"}  # the task's answer wins
    assert items[1].fields == {"answer": "4", "prompt": "2+2?"}
    assert [i.id for i in items] == ["t1#3:format", "t1#3:math"]
    assert all(i.completion == "4" for i in items)


def test_weighted_sum_of_verdicts() -> None:
    results = [_result("regex", 1.0, GradeStatus.PASSED), _result("math", 0.0, GradeStatus.FAILED)]
    out = combine(TASK, results, SPECS)
    assert out.reward == pytest.approx(0.2)
    assert out.per_grader == {"format": 1.0, "math": 0.0}
    assert out.statuses == {"format": "passed", "math": "failed"}
    assert not out.infra_error
    results = [_result("regex", 1.0, GradeStatus.PASSED), _result("math", 1.0, GradeStatus.PASSED)]
    assert combine(TASK, results, SPECS).reward == pytest.approx(1.2)
    # A timeout is a verdict about the program: it scores (0 here), it is not an infra error.
    results = [_result("regex", 0.0, GradeStatus.FAILED), _result("math", 0.0, GradeStatus.TIMEOUT)]
    assert combine(TASK, results, SPECS).reward == 0.0


@pytest.mark.parametrize(("status", "infra"), [(GradeStatus.INFRA_ERROR, True), (GradeStatus.INVALID_REQUEST, False)])
def test_no_verdict_means_no_reward(status: GradeStatus, infra: bool) -> None:
    results = [_result("regex", 1.0, GradeStatus.PASSED), _result("math", 0.0, status, "sandbox died")]
    out = combine(TASK, results, SPECS)
    assert out.reward is None
    assert out.infra_error is infra
    assert out.errors == {"math": "sandbox died"}
    assert out.per_grader == {"format": 1.0}
    assert out.statuses["math"] == status.label


def test_mismatched_results_are_errors() -> None:
    with pytest.raises(ValueError, match="1 grade results for 2"):
        combine(TASK, [_result("regex", 1.0, GradeStatus.PASSED)], SPECS)
    swapped = [_result("math", 1.0, GradeStatus.PASSED), _result("regex", 1.0, GradeStatus.PASSED)]
    with pytest.raises(ValueError, match="grader 'math' where 'regex' expected"):
        combine(TASK, swapped, SPECS)


def test_spec_checks() -> None:
    with pytest.raises(ValueError, match="at least one"):
        check_specs([])
    with pytest.raises(ValueError, match=r"duplicate reward names \['math'\]"):
        check_specs([RewardSpec(grader="math"), RewardSpec(grader="math", weight=0.5)])
    check_specs(SPECS)
    with pytest.raises(ValueError, match="weight"):
        RewardSpec(grader="math", weight="heavy")  # type: ignore[arg-type]


def test_grade_items_carry_the_prompt() -> None:
    items = grade_items(TASK, "4", SPECS)
    assert all(i.fields["prompt"] == TASK.messages[-1]["content"] for i in items)


class FakeGrader:
    def __init__(self, statuses: dict[str, GradeStatus]) -> None:
        self.statuses = statuses
        self.calls: list[list[GradeItem]] = []

    async def grade(self, items: list[GradeItem]) -> list[GradeResult]:
        self.calls.append(items)
        out = []
        for i, item in enumerate(items):
            status = self.statuses.get(item.id, GradeStatus.PASSED)
            reward = 1.0 if status == GradeStatus.PASSED else 0.0
            out.append(GradeResult(item.id, item.grader, reward, status, index=i))
        return out


async def test_score_grades_all_samples_in_one_request() -> None:
    other = Task(id="t2", messages=[{"role": "user", "content": "3+3?"}], fields={"answer": "6"})
    client = FakeGrader({"t2#1:math": GradeStatus.FAILED, "t1#2:math": GradeStatus.INFRA_ERROR})
    outs = await score(client, [(TASK, "4"), (other, "5"), (TASK, "4")], SPECS)
    assert len(client.calls) == 1 and len(client.calls[0]) == 6
    assert [o.reward for o in outs] == [pytest.approx(1.2), pytest.approx(0.2), None]
    assert outs[2].infra_error
