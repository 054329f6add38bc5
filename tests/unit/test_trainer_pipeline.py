"""The async producer with fake rollout and grader services: staleness gating and dropping, re-queued
prompts, grader retries (never a silent 0), outages with re-sync, and checkpointable in-flight state."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from graders.types import GradeItem, GradeResult, GradeStatus
from rollout.client import RolloutError
from rollout.types import PromptInput, Sample, SamplingConfig
from trainer.data import Task, TaskStream
from trainer.pipeline import (
    GenerationFailure,
    GradeRetry,
    GraderFailure,
    RolloutPipeline,
    grade_sample,
    is_outage,
)
from trainer.rewards import RewardSpec

SPECS = [RewardSpec(grader="exact_match")]
G = 4


def make_tasks(n: int) -> list[Task]:
    return [
        Task(id=f"t{i}", messages=[{"role": "user", "content": f"q{i}"}], fields={"answer": "yes"}) for i in range(n)
    ]


@dataclass
class FakeInfo:
    address: str
    policy_version: int


class FakeRollout:
    """Answers "yes" for even sample indices, "no" for odd ones; reports `served_version` (or a lag)."""

    def __init__(self) -> None:
        self.served_version = 0
        self.lag = 0  # report versions this much older than served (a slow replica)
        self.fail_next: list[BaseException] = []
        self.calls: list[list[str]] = []
        self.restarts: list[str] = []
        self.ready_after = 0  # wait_ready fails this many times first

    async def generate_stream(
        self, prompts: Sequence[PromptInput], params: SamplingConfig | None = None, adapter: str | None = None
    ) -> AsyncIterator[Sample]:
        assert params is not None
        self.calls.append([p.id for p in prompts])
        if self.fail_next:
            raise self.fail_next.pop(0)
        version = max(0, self.served_version - self.lag)
        for pi, p in enumerate(prompts):
            for si in range(params.n):
                await asyncio.sleep(0)
                text = "yes" if si % 2 == 0 else "no"
                yield Sample(p.id, pi, si, [1, 2, 3], [7, 8], text, [-0.5, -0.5], "stop", version)

    async def wait_ready(self, timeout_s: float = 0.0) -> list[FakeInfo]:
        if self.ready_after > 0:
            self.ready_after -= 1
            raise TimeoutError("not serving")
        return await self.info()

    async def restarted(self) -> list[str]:
        out, self.restarts = self.restarts, []
        return out

    async def info(self) -> list[FakeInfo]:
        return [FakeInfo("fake:1", self.served_version)]


class FakeGrader:
    """exact_match on "yes"; `infra` maps a completion to how many INFRA_ERRORs it gets first (-1: always)."""

    def __init__(self, infra: dict[str, int] | None = None, raise_first: int = 0) -> None:
        self.infra = dict(infra or {})
        self.raise_first = raise_first
        self.calls = 0

    async def grade_stream(self, items: Sequence[GradeItem]) -> AsyncIterator[GradeResult]:
        self.calls += 1
        if self.raise_first > 0:
            self.raise_first -= 1
            raise TimeoutError("grader timed out")
        for i, it in enumerate(items):
            left = self.infra.get(it.completion, 0)
            if left != 0:
                self.infra[it.completion] = left - 1
                yield GradeResult(it.id, it.grader, 0.0, GradeStatus.INFRA_ERROR, [], "sandbox died", 0.0, i)
                continue
            ok = it.completion == it.fields["answer"]
            status = GradeStatus.PASSED if ok else GradeStatus.FAILED
            yield GradeResult(it.id, it.grader, float(ok), status, [], "", 0.0, i)


def pipeline(rollout: FakeRollout, grader: FakeGrader, n_tasks: int = 50, **kw: Any) -> RolloutPipeline:
    kw.setdefault("prompts_per_step", 2)
    kw.setdefault("max_staleness", 1)
    kw.setdefault("grade_retry", GradeRetry(retries=2, backoff_s=0.0, timeout_s=5.0))
    return RolloutPipeline(rollout, grader, SPECS, SamplingConfig(n=G), TaskStream(make_tasks(n_tasks), seed=0), **kw)


async def no_resync() -> None:
    raise AssertionError("no re-sync expected")


async def train_steps(p: RolloutPipeline, rollout: FakeRollout, steps: int, **kw: Any) -> list[list[Any]]:
    """Drive the pipeline like the trainer: take a batch at version v, then serve v + 1."""
    batches = []
    p.start()
    try:
        for v in range(p.version, p.version + steps):
            groups, _ = await asyncio.wait_for(p.next_batch(v, kw.get("resync", no_resync)), 10)
            batches.append(groups)
            rollout.served_version = v + 1
            await p.set_version(v + 1)
    finally:
        await p.stop()
    return batches


async def test_batches_are_graded_groups_in_stream_order() -> None:
    rollout = FakeRollout()
    p = pipeline(rollout, FakeGrader())
    batches = await train_steps(p, rollout, 3)
    ids = [g.task.id for b in batches for g in b]
    assert len(ids) == 6 and len(set(ids)) == 6
    expected = [t.id for t in TaskStream(make_tasks(50), seed=0).take(6)]
    assert sorted(ids) == sorted(expected)
    for g in batches[0]:
        assert len(g.samples) == G
        assert sorted(s.reward for s in g.samples) == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("max_staleness", [0, 1, 2])
async def test_samples_never_exceed_max_staleness(max_staleness: int) -> None:
    rollout = FakeRollout()
    p = pipeline(rollout, FakeGrader(), max_staleness=max_staleness)
    batches = await train_steps(p, rollout, 6)
    for v, groups in enumerate(batches):
        for g in groups:
            assert all(0 <= v - s.sample.policy_version <= max_staleness for s in g.samples)
    assert p.take_counts()["stale_groups"] == 0  # the launch gate keeps everything fresh
    if max_staleness == 0:
        assert all(s.sample.policy_version == v for v, gs in enumerate(batches) for g in gs for s in g.samples)


async def test_synchronous_mode_waits_for_the_new_weights() -> None:
    rollout = FakeRollout()
    p = pipeline(rollout, FakeGrader(), max_staleness=0)
    p.start()
    try:
        await p.next_batch(0, no_resync)
        await asyncio.sleep(0.05)
        launched = sum(len(c) for c in rollout.calls)
        assert launched == 2  # nothing generated with version-0 weights for step 1
        await p.set_version(1)
        await asyncio.sleep(0.05)
        assert sum(len(c) for c in rollout.calls) == 4
    finally:
        await p.stop()


async def test_stale_groups_are_dropped_counted_and_regenerated() -> None:
    rollout = FakeRollout()
    rollout.lag = 3  # a replica that serves old weights
    p = pipeline(rollout, FakeGrader(), max_staleness=1)
    p.start()
    try:
        rollout.served_version = 5
        await p.set_version(5)
        task = asyncio.create_task(p.next_batch(5, no_resync))
        await asyncio.sleep(0.05)
        assert not task.done()
        counts = p.counts
        assert counts["stale_groups"] >= 2 and counts["stale_samples"] == counts["stale_groups"] * G
        first_ids = set(rollout.calls[0])
        rollout.lag = 0
        groups, stale = await asyncio.wait_for(task, 5)
        assert stale >= 2
        # The dropped prompts were generated again, not lost.
        assert first_ids <= {pid for call in rollout.calls[1:] for pid in call}
        assert {g.task.id for g in groups} <= {pid for call in rollout.calls for pid in call}
    finally:
        await p.stop()


async def test_infra_error_is_retried_not_scored_zero() -> None:
    counts: Counter[str] = Counter()
    grader = FakeGrader(infra={"yes": 2})
    task = make_tasks(1)[0]
    out = await grade_sample(grader, task, "yes", SPECS, GradeRetry(retries=3, backoff_s=0.0), counts)
    assert out is not None and out.reward == 1.0
    assert counts["grader_retries"] == 2 and grader.calls == 3


async def test_persistent_infra_error_drops_the_sample() -> None:
    counts: Counter[str] = Counter()
    grader = FakeGrader(infra={"yes": -1})
    out = await grade_sample(grader, make_tasks(1)[0], "yes", SPECS, GradeRetry(retries=2, backoff_s=0.0), counts)
    assert out is None  # dropped, never a reward of 0
    assert counts["grader_dropped_samples"] == 1 and counts["grader_retries"] == 2


async def test_grader_timeouts_are_retried() -> None:
    counts: Counter[str] = Counter()
    grader = FakeGrader(raise_first=2)
    out = await grade_sample(grader, make_tasks(1)[0], "no", SPECS, GradeRetry(retries=2, backoff_s=0.0), counts)
    assert out is not None and out.reward == 0.0 and counts["grader_retries"] == 2


async def test_dropped_samples_leave_smaller_groups_and_metrics() -> None:
    rollout = FakeRollout()
    p = pipeline(rollout, FakeGrader(infra={"no": -1}))  # every "no" sample stays unscorable
    batches = await train_steps(p, rollout, 1)
    for g in batches[0]:
        assert g.dropped == 2 and len(g.samples) == 2
        assert all(s.reward == 1.0 for s in g.samples)
    assert p.take_counts()["grader_dropped_samples"] >= 4


async def test_grader_that_never_answers_stops_the_run() -> None:
    rollout = FakeRollout()
    p = pipeline(rollout, FakeGrader(infra={"yes": -1, "no": -1}))
    p.start()
    try:
        with pytest.raises(GraderFailure, match="no verdicts"):
            await asyncio.wait_for(p.next_batch(0, no_resync), 10)
    finally:
        await p.stop()


async def test_rollout_outage_pauses_requeues_and_resyncs() -> None:
    rollout = FakeRollout()
    p = pipeline(rollout, FakeGrader(), version=3, max_staleness=1)
    rollout.served_version = 3
    rollout.fail_next = [RolloutError("unavailable after 8 retries", grpc.StatusCode.UNAVAILABLE)]
    rollout.ready_after = 2
    resyncs = []

    async def resync() -> None:
        resyncs.append(p.version)
        rollout.served_version = p.version

    async def restart_happens() -> None:
        rollout.restarts = ["fake:1"]
        rollout.served_version = 0  # a fresh server starts from the base weights

    await restart_happens()
    p.start()
    try:
        groups, _ = await asyncio.wait_for(p.next_batch(3, resync), 10)
    finally:
        await p.stop()
    assert resyncs == [3]
    later = [pid for call in rollout.calls[1:] for pid in call]
    assert set(rollout.calls[0]) <= set(later)  # the failed prompts were generated again
    counts = p.take_counts()
    assert counts["rollout_outages"] == 1 and counts["requeued_outage"] == 2
    assert all(s.sample.policy_version == 3 for g in groups for s in g.samples)


async def test_rejected_request_is_fatal_not_an_outage() -> None:
    rollout = FakeRollout()
    rollout.fail_next = [RolloutError("prompt too long", grpc.StatusCode.INVALID_ARGUMENT)]
    p = pipeline(rollout, FakeGrader())
    p.start()
    try:
        with pytest.raises(GenerationFailure, match="prompt too long"):
            await asyncio.wait_for(p.next_batch(0, no_resync), 5)
    finally:
        await p.stop()


def test_outage_classification() -> None:
    assert is_outage(RolloutError("x", grpc.StatusCode.UNAVAILABLE))
    assert is_outage(RolloutError("no rollout replica is reachable and ready"))
    assert is_outage(ConnectionError("refused"))
    assert not is_outage(RolloutError("bad", grpc.StatusCode.INVALID_ARGUMENT))
    assert not is_outage(ValueError("bug"))


async def test_inflight_tasks_cover_everything_taken_and_not_trained() -> None:
    rollout = FakeRollout()
    stream = TaskStream(make_tasks(50), seed=0)
    p = RolloutPipeline(rollout, FakeGrader(), SPECS, SamplingConfig(n=G), stream, prompts_per_step=2,
                        max_staleness=1, grade_retry=GradeRetry(0, 0.0, 5.0))  # fmt: skip
    p.start()
    try:
        groups, _ = await p.next_batch(0, no_resync)
        await asyncio.sleep(0.05)
        trained = {g.task.id for g in groups}
        inflight = [t.id for t in p.inflight_tasks()]
        cursor = stream.state_dict()["position"]
    finally:
        await p.stop()
    taken = [t.id for t in TaskStream(make_tasks(50), seed=0).take(cursor)]
    assert sorted(trained | set(inflight)) == sorted(taken)
    assert not trained & set(inflight)


async def test_requeued_tasks_go_first() -> None:
    rollout = FakeRollout()
    extra = [Task(id="resumed-a", messages=[{"role": "user", "content": "a"}], fields={"answer": "yes"})]
    rollout.served_version = 4
    p = pipeline(rollout, FakeGrader(), requeued=extra, version=4)
    await train_steps(p, rollout, 1)
    assert rollout.calls[0][0] == "resumed-a"


@pytest.mark.parametrize("max_staleness", [0, 1])
async def test_steps_without_an_update_keep_the_version_and_do_not_stall(max_staleness: int) -> None:
    """A step that changed no weight keeps the version (nothing pushed) and gives its groups' launch slots back:
    three such steps in a row would otherwise exhaust the look-ahead of (max_staleness + 1) × P and hang."""
    rollout = FakeRollout()
    p = pipeline(rollout, FakeGrader(), max_staleness=max_staleness)
    version = 0
    p.start()
    try:
        for skipped in (True, True, True, False, True, True, True, False):
            groups, _ = await asyncio.wait_for(p.next_batch(version, no_resync), 5)
            assert len(groups) == 2
            assert all(0 <= version - s.sample.policy_version <= max_staleness for g in groups for s in g.samples)
            if skipped:
                await p.batch_without_update(len(groups))
            else:
                version += 1
                rollout.served_version = version
                await p.set_version(version)
        assert p.take_counts()["stale_groups"] == 0
    finally:
        await p.stop()
