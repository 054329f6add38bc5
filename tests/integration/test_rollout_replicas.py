"""Two rollout replicas behind one client: batch sharding, pushes to all, and recovery from kill -9."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from rlvr.procs import ServiceProcess
from rollout.client import RolloutClient
from rollout.types import SamplingConfig

ARGS = ["--max-model-len", "256", "--kv-cache-gib", "0.25", "--threads", "1"]
PROMPTS = [[1, 2, 3 + i] for i in range(8)]


def _start(model: Path, log: Path, port: int = 0) -> ServiceProcess:
    proc = ServiceProcess(
        "rollout.server", ["--model", str(model), "--port", str(port), *ARGS], "rollout", log_path=log
    )
    proc.start(timeout_s=120)
    return proc


async def _ready(addresses: list[str], procs: list[ServiceProcess]) -> None:
    async with RolloutClient(addresses) as c:
        for _ in range(60):
            dead = [p.tail() for p in procs if not p.alive()]
            assert not dead, dead[0]
            try:
                await c.wait_ready(5)
                return
            except TimeoutError:
                continue
        raise TimeoutError("replicas not ready")


@pytest.fixture(scope="module")
def replicas(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServiceProcess]]:
    logs = tmp_path_factory.mktemp("replica-logs")
    procs = [_start(tiny_model_dir, logs / f"r{i}.log") for i in range(2)]
    try:
        asyncio.run(_ready([p.address or "" for p in procs], procs))
        yield procs
    finally:
        for p in procs:
            p.stop()


@pytest.fixture(scope="module")
def state_dict(tiny_model_dir: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()


def _addresses(procs: list[ServiceProcess]) -> list[str]:
    return [p.address or "" for p in procs]


async def test_one_client_spreads_a_batch_and_pushes_to_all(replicas, state_dict) -> None:
    a, b = _addresses(replicas)
    for address, version in ((a, 1), (b, 2)):  # tag each replica with its own version
        async with RolloutClient(address) as single:
            assert await single.update_weights(state_dict, version) == version
    async with RolloutClient([a, b]) as client:
        samples = await client.generate(PROMPTS, SamplingConfig(max_tokens=4))
        assert [s.prompt_index for s in samples] == list(range(8))
        assert {s.policy_version for s in samples} == {1, 2}  # both replicas served part of the batch
        assert await client.update_weights(state_dict, version=3) == 3
        assert {i.policy_version for i in await client.info()} == {3}
        samples = await client.generate(PROMPTS, SamplingConfig(max_tokens=4))
        assert {s.policy_version for s in samples} == {3}


async def test_kill_9_and_restart_is_recovered(replicas, state_dict, tiny_model_dir: Path, tmp_path: Path) -> None:
    a, b = _addresses(replicas)
    async with RolloutClient([a, b], backoff_s=0.1) as client:
        await client.wait_ready(30)
        assert await client.restarted() == []
        replicas[0].kill()
        samples = await client.generate(PROMPTS, SamplingConfig(max_tokens=4))  # the survivor takes it all
        assert len(samples) == 8
        port = int(a.rsplit(":", 1)[1])
        replicas[0] = _start(tiny_model_dir, tmp_path / "restarted.log", port=port)
        await client.wait_ready(300)
        assert await client.restarted() == [a]  # new server_id: its pushed weights are gone
        assert {i.address: i.policy_version for i in await client.info()} == {a: 0, b: 3}
        assert await client.update_weights(state_dict, version=3) == 3  # the caller re-syncs
        samples = await client.generate(PROMPTS, SamplingConfig(max_tokens=4))
        assert {s.policy_version for s in samples} == {3}
