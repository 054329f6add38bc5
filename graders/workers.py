"""A pool of killable worker processes for CPU-bound checks that may not terminate (math-verify on
`\\boxed{9^{9^{9^9}}}`, a catastrophically backtracking regex).

Each worker is a child process (`python -m graders.worker_main`) that answers one JSON request per line. A
call that misses its deadline gets its worker SIGKILLed and replaced in the background, so a pathological
input costs at most its deadline and never blocks other calls or the event loop. No signal.alarm and no
threads: killing a process is the only reliable way to stop sympy."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from graders.context import InfraError

log = logging.getLogger(__name__)


class WorkerTimeout(Exception):
    """The call missed its deadline; its worker was killed."""


@dataclass(eq=False)
class _Worker:
    proc: asyncio.subprocess.Process

    async def call(self, request: bytes) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(request)
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise InfraError(f"worker process {self.proc.pid} exited (code {self.proc.returncode})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


class WorkerPool:
    """`await pool.call("math", {...}, timeout_s)`; at most `size` calls run at once, the rest queue."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._spawning: set[asyncio.Task[None]] = set()
        self._dying: set[asyncio.Task[int]] = set()
        self._closed = False

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn() for _ in range(self.size)))

    async def _spawn(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-u", "-m", "graders.worker_main",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "OMP_NUM_THREADS": "1"}, limit=16 * 1024 * 1024,
        )
        worker = _Worker(proc)
        assert proc.stdout is not None
        ready = await proc.stdout.readline()  # imports (sympy) done: the first call is not slow
        if ready.strip() != b"ready":
            worker.kill()
            raise InfraError("worker process failed to start")
        if self._closed:
            worker.kill()
            return
        self._all.add(worker)
        self._idle.put_nowait(worker)

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._all.discard(worker)
        reaper = asyncio.get_running_loop().create_task(worker.proc.wait())  # no zombie, no open pipes
        self._dying.add(reaper)
        reaper.add_done_callback(self._dying.discard)
        if self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._respawn())
        self._spawning.add(task)
        task.add_done_callback(self._spawning.discard)

    async def _respawn(self) -> None:
        for attempt in range(5):
            try:
                await self._spawn()
                return
            except Exception as e:  # keep trying: a pool that shrinks to zero hangs every call
                log.error("worker respawn failed (attempt %d): %s", attempt + 1, e)
                await asyncio.sleep(0.5 * (attempt + 1))

    async def call(self, fn: str, args: dict[str, Any], timeout_s: float) -> Any:
        """Run `fn(**args)` in a worker; WorkerTimeout after timeout_s (queueing time not counted)."""
        if self._closed:
            raise InfraError("worker pool is closed")
        worker = await self._idle.get()
        request = (json.dumps({"fn": fn, "args": args}) + "\n").encode()
        try:
            reply = await asyncio.wait_for(worker.call(request), timeout_s)
        except TimeoutError:
            self._replace(worker)
            raise WorkerTimeout(f"{fn} exceeded its {timeout_s:g}s deadline") from None
        except BaseException:
            self._replace(worker)  # cancelled mid-call or broken pipe: its state is unknown
            raise
        self._idle.put_nowait(worker)
        if not reply.get("ok"):
            raise InfraError(f"{fn} failed in worker: {reply.get('error')}")
        return reply.get("value")

    async def close(self) -> None:
        self._closed = True
        for task in list(self._spawning):
            task.cancel()
        for worker in list(self._all):
            worker.kill()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.proc.wait(), 5)
        self._all.clear()
        if self._dying:
            await asyncio.wait(list(self._dying), timeout=5)
