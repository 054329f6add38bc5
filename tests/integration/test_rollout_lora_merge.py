"""The rollout server with lora_mode=merge on the real vLLM CPU engine (tiny random Llama, float32): merged
adapters generate exactly what peft's model computes, replace each other, and give way to full updates.
The last test stops the server with SIGTERM and checks the graceful drain of an in-flight generation."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import torch
from test_rollout_service import (
    LOGPROB_TOL,
    PROMPT,
    TOKEN,
    greedy,
    hf_logprobs,
    lora_adapter,
    max_diff,
    wait_serving,
)

from rlvr.procs import ServiceProcess
from rollout.client import RolloutClient, RolloutError
from rollout.types import SamplingConfig


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    args = ["--model", str(tiny_model_dir), "--dtype", "float32", "--max-model-len", "512", "--enable-lora",
            "--max-lora-rank", "8", "--lora-mode", "merge", "--token", TOKEN, "--kv-cache-gib", "0.25",
            "--threads", "1", "--grace-s", "60"]  # fmt: skip
    proc = ServiceProcess("rollout.server", args, "rollout", log_path=tmp_path_factory.mktemp("logs") / "rollout.log")
    address = proc.start(timeout_s=300)
    wait_serving(proc, address)
    yield proc
    proc.stop()


@pytest.fixture
async def client(server: ServiceProcess) -> AsyncIterator[RolloutClient]:
    async with RolloutClient(server.address or "", token=TOKEN, retry_s=5) as c:
        yield c


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


async def _check_matches(client: RolloutClient, model, adapter: str, version: int) -> None:
    s = (await client.generate([PROMPT], SamplingConfig(max_tokens=16), adapter=adapter))[0]
    assert s.policy_version == version
    assert max_diff(s.logprobs, hf_logprobs(model, PROMPT, s.token_ids)) < LOGPROB_TOL


async def test_merged_adapters_match_peft_and_replace_each_other(client: RolloutClient, hf) -> None:
    base = await greedy(client)
    for version, (seed, kw) in enumerate([(1, {}), (2, {"use_rslora": True}), (3, {"name": "other"})], start=1):
        name = kw.pop("name", "pol")
        model, config, tensors = lora_adapter(hf, seed, **kw)
        assert await client.load_adapter(name, config, tensors, version=version) == version
        # Each adapter is merged into the base weights, not into the previously merged ones.
        await _check_matches(client, model, name, version)
        assert (await client.info())[0].adapters == [name]
    assert await greedy(client, adapter="other") != base
    with pytest.raises(RolloutError, match="unknown adapter") as err:  # "pol" was replaced by "other"
        await greedy(client, adapter="pol")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_base_generation_is_refused_while_an_adapter_is_merged(client: RolloutClient) -> None:
    with pytest.raises(RolloutError, match="lora_mode=merge") as err:
        await greedy(client)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_unmergeable_and_bad_adapters_keep_the_old_one(client: RolloutClient, hf) -> None:
    before = await greedy(client, adapter="other")
    _, config, tensors = lora_adapter(hf, 5)
    name = next(k for k in tensors if "lora_B" in k)
    for cfg, ts, match in [
        ({**config, "use_dora": True}, tensors, "use_dora"),
        (config, {**tensors, name: torch.zeros(3, 3)}, "expected"),
    ]:
        with pytest.raises(RolloutError, match=match) as err:
            await client.load_adapter("pol", cfg, ts, version=99)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert await greedy(client, adapter="other") == before
    assert (await client.info())[0].adapters == ["other"]


async def test_a_full_update_replaces_the_merged_adapter_and_becomes_the_new_base(client: RolloutClient, hf) -> None:
    new = copy.deepcopy(hf)
    with torch.no_grad():
        for p in new.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    v = (await client.info())[0].policy_version
    assert await client.update_weights(new.state_dict(), version=v + 1) == v + 1
    assert (await client.info())[0].adapters == []
    s = (await client.generate([PROMPT], SamplingConfig(max_tokens=16)))[0]
    assert max_diff(s.logprobs, hf_logprobs(new.eval(), PROMPT, s.token_ids)) < LOGPROB_TOL
    model, config, tensors = lora_adapter(new, 7)
    assert await client.load_adapter("pol", config, tensors, version=v + 2) == v + 2
    await _check_matches(client, model, "pol", v + 2)


async def test_sigterm_drains_an_in_flight_generation(server: ServiceProcess, client: RolloutClient) -> None:
    """SIGTERM to the server process alone: the call in flight completes in full, then the process exits 0."""
    assert server.proc is not None
    params = SamplingConfig(n=32, max_tokens=400, temperature=1.0)
    gen = asyncio.create_task(client.generate([PROMPT], params, adapter="pol"))
    for _ in range(200):  # signal only once the engine is working on it
        if (await client.info())[0].running_requests > 0:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the generation never started")
    os.kill(server.proc.pid, signal.SIGTERM)
    samples = await gen
    assert len(samples) == 32 and all(s.finish_reason in ("length", "stop") for s in samples)
    assert sum(len(s.token_ids) for s in samples) > 32 * 50  # a long generation really was in flight
    assert await asyncio.to_thread(server.proc.wait, 120) == 0
    assert server.log_path is not None
    assert "draining in-flight calls" in server.log_path.read_text()
