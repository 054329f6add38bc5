"""Attack class "runner sabotage", the last resort: if a program ever brings down its container (here the test
does it from outside, with `docker kill`, while the judge is running), the program is graded again on a fresh
container; a second death on the same program is the program's RUNTIME_ERROR, never INFRA_ERROR (which the
trainer retries and then drops: a policy could otherwise turn its wrong answers into dropped samples)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import docker
import pytest
import pytest_asyncio

from graders.context import GradeContext
from graders.python_tests.grader import python_tests
from graders.sandbox.base import ExecLimits
from graders.sandbox.docker_pool import LABEL, DockerPool
from graders.types import GradeStatus

pytestmark = pytest.mark.asyncio(loop_scope="module")
IMAGE = "rlvr-sandbox:bookworm-1"
SLOW = "import time\ntime.sleep(4)\ndef f(x): return x * 2\n"
TESTS = "def check(candidate):\n    assert candidate(2) == 4\n"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[DockerPool]:
    p = DockerPool(IMAGE, 1, ExecLimits(timeout_s=30, pids=32, disk_mb=16))
    await p.start()
    yield p
    await p.close()


def judging_container(pool: DockerPool, spared: set[str]) -> str | None:
    """The container whose judge (uid 10000) is running, if any."""
    client = docker.from_env()
    for c in client.containers.list(filters={"label": f"{LABEL}.instance={pool.instance}"}):
        if c.id in spared:
            continue
        try:
            processes = c.top().get("Processes") or []
        except docker.errors.APIError:
            continue
        if any(row[0] == "10000" for row in processes):
            return str(c.id)
    return None


async def kill_while_judging(pool: DockerPool, times: int) -> None:
    killed: set[str] = set()
    for _ in range(times):
        for _ in range(600):
            cid = await asyncio.to_thread(judging_container, pool, killed)
            if cid:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no container ever ran the program")
        await asyncio.to_thread(docker.from_env().api.kill, cid)
        killed.add(cid)


@pytest.mark.parametrize(("deaths", "want"), [(1, GradeStatus.PASSED), (2, GradeStatus.RUNTIME_ERROR)])
async def test_container_death_is_graded_again_once(pool: DockerPool, deaths: int, want: GradeStatus) -> None:
    ctx = GradeContext(ExecLimits(timeout_s=30, pids=32, disk_mb=16), pool)
    grading = asyncio.ensure_future(python_tests(SLOW, tests=TESTS, entry_point="f", ctx=ctx))
    await kill_while_judging(pool, deaths)
    outcome = await grading
    assert outcome.status is want, outcome.message
    if want is GradeStatus.RUNTIME_ERROR:
        assert "died twice" in outcome.message
