"""Async client of the grader service, used by the GRPO trainer and `rlvr grade`.

    async with GraderClient("127.0.0.1:50051") as client:
        await client.wait_ready(30)
        async for result in client.grade_stream(items):   # as they finish; result.index = position
            if result.status.is_verdict: ...

UNAVAILABLE (server restarting, connection refused) is retried with exponential backoff; a stream that
breaks midway resends only the items whose results have not arrived. RESOURCE_EXHAUSTED (server busy) is
retried too unless retry_overload=False. Every call has a deadline."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from graders.types import GradeItem, GradeResult, item_to_pb, result_from_pb
from rlvr.channel import aio_channel, auth_metadata
from rlvr.v1 import grader_pb2 as pb
from rlvr.v1 import grader_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from graders.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GraderInfo:
    name: str
    description: str
    required_fields: list[str]
    optional_fields: list[str]
    sandboxed: bool


@dataclass(frozen=True)
class Catalog:
    graders: list[GraderInfo]
    sandbox_backend: str

    def names(self) -> list[str]:
        return [g.name for g in self.graders]

    @classmethod
    def of_registry(cls, registry: Registry, sandbox_backend: str = "none") -> Catalog:
        """What ListGraders would answer for `registry` (for in-process callers and tests)."""
        return cls([GraderInfo(s.name, s.description, list(s.required), list(s.optional), s.sandboxed)
                    for s in registry.specs()], sandbox_backend)  # fmt: skip


class GraderClient:
    def __init__(
        self,
        address: str,
        token: str | None = None,
        tls_ca: Path | str | None = None,
        timeout_s: float = 600.0,
        retries: int = 6,
        retry_overload: bool = True,
    ) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self.retries = retries
        self._retry_codes = {grpc.StatusCode.UNAVAILABLE}
        if retry_overload:
            self._retry_codes.add(grpc.StatusCode.RESOURCE_EXHAUSTED)
        self._metadata = auth_metadata(token)
        self._channel = aio_channel(address, Path(tls_ca) if tls_ca else None)
        self._stub = pb_grpc.GraderStub(self._channel)

    async def __aenter__(self) -> GraderClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _backoff(self, attempt: int, err: grpc.aio.AioRpcError) -> None:
        delay = min(10.0, 0.2 * 2**attempt) * (0.5 + random.random())
        log.warning("grader call failed (%s: %s); retry %d in %.1fs", err.code().name, err.details(),
                    attempt + 1, delay)
        await asyncio.sleep(delay)

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait until the health service reports SERVING; TimeoutError otherwise."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"grader service at {self.address} not ready after {timeout_s:.0f}s")
            await asyncio.sleep(0.2)

    async def list_graders(self) -> Catalog:
        for attempt in range(self.retries + 1):
            try:
                reply = await self._stub.ListGraders(
                    pb.ListGradersRequest(), timeout=self.timeout_s, metadata=self._metadata)
                break
            except grpc.aio.AioRpcError as e:
                if e.code() not in self._retry_codes or attempt == self.retries:
                    raise
                await self._backoff(attempt, e)
        infos = [GraderInfo(g.name, g.description, list(g.required_fields), list(g.optional_fields), g.sandboxed)
                 for g in reply.graders]
        return Catalog(infos, reply.sandbox_backend)

    async def grade(self, items: Iterable[GradeItem]) -> list[GradeResult]:
        """Grade a batch; results in the order of `items`."""
        batch = list(items)
        results: list[GradeResult | None] = [None] * len(batch)
        async for r in self.grade_stream(batch):
            results[r.index] = r
        return [r for r in results if r is not None]

    async def grade_stream(self, items: Iterable[GradeItem]) -> AsyncIterator[GradeResult]:
        """Yield each result as soon as it is ready; `result.index` is the item's position in `items`."""
        batch = list(items)
        pending = list(range(len(batch)))
        attempt = 0
        while pending:
            request = pb.GradeRequest(items=[item_to_pb(batch[i]) for i in pending])
            got: set[int] = set()
            try:
                call = self._stub.GradeStream(request, timeout=self.timeout_s, metadata=self._metadata)
                async for msg in call:
                    result = result_from_pb(msg)
                    result.index = pending[msg.index]
                    got.add(msg.index)
                    yield result
                pending = []
            except grpc.aio.AioRpcError as e:
                pending = [p for k, p in enumerate(pending) if k not in got]
                if e.code() not in self._retry_codes or attempt >= self.retries:
                    raise
                if got:
                    attempt = 0  # progress was made: the server is up
                await self._backoff(attempt, e)
                attempt += 1
