"""The rollout server on SmolLM2-135M-Instruct (bf16, tied embeddings) where realism matters: chat
quality, bf16 logprob agreement with HF, full updates from an HF state dict, and a graceful SIGTERM drain."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from rlvr.procs import ServiceProcess
from rollout.client import RolloutClient
from rollout.types import PromptInput, SamplingConfig

# bf16 engine vs an HF float32 forward pass of the same bf16 weights; vLLM's bf16 kernels round
# differently, so per-token differences are much larger than in float32 (measured: mean 0.046, max 0.21).
BF16_MEAN_TOL, BF16_MAX_TOL = 0.1, 0.6
READY_TIMEOUT_S = 300
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def server(base_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # bf16 pinned: "auto" would serve float32 on a CPU without bf16 kernels (rlvr/hardware.py)
    args = ["--model", str(base_model_dir), "--max-model-len", "1024", "--kv-cache-gib", "0.5", "--threads", "2",
            "--dtype", "bfloat16"]  # fmt: skip
    proc = ServiceProcess("rollout.server", args, "rollout", log_path=tmp_path_factory.mktemp("logs") / "smollm.log")
    proc.start(timeout_s=120)

    async def ready() -> None:
        # Up to READY_TIMEOUT_S in short waits, so a server that dies while loading fails the test with its log
        # instead of a long timeout; running out of time fails too (never falls through to the tests).
        async with RolloutClient(proc.address or "") as c:
            for _ in range(READY_TIMEOUT_S // 5):
                assert proc.alive(), f"rollout server exited while loading:\n{proc.tail()}"
                try:
                    await c.wait_ready(5)
                    return
                except TimeoutError:
                    continue
        pytest.fail(f"rollout server not SERVING after {READY_TIMEOUT_S}s:\n{proc.tail()}")

    asyncio.run(ready())
    yield proc
    proc.stop()


@pytest.fixture
async def client(server: ServiceProcess):
    async with RolloutClient(server.address or "") as c:
        yield c


@pytest.fixture(scope="module")
def hf(base_model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.bfloat16).eval()


async def greedy(client: RolloutClient) -> list[int]:
    s = await client.generate([PromptInput("q", messages=QUESTION)], SamplingConfig(temperature=0, max_tokens=12))
    return s[0].token_ids


async def test_chat_answer_is_sensible(client: RolloutClient) -> None:
    s = await client.generate([PromptInput("q", messages=QUESTION)], SamplingConfig(temperature=0, max_tokens=12))
    assert "Paris" in s[0].text and (await client.info())[0].dtype == "bfloat16"


async def test_bf16_logprobs_are_close_to_hf(client: RolloutClient, hf) -> None:
    samples = await client.generate(
        [PromptInput("q", messages=QUESTION)], SamplingConfig(n=4, max_tokens=32, temperature=1.0)
    )
    model = hf.float()  # float32 compute on the bf16-rounded weights, as a trainer would
    diffs = []
    for s in samples:
        ids = torch.tensor([s.prompt_token_ids + s.token_ids])
        with torch.no_grad():
            lp = torch.log_softmax(model(ids).logits[0].float(), -1)
        ref = [lp[len(s.prompt_token_ids) - 1 + i, t].item() for i, t in enumerate(s.token_ids)]
        diffs += [abs(a - b) for a, b in zip(s.logprobs, ref, strict=True)]
    hf.to(torch.bfloat16)
    mean, worst = sum(diffs) / len(diffs), max(diffs)
    print(f"bf16 logprob |vLLM - HF fp32|: mean {mean:.4f}, max {worst:.4f} over {len(diffs)} tokens")
    assert mean < BF16_MEAN_TOL and worst < BF16_MAX_TOL


async def test_full_update_from_an_hf_state_dict(client: RolloutClient, hf) -> None:
    before = await greedy(client)
    sd = hf.state_dict()
    assert "lm_head.weight" in sd  # HF includes the tied head; the server accepts it and ignores the copy
    assert await client.update_weights(sd, version=1) == 1
    assert await greedy(client) == before
    without_head = {k: v for k, v in sd.items() if k != "lm_head.weight"}
    assert await client.update_weights(without_head, version=2) == 2
    assert await greedy(client) == before
    changed = dict(without_head, **{"model.embed_tokens.weight": -sd["model.embed_tokens.weight"]})
    assert await client.update_weights(changed, version=3) == 3
    assert await greedy(client) != before
    assert await client.update_weights(sd, version=4) == 4
    assert await greedy(client) == before
