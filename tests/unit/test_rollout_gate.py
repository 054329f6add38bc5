"""The version gate: swaps wait for in-flight generations and hold back new ones."""

from __future__ import annotations

import asyncio

import pytest

from rollout.gate import VersionGate, run_to_completion


async def test_swap_waits_for_in_flight_and_blocks_new_generations() -> None:
    gate, events = VersionGate(), []
    release = asyncio.Event()

    async def generation(name: str, wait: asyncio.Event | None = None) -> None:
        async with gate.shared():
            events.append(f"start {name}")
            if wait:
                await wait.wait()
            events.append(f"end {name}")

    async def swap() -> None:
        async with gate.exclusive():
            events.append("swap")

    first = asyncio.create_task(generation("old", release))
    await asyncio.sleep(0.01)
    swapping = asyncio.create_task(swap())
    await asyncio.sleep(0.01)
    late = asyncio.create_task(generation("new"))
    await asyncio.sleep(0.01)
    assert events == ["start old"]  # the swap waits, and the late generation waits behind it
    release.set()
    await asyncio.gather(first, swapping, late)
    assert events == ["start old", "end old", "swap", "start new", "end new"]


async def test_swap_wait_is_bounded_and_gives_way_on_timeout() -> None:
    gate = VersionGate()
    async with gate.shared():
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with gate.exclusive(deadline=loop.time() + 0.05):
                pass
        async with gate.shared():  # a swap that gave up no longer blocks generations
            pass


async def test_run_to_completion_survives_cancellation() -> None:
    done = asyncio.Event()

    async def swap() -> None:
        await asyncio.sleep(0.05)
        done.set()

    task = asyncio.create_task(run_to_completion(swap()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert done.is_set()
