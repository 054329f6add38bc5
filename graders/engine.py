"""The grading engine behind the gRPC servicer: picks the sandbox, owns the worker pool, admits work within
the configured bound, and turns every failure of the machinery into INFRA_ERROR (never a verdict)."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import AsyncIterator, Sequence

from graders.config import GradersConfig
from graders.context import GradeContext, InfraError
from graders.registry import REGISTRY, Registry, load_builtins
from graders.sandbox.base import ExecLimits, Sandbox, SandboxError
from graders.types import GradeItem, GradeResult, GradeStatus, Outcome
from graders.workers import WorkerPool

log = logging.getLogger(__name__)

BWRAP_WARNING = (
    "WARNING: no Docker engine is reachable; sandboxed graders fall back to bubblewrap (per-process rlimits, "
    "no memory cgroup). Do not grade untrusted code at scale this way."
)


class Overloaded(Exception):
    """Admitting the request would exceed concurrency.max_inflight (retry later)."""


class TooLarge(ValueError):
    """The request alone exceeds what the server ever admits (split it)."""


async def make_sandbox(cfg: GradersConfig) -> Sandbox | None:
    """The configured backend, started; "auto" prefers docker and falls back to bwrap with a loud warning."""
    from graders.sandbox import bwrap, docker_pool

    backend = cfg.sandbox.backend
    defaults = ExecLimits.resolve(None, cfg.limits)
    if backend == "none":
        return None
    if backend == "auto":
        backend = "docker" if docker_pool.engine_reachable(cfg.sandbox.docker_url) else "bwrap"
        if backend == "bwrap":
            log.warning(BWRAP_WARNING)
            print(BWRAP_WARNING, file=sys.stderr, flush=True)
    sandbox: Sandbox
    if backend == "docker":
        sandbox = docker_pool.DockerPool(cfg.sandbox.image, cfg.sandbox.pool_size, defaults, cfg.sandbox.docker_url)
    else:
        sandbox = bwrap.BwrapSandbox(cfg.sandbox.pool_size, cfg.sandbox.bwrap_python)
    await sandbox.start()
    return sandbox


class GradingEngine:
    """Grades items concurrently; at most `max_inflight` items are admitted at once."""

    def __init__(self, cfg: GradersConfig, registry: Registry | None = None) -> None:
        self.cfg = cfg
        if registry is None:
            load_builtins()
            REGISTRY.load_entry_points()
        self.registry = registry or REGISTRY
        self.sandbox: Sandbox | None = None
        self.workers = WorkerPool(cfg.workers.processes)
        self.inflight = 0

    @property
    def backend_name(self) -> str:
        return self.sandbox.name if self.sandbox is not None else "none"

    async def start(self) -> None:
        await asyncio.gather(self.workers.start(), self._start_sandbox())

    async def _start_sandbox(self) -> None:
        self.sandbox = await make_sandbox(self.cfg)

    async def close(self) -> None:
        await self.workers.close()
        if self.sandbox is not None:
            await self.sandbox.close()

    def admit(self, n: int) -> None:
        """Reserve room for n items or raise Overloaded (the server answers RESOURCE_EXHAUSTED)."""
        limit = self.cfg.concurrency.max_inflight
        most = min(limit, self.cfg.concurrency.max_items_per_request)
        if n > most:
            raise TooLarge(f"{n} items in one request; this server admits at most {most} (split the batch)")
        if self.inflight + n > limit:
            raise Overloaded(f"server busy: {self.inflight} items in flight, limit {limit}; retry later")
        self.inflight += n

    def release(self, n: int) -> None:
        self.inflight -= n

    async def grade_one(self, item: GradeItem, index: int = 0, request_error: str | None = None) -> GradeResult:
        start = time.monotonic()
        outcome = await self._outcome(item, request_error)
        reward = outcome.reward if math.isfinite(outcome.reward) else 0.0
        return GradeResult(
            id=item.id, grader=item.grader, reward=reward, status=outcome.status, details=outcome.details,
            message=outcome.message, duration_s=time.monotonic() - start, index=index,
        )

    async def _outcome(self, item: GradeItem, request_error: str | None) -> Outcome:
        if request_error is not None:
            return Outcome.invalid(request_error)
        spec = self.registry.get(item.grader)
        if spec is None:
            return Outcome.invalid(f"unknown grader {item.grader!r}; known: {', '.join(self.registry.names())}")
        ctx = GradeContext(ExecLimits.resolve(item.limits, self.cfg.limits), self.sandbox, self.workers)
        try:
            return await spec.run(item.completion, item.fields, ctx)
        except (InfraError, SandboxError) as e:
            return Outcome.infra(str(e))
        except Exception as e:  # a grader bug must not become a verdict on the model
            log.exception("grader %s crashed", item.grader)
            return Outcome.infra(f"grader {item.grader!r} crashed: {type(e).__name__}: {e}")

    async def grade_many(
        self, items: Sequence[tuple[GradeItem, str | None]]
    ) -> AsyncIterator[GradeResult]:
        """Yield results as they finish (GradeResult.index says which item)."""
        tasks = [asyncio.ensure_future(self.grade_one(item, i, err)) for i, (item, err) in enumerate(items)]
        try:
            for fut in asyncio.as_completed(tasks):
                yield await fut
        finally:
            for t in tasks:
                t.cancel()


def infra_result(item: GradeItem, index: int, message: str) -> GradeResult:
    return GradeResult(item.id, item.grader, 0.0, GradeStatus.INFRA_ERROR, [], message, 0.0, index)
