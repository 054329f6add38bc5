"""The async rollout → grading producer that feeds the GRPO loop.

A producer task keeps prompts in flight while the trainer trains: it takes tasks (re-queued ones first,
then the data stream), asks the rollout service for G samples each (`generate_stream`), and grades every
sample the moment it arrives (`grade_stream`), so grading overlaps generation. A group is ready once all
its samples are scored; ready groups wait in a queue for `next_batch`.

Staleness. Every sample carries the policy version that generated it; the trainer at version v may use a
sample of version u only if v - u <= max_staleness. The producer launches the c-th group (c counts every
group ever handed to the trainer or still alive) only while c < (server version + max_staleness + 1) × P,
which is exactly the condition for it to be fresh enough when its turn comes; groups that still end up too
old (slow replicas, outages) are dropped at hand-out, counted, and their prompts re-generated.

Graders. A sample whose graders give no verdict (INFRA_ERROR, a failed or timed-out call) is re-graded with
exponential backoff; after the last retry it is dropped and counted — never scored 0. A group left with
fewer than two scored samples has no advantage signal and its prompt is re-queued.

Outages. When generation fails for good (the client already retried UNAVAILABLE), incomplete groups are
re-queued, training pauses with a message, and the producer polls the service until it is back. A restarted
server (new server_id, or a policy version behind ours) needs the current weights again: `next_batch`
runs the trainer's re-sync callback before handing out more groups."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from graders.types import GradeItem, GradeResult
from rollout.types import PromptInput, Sample, SamplingConfig
from trainer.data import Task, TaskStream
from trainer.rewards import RewardOutcome, RewardSpec, combine, grade_items

log = logging.getLogger(__name__)


class RolloutOutage(RuntimeError):
    """The rollout service stayed unreachable longer than the configured outage timeout."""


# gRPC codes that mean "the service is down or restarting" rather than "this request is wrong".
OUTAGE_CODES = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "UNKNOWN", "INTERNAL", "CANCELLED", "ABORTED"}
# A server that answers health checks but fails generation this many times in a row has a real problem.
HEALTHY_FAILURE_LIMIT = 3


def is_outage(err: BaseException) -> bool:
    """True for failures a restarted/returning rollout server cures (not for rejected requests)."""
    if isinstance(err, ConnectionError | TimeoutError):
        return True
    code = getattr(err, "code", None)
    code = code() if callable(code) else code
    name = getattr(code, "name", None)
    if name is None:
        return "unavailable" in str(err).lower() or "reachable" in str(err).lower()
    return name in OUTAGE_CODES


class GenerationFailure(RuntimeError):
    """Generation fails although the rollout service is up (a bug or a bad request, not an outage)."""


class GraderFailure(RuntimeError):
    """The grader service keeps failing: no prompt gets enough graded samples to train on."""


# Consecutive unscorable prompts (in units of prompts_per_step) before the run stops instead of spinning.
UNSCORABLE_LIMIT = 4


class RolloutLike(Protocol):
    def generate_stream(
        self, prompts: Sequence[PromptInput], params: SamplingConfig | None = None, adapter: str | None = None
    ) -> AsyncIterator[Sample]: ...

    async def wait_ready(self, timeout_s: float = ...) -> Any: ...

    async def restarted(self) -> list[str]: ...

    async def info(self) -> list[Any]: ...


class GraderLike(Protocol):
    def grade_stream(self, items: Sequence[GradeItem]) -> AsyncIterator[GradeResult]: ...


@dataclass
class ScoredSample:
    sample: Sample
    outcome: RewardOutcome

    @property
    def reward(self) -> float:
        assert self.outcome.reward is not None
        return self.outcome.reward


@dataclass
class Group:
    """One prompt's samples once all of them are graded (dropped ones excluded)."""

    task: Task
    size: int
    samples: list[ScoredSample] = field(default_factory=list)
    dropped: int = 0
    seq: int = 0
    launch_version: int = 0

    @property
    def done(self) -> bool:
        return len(self.samples) + self.dropped >= self.size

    @property
    def oldest_version(self) -> int:
        return min(s.sample.policy_version for s in self.samples)


