"""VersionGate: the rule that every sample is tagged with the weights version that produced it.

Generations hold the gate shared for their whole duration; a weight or adapter swap holds it exclusively.
A waiting swap blocks new generations (writer preference), so a swap waits only for the generations
already in flight, never behind an endless stream of new ones. A generation therefore reads the version
once at its start and that version cannot change until it has finished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class VersionGate:
    """An asyncio readers-writer lock with writer preference."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @property
    def readers(self) -> int:
        return self._readers

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writing and self._writers_waiting == 0)
            self._readers += 1
        try:
            yield
        finally:
            async with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @asynccontextmanager
    async def exclusive(self, deadline: float | None = None) -> AsyncIterator[None]:
        """Exclusive hold; only the wait for it is bounded by `deadline` (loop time), not the hold."""
        async with self._cond:
            self._writers_waiting += 1
            try:
                async with asyncio.timeout_at(deadline):
                    await self._cond.wait_for(lambda: not self._writing and self._readers == 0)
            finally:
                self._writers_waiting -= 1
                self._cond.notify_all()  # readers blocked on a writer that gave up may go
            self._writing = True
        try:
            yield
        finally:
            async with self._cond:
                self._writing = False
                self._cond.notify_all()


async def run_to_completion(coro: Coroutine[Any, Any, T]) -> T:
    """Await `coro` to its end even if the caller is cancelled meanwhile (then re-raise the cancellation).

    A weight swap must not be cut in half, and the gate must stay closed until it has really finished."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = not task.done() or cancelled
    if cancelled:
        raise asyncio.CancelledError
    return task.result()