@dataclass
class GradeRetry:
    retries: int = 3
    backoff_s: float = 1.0
    timeout_s: float = 120.0


async def grade_sample(
    grader: GraderLike, task: Task, text: str, specs: Sequence[RewardSpec], policy: GradeRetry, counts: Counter[str]
) -> RewardOutcome | None:
    """The combined reward of one completion, re-grading on INFRA_ERROR / call failures; None once the
    retries are spent (the caller drops the sample) or when the request itself is invalid."""
    items = grade_items(task, text, specs)

    async def collect(results: list[GradeResult | None]) -> None:
        async for r in grader.grade_stream(items):
            results[r.index] = r

    for attempt in range(policy.retries + 1):
        try:
            results: list[GradeResult | None] = [None] * len(items)
            await asyncio.wait_for(collect(results), policy.timeout_s)
            if any(r is None for r in results):
                raise RuntimeError(f"grader returned {sum(r is not None for r in results)} of {len(items)} results")
            outcome = combine(task, [r for r in results if r is not None], specs)
            if outcome.reward is not None:
                return outcome
            if not outcome.infra_error:  # INVALID_REQUEST: the task's fields are wrong; retrying cannot help
                counts["grader_invalid"] += 1
                log.warning("task %s: grader rejected the request: %s", task.id, outcome.errors)
                return None
            reason = "; ".join(f"{k}: {v}" for k, v in outcome.errors.items())
        except asyncio.CancelledError:
            raise
        except Exception as e:  # timeouts, UNAVAILABLE after the client's own retries, broken streams
            reason = f"{type(e).__name__}: {e}"
        if attempt < policy.retries:
            counts["grader_retries"] += 1
            log.info("task %s: no verdict (%s); re-grading in %.1fs", task.id, reason, policy.backoff_s * 2**attempt)
            await asyncio.sleep(policy.backoff_s * 2**attempt)
    counts["grader_dropped_samples"] += 1
    log.warning("task %s: dropping a sample after %d grading attempts without a verdict", task.id, policy.retries + 1)
    return None


class RolloutPipeline:
    """Producer of graded groups; see the module docstring. Use `start()`, `next_batch()`, `stop()`."""

    def __init__(
        self,
        rollout: RolloutLike,
        grader: GraderLike,
        specs: Sequence[RewardSpec],
        sampling: SamplingConfig,
        stream: TaskStream,
        *,
        prompts_per_step: int,
        max_staleness: int,
        version: int = 0,
        requeued: Sequence[Task] = (),
        grade_retry: GradeRetry | None = None,
        adapter: Callable[[int], str | None] = lambda v: None,
        outage_timeout_s: float = 1800.0,
    ) -> None:
        self.rollout, self.grader, self.specs = rollout, grader, list(specs)
        self.sampling, self.stream = sampling, stream
        self.P, self.max_staleness = prompts_per_step, max_staleness
        self.version = version
        self.grade_retry = grade_retry or GradeRetry()
        self.adapter = adapter
        self.outage_timeout_s = outage_timeout_s
        self.counts: Counter[str] = Counter()
        self._requeue: deque[Task] = deque(requeued)
        self._inflight: dict[int, Group] = {}  # launched, not yet complete
        self._ready: deque[Group] = deque()
        # Groups handed to the trainer for steps that changed the weights, over the whole run.
        self._handed = version * prompts_per_step
        self._seq = 0
        self._changed = asyncio.Condition()
        self._paused = False
        self._resync_needed = False
        self._failure: BaseException | None = None
        self._unscorable_streak = 0
        self._healthy_failures = 0
        self._producer: asyncio.Task[None] | None = None
        self._chunks: set[asyncio.Task[None]] = set()
        self.gen_tokens = 0

    # ------------------------------------------------------------------ trainer-facing

    def start(self) -> None:
        self._producer = asyncio.create_task(self._produce())

    async def stop(self) -> None:
        tasks = [t for t in (self._producer, *self._chunks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def alive(self) -> int:
        return len(self._inflight) + len(self._ready)

    @property
    def paused(self) -> bool:
        return self._paused

    async def set_version(self, version: int) -> None:
        """The rollout service now serves `version` (called after each verified weight push)."""
        async with self._changed:
            self.version = version
            self._resync_needed = False
            self._changed.notify_all()

    async def batch_without_update(self, groups: int) -> None:
        """The trainer used `groups` handed-out groups without changing the weights (nothing to learn from), so
        the version stays. The launch limit counts P groups per version; without giving their slots back,
        each such step would shrink the look-ahead by P, and P × (max_staleness + 1) of them would stall it."""
        async with self._changed:
            self._handed -= groups
            self._changed.notify_all()

    def inflight_tasks(self) -> list[Task]:
        """Prompts taken from the data stream but not yet trained on, in the order they will be redone."""
        ready = [g.task for g in self._ready]
        running = [g.task for _, g in sorted(self._inflight.items())]
        return [*self._requeue, *ready, *running]

    async def next_batch(self, version: int, resync: Callable[[], Awaitable[None]]) -> tuple[list[Group], int]:
        """P fresh groups for the trainer at `version` (stale ones are dropped and re-queued). Returns the
        groups and how many were dropped as stale. Runs `resync` when a restarted server needs weights."""
        batch: list[Group] = []
        stale = 0
        while len(batch) < self.P:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: self._handout_ready(version) or self._resync_needed or self._failure is not None
                )
                if self._failure is not None:
                    raise self._failure
                if self._resync_needed:
                    group = None
                else:
                    group = min(self._ready, key=lambda g: (g.oldest_version, g.seq))
                    self._ready.remove(group)
                    if version - group.oldest_version > self.max_staleness:
                        stale += 1
                        self.counts["stale_groups"] += 1
                        self.counts["stale_samples"] += len(group.samples)
                        self._requeue.append(group.task)
                    else:
                        batch.append(group)
                        self._handed += 1
                    self._changed.notify_all()
            if group is None:
                await resync()
                await self.set_version(self.version)
        return batch, stale

    def _handout_ready(self, version: int) -> bool:
        """A ready group can be handed out — unless an older group still being graded would turn stale if a
        newer one took its place now (groups finish out of order; the oldest go first)."""
        if not self._ready:
            return False
        best = min(g.oldest_version for g in self._ready)
        deadline = version + 1 - self.max_staleness  # launched before this: stale at the next step
        if best < deadline:
            return True
        return not any(g.launch_version < deadline for g in self._inflight.values())

    def take_counts(self) -> Counter[str]:
        """Counters since the last call (dropped, retried, re-queued, ...)."""
        out, self.counts = self.counts, Counter()
        return out

    # ------------------------------------------------------------------ producer

    def _room(self) -> int:
        if self._paused or self._resync_needed:
            return 0
        limit = (self.version + self.max_staleness + 1) * self.P
        return max(0, min(self.P, limit - self._handed - self.alive))

    def _take(self, n: int) -> list[Task]:
        out: list[Task] = []
        while self._requeue and len(out) < n:
            out.append(self._requeue.popleft())
        return out + self.stream.take(n - len(out))

    async def _produce(self) -> None:
        try:
            while True:
                async with self._changed:
                    await self._changed.wait_for(lambda: self._room() > 0)
                    groups = {}
                    for task in self._take(self._room()):
                        self._seq += 1
                        groups[self._seq] = Group(task, self.sampling.n, seq=self._seq, launch_version=self.version)
                    self._inflight.update(groups)
                chunk = asyncio.create_task(self._run_chunk(groups))
                self._chunks.add(chunk)
                chunk.add_done_callback(self._chunks.discard)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            await self._fail(e)

    async def _fail(self, e: BaseException) -> None:
        log.error("rollout pipeline failed: %s", e)
        async with self._changed:
            self._failure = e
            self._changed.notify_all()

    async def _run_chunk(self, groups: dict[int, Group]) -> None:
        order = list(groups.values())
        prompts = [PromptInput(id=g.task.id, messages=g.task.messages) for g in order]
        grading: set[asyncio.Task[None]] = set()
        try:
            stream = self.rollout.generate_stream(prompts, self.sampling, self.adapter(self.version))
            async for sample in stream:
                self.gen_tokens += len(sample.token_ids)
                grading.add(asyncio.create_task(self._grade_into(order[sample.prompt_index], sample)))
            await asyncio.gather(*grading)
        except asyncio.CancelledError:
            for t in grading:
                t.cancel()
            raise
        except Exception as e:
            for t in grading:
                t.cancel()
            await asyncio.gather(*grading, return_exceptions=True)
            await self._requeue_unfinished(groups)
            if not is_outage(e):
                await self._fail(GenerationFailure(f"rollout service rejected a generation request: {e}"))
                return
            try:
                await self._outage(e)
            except BaseException as fatal:
                await self._fail(fatal)
            return
        self._healthy_failures = 0

    async def _grade_into(self, group: Group, sample: Sample) -> None:
        outcome = await grade_sample(self.grader, group.task, sample.text, self.specs, self.grade_retry, self.counts)
        async with self._changed:
            if group.seq not in self._inflight:
                return  # re-queued meanwhile (outage)
            if outcome is None:
                group.dropped += 1
            else:
                group.samples.append(ScoredSample(sample, outcome))
            if group.done:
                del self._inflight[group.seq]
                if len(group.samples) >= 2:
                    self._ready.append(group)
                    self._unscorable_streak = 0
                else:
                    self.counts["unscorable_groups"] += 1
                    self._requeue.append(group.task)
                    self._unscorable_streak += 1
                    if self._unscorable_streak >= UNSCORABLE_LIMIT * self.P:
                        self._failure = GraderFailure(
                            f"{self._unscorable_streak} prompts in a row got fewer than two graded samples: the "
                            "grader service gives no verdicts (see the warnings above)"
                        )
                self._changed.notify_all()

    async def _requeue_unfinished(self, groups: dict[int, Group]) -> None:
        async with self._changed:
            for seq, g in groups.items():
                if self._inflight.pop(seq, None) is not None:
                    self._requeue.append(g.task)
                    self.counts["requeued_outage"] += 1
            self._changed.notify_all()

    # ------------------------------------------------------------------ outages

    async def _outage(self, err: Exception) -> None:
        """Pause until the rollout service answers again; flag a re-sync when it lost our weights."""
        async with self._changed:
            if self._paused:  # another chunk is already waiting for the service
                await self._changed.wait_for(lambda: not self._paused)
                return
            self._paused = True
        self.counts["rollout_outages"] += 1
        t0 = time.monotonic()
        log.warning("rollout service unreachable (%s): training paused until it is back", err)
        first = True
        while True:
            try:
                await self.rollout.wait_ready(timeout_s=10.0)
                if first:
                    self._healthy_failures += 1
                    if self._healthy_failures > HEALTHY_FAILURE_LIMIT:
                        raise GenerationFailure(f"generation keeps failing on a healthy rollout service: {err}")
                restarted = await self.rollout.restarted()
                behind = [i.address for i in await self.rollout.info() if i.policy_version < self.version]
                break
            except GenerationFailure:
                raise
            except Exception as e:
                first = False
                waited = time.monotonic() - t0
                if waited > self.outage_timeout_s:
                    raise RolloutOutage(
                        f"rollout service unreachable for {waited:.0f}s (rollout.outage_timeout_s): {e}"
                    ) from None
                log.warning("rollout service still unreachable after %.0fs; training stays paused", waited)
        log.warning(
            "rollout service back after %.0fs%s", time.monotonic() - t0,
            f"; re-syncing weights (restarted: {restarted or behind})" if restarted or behind else "",
        )  # fmt: skip
        async with self._changed:
            self._paused = False
            self._resync_needed = bool(restarted or behind) and self.version > 0
            self.counts["paused_s"] += int(time.monotonic() - t0)
            self._changed.notify_all()
