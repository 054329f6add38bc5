"""The rollout server on the real vLLM CPU engine (tiny random Llama, float32 so logprobs can be compared
tightly with an HF forward pass of the same weights). One server for the whole module; tests that change
weights come after the ones that assume the original weights."""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rlvr.channel import aio_channel, auth_metadata
from rlvr.procs import ServiceProcess
from rlvr.v1 import rollout_pb2 as pb
from rlvr.v1 import rollout_pb2_grpc as pb_grpc
from rollout.client import RolloutClient, RolloutError, send_stream
from rollout.types import PromptInput, SamplingConfig
from rollout.weights import weight_stream, write_safetensors

TOKEN = "test-token"
LOGPROB_TOL = 1e-3  # float32 on both sides: measured ~3e-6
PROMPT = [1, 9690, 198, 2683, 359, 253]


def _health(address: str) -> int:
    async def check() -> int:
        async with aio_channel(address) as ch:
            r = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service="rlvr.v1.Rollout"))
            return int(r.status)

    return asyncio.run(check())


def wait_serving(proc: ServiceProcess, address: str, timeout_s: float = 300) -> None:
    """Wait for SERVING, failing fast (with the server's log) if the process dies."""

    async def ready() -> None:
        async with RolloutClient(address, token=TOKEN) as c:
            for _ in range(int(timeout_s / 5)):
                if not proc.alive():
                    raise RuntimeError("rollout server exited:\n" + proc.tail())
                try:
                    await c.wait_ready(5)
                    return
                except TimeoutError:
                    continue
            raise TimeoutError(proc.tail())

    asyncio.run(ready())


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[int]]]:
    args = [
        "--model",
        str(tiny_model_dir),
        "--dtype",
        "float32",
        "--max-model-len",
        "512",
        "--enable-lora",
        "--lora-mode",
        "native",  # vLLM's LoRA layers (merge mode: test_rollout_lora_merge.py)
        "--max-lora-rank",
        "8",
        "--token",
        TOKEN,
        "--kv-cache-gib",
        "0.25",
        "--threads",
        "1",
    ]
    proc = ServiceProcess("rollout.server", args, "rollout", log_path=tmp_path_factory.mktemp("logs") / "rollout.log")
    address = proc.start(timeout_s=300)
    health = [_health(address)]  # announced before the engine is built: NOT_SERVING

    wait_serving(proc, address)
    health.append(_health(address))
    yield address, health
    proc.stop()


@pytest.fixture
async def client(server) -> AsyncIterator[RolloutClient]:
    async with RolloutClient(server[0], token=TOKEN, retry_s=5) as c:
        yield c


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def hf_logprobs(model, prompt: list[int], completion: list[int], temperature: float = 1.0) -> list[float]:
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion])).logits[0].float()
    lp = torch.log_softmax(logits / temperature, -1)
    return [lp[len(prompt) - 1 + i, t].item() for i, t in enumerate(completion)]


def max_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b) > 0
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


async def greedy(client: RolloutClient, adapter: str | None = None) -> list[int]:
    s = await client.generate([PROMPT], SamplingConfig(temperature=0, max_tokens=8), adapter=adapter)
    return s[0].token_ids


async def _raw_push(address: str, messages: list[pb.WeightsChunk], method: str = "UpdateWeights") -> grpc.StatusCode:
    async with aio_channel(address) as ch:
        call = getattr(pb_grpc.RolloutStub(ch), method)(metadata=auth_metadata(TOKEN), timeout=60)
        try:
            await send_stream(call, messages)
        except grpc.aio.AioRpcError as e:
            return e.code()
    return grpc.StatusCode.OK


# ---------------------------------------------------------------------------- service basics


def test_health_goes_from_not_serving_to_serving(server) -> None:
    assert server[1] == [health_pb2.HealthCheckResponse.NOT_SERVING, health_pb2.HealthCheckResponse.SERVING]


async def test_token_is_required(server) -> None:
    async with RolloutClient(server[0], retry_s=1) as anonymous:
        with pytest.raises(RolloutError) as err:
            await anonymous.generate([PROMPT])
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED


async def test_generate_chat_and_token_prompts_with_n_samples(client: RolloutClient, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    messages = [{"role": "user", "content": "What is 2+2?"}]
    prompts = [PromptInput("chat", messages=messages), PromptInput("ids", token_ids=PROMPT)]
    samples = await client.generate(prompts, SamplingConfig(n=3, max_tokens=6, temperature=1.0))
    assert [(s.prompt_index, s.sample_index) for s in samples] == [(p, i) for p in range(2) for i in range(3)]
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat_ids = tok.encode(
        tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), add_special_tokens=False
    )
    assert samples[0].prompt_token_ids == chat_ids and samples[0].prompt_id == "chat"
    assert samples[3].prompt_token_ids == PROMPT and samples[3].prompt_id == "ids"
    for s in samples:
        assert len(s.token_ids) == len(s.logprobs) == 6 and s.finish_reason == "length"
        assert s.text == tok.decode(s.token_ids) and s.policy_version == 0
    info = (await client.info())[0]
    assert info.dtype == "float32" and info.max_model_len == 512 and info.engine.startswith("vllm")


async def test_stream_yields_every_sample_once(client: RolloutClient) -> None:
    got = [s async for s in client.generate_stream([PROMPT, PROMPT[:3]], SamplingConfig(n=4, max_tokens=4))]
    assert sorted((s.prompt_index, s.sample_index) for s in got) == [(p, i) for p in range(2) for i in range(4)]


async def test_seeded_sampling_is_reproducible_or_refused_on_cpu(client: RolloutClient) -> None:
    params = SamplingConfig(n=2, max_tokens=8, seed=123)
    if (await client.info())[0].engine.endswith("(cpu)"):
        # vLLM's CPU build kills its engine on seeded requests: the server refuses them and keeps serving.
        with pytest.raises(RolloutError, match="per-request seeds are not supported") as err:
            await client.generate([PROMPT], params)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert len(await greedy(client)) > 0
        return
    a, b = await client.generate([PROMPT], params), await client.generate([PROMPT], params)
    assert [s.token_ids for s in a] == [s.token_ids for s in b]
    assert a[0].token_ids != a[1].token_ids  # sample i uses seed + i


@pytest.mark.parametrize("temperature", [1.0, 0.7])
async def test_logprobs_match_an_hf_forward_pass(client: RolloutClient, hf, temperature: float) -> None:
    samples = await client.generate([PROMPT], SamplingConfig(n=2, max_tokens=24, temperature=temperature))
    for s in samples:
        assert max_diff(s.logprobs, hf_logprobs(hf, PROMPT, s.token_ids, temperature)) < LOGPROB_TOL


@pytest.mark.parametrize(
    ("prompts", "params", "adapter", "match"),
    [
        ([PROMPT], SamplingConfig(temperature=-1.0), None, "temperature must be >= 0"),
        ([PROMPT], SamplingConfig(top_p=1.5), None, "top_p"),
        ([list(range(600))], SamplingConfig(), None, "max_model_len 512"),
        ([[]], SamplingConfig(), None, "empty prompt"),
        ([[10**6]], SamplingConfig(), None, "outside the vocabulary"),
        ([PROMPT], SamplingConfig(), "no-such-adapter", "unknown adapter"),
    ],
)
async def test_invalid_requests_are_rejected(client: RolloutClient, prompts, params, adapter, match: str) -> None:
    with pytest.raises(RolloutError, match=match) as err:
        await client.generate(prompts, params, adapter=adapter)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------------------- weight sync


async def test_bad_pushes_are_rejected_and_the_old_weights_keep_serving(server, client, hf) -> None:
    before, version = await greedy(client), (await client.info())[0].policy_version
    sd = {k: v + 0.1 for k, v in hf.state_dict().items()}
    header = pb.WeightsHeader(version=50, num_tensors=len(sd))
    full = list(weight_stream(header, sd, torch.float32, chunk_bytes=1 << 20))
    wrong_shape = dict(sd, **{"model.norm.weight": torch.ones(3)})
    cases = {
        "shape": list(weight_stream(header, wrong_shape, torch.float32)),
        "dtype": list(weight_stream(header, sd, torch.float16)),
        "name": list(weight_stream(header, {"model.nope": torch.ones(2), **sd}, torch.float32)),
        "missing": list(
            weight_stream(
                pb.WeightsHeader(version=50, num_tensors=len(sd) - 1),
                {k: v for k, v in sd.items() if k != "model.norm.weight"},
                torch.float32,
            )
        ),
        "truncated": full[: len(full) // 2],
        "no header": full[1:],
    }
    codes = {name: await _raw_push(server[0], msgs) for name, msgs in cases.items()}
    assert codes == {
        "shape": grpc.StatusCode.INVALID_ARGUMENT,
        "dtype": grpc.StatusCode.INVALID_ARGUMENT,
        "name": grpc.StatusCode.INVALID_ARGUMENT,
        "missing": grpc.StatusCode.INVALID_ARGUMENT,
        "truncated": grpc.StatusCode.ABORTED,
        "no header": grpc.StatusCode.INVALID_ARGUMENT,
    }

    async def cancelled_midway() -> None:
        async with aio_channel(server[0]) as ch:

            async def slow() -> AsyncIterator[pb.WeightsChunk]:
                for m in full[:5]:
                    yield m
                await asyncio.sleep(30)

            call = pb_grpc.RolloutStub(ch).UpdateWeights(slow(), metadata=auth_metadata(TOKEN))
            await asyncio.sleep(1.0)
            call.cancel()

    await cancelled_midway()
    assert await greedy(client) == before
    assert (await client.info())[0].policy_version == version


async def test_weight_update_changes_outputs_version_and_logprobs(client: RolloutClient, hf) -> None:
    before = await greedy(client)
    # A prompt of several KV blocks, generated once before the push so its blocks sit in the prefix cache:
    # reusing them after the push would mix old-weight keys/values into the new weights' logprobs.
    long_prompt = PROMPT * 16
    await client.generate([long_prompt], SamplingConfig(temperature=0, max_tokens=2))
    new = copy.deepcopy(hf)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in new.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    assert await client.update_weights(new.state_dict(), version=1) == 1
    after = await client.generate([PROMPT], SamplingConfig(max_tokens=16, temperature=1.0))
    assert after[0].policy_version == 1 and await greedy(client) != before
    # lm_head is tied to embed_tokens: a stale lm_head would show up here as a large difference
    assert max_diff(after[0].logprobs, hf_logprobs(new, PROMPT, after[0].token_ids)) < LOGPROB_TOL
    again = await client.generate([long_prompt], SamplingConfig(max_tokens=8, temperature=1.0))
    assert max_diff(again[0].logprobs, hf_logprobs(new, long_prompt, again[0].token_ids)) < LOGPROB_TOL
    hf.load_state_dict(new.state_dict())  # later tests compare against the served weights


async def test_a_swap_waits_for_in_flight_generations(client: RolloutClient, hf) -> None:
    v = (await client.info())[0].policy_version
    long = asyncio.create_task(client.generate([PROMPT], SamplingConfig(max_tokens=200, temperature=1.0)))
    await asyncio.sleep(0.3)
    assert await client.update_weights(hf.state_dict(), version=v + 1) == v + 1
    assert (await long)[0].policy_version == v  # generated entirely under the old version
    assert (await client.generate([PROMPT], SamplingConfig(max_tokens=2)))[0].policy_version == v + 1


async def test_colocated_push_goes_through_a_local_file(server, hf, monkeypatch) -> None:
    import rollout.client as client_mod

    async with RolloutClient(server[0], token=TOKEN, retry_s=5) as c:
        info = (await c.info())[0]
        local = Path(info.local_dir)
        assert local.is_dir() and local.name.startswith("rlvr-rollout-local-")  # loopback bind: on by default
        v = info.policy_version
        new = copy.deepcopy(hf)
        with torch.no_grad():
            for p in new.parameters():
                p.mul_(1.02)

        def no_streaming(*a, **k):
            raise AssertionError("a co-located push must not stream")

        monkeypatch.setattr(client_mod, "weight_stream", no_streaming)
        assert await c.update_weights(new.state_dict(), version=v + 1) == v + 1
        monkeypatch.undo()
        s = (await c.generate([PROMPT], SamplingConfig(max_tokens=16, temperature=1.0)))[0]
        assert s.policy_version == v + 1
        assert max_diff(s.logprobs, hf_logprobs(new, PROMPT, s.token_ids)) < LOGPROB_TOL
        assert sorted(p.name for p in local.iterdir()) == ["owner.pid"]  # file consumed, nothing left behind
    # The streamed path still works against the same server (remote replicas, or local_weights=False).
    async with RolloutClient(server[0], token=TOKEN, retry_s=5, local_weights=False) as c:
        assert await c.update_weights(hf.state_dict(), version=v + 2) == v + 2
        s = (await c.generate([PROMPT], SamplingConfig(max_tokens=16, temperature=1.0)))[0]
        assert max_diff(s.logprobs, hf_logprobs(hf, PROMPT, s.token_ids)) < LOGPROB_TOL


async def _local_push(address: str, path: str, version: int = 77) -> grpc.StatusCode:
    header = pb.WeightsHeader(version=version, local_path=path)
    return await _raw_push(address, [pb.WeightsChunk(header=header)])


async def test_local_paths_outside_the_local_dir_are_refused(server, client, tmp_path: Path, hf) -> None:
    before, info = await greedy(client), (await client.info())[0]
    local = Path(info.local_dir)
    outside = tmp_path / "model.safetensors"
    write_safetensors(outside, hf.state_dict(), torch.float32)
    link = local / "link.safetensors"
    link.symlink_to(outside)
    codes = {
        "outside": await _local_push(server[0], str(outside)),
        "dotdot": await _local_push(server[0], f"{local}/../{outside.name}"),
        "symlink": await _local_push(server[0], str(link)),
        "system file": await _local_push(server[0], "/etc/passwd"),
        "missing": await _local_push(server[0], f"{local}/nope.safetensors"),
    }
    assert codes == {
        "outside": grpc.StatusCode.INVALID_ARGUMENT,
        "dotdot": grpc.StatusCode.INVALID_ARGUMENT,
        "symlink": grpc.StatusCode.INVALID_ARGUMENT,
        "system file": grpc.StatusCode.INVALID_ARGUMENT,
        "missing": grpc.StatusCode.FAILED_PRECONDITION,  # the client falls back to streaming on this one
    }
    assert outside.is_file() and Path("/etc/passwd").is_file()  # refused paths are never touched
    assert not os.path.lexists(link)  # our own dir: the dangling entry is cleaned up
    # A local_path header followed by tensor chunks, and local_path on LoadAdapter, are malformed.
    header = pb.WeightsHeader(version=77, local_path=f"{local}/x.safetensors")
    chunks = list(weight_stream(header, {"model.norm.weight": torch.ones(256)}))
    assert await _raw_push(server[0], chunks) == grpc.StatusCode.INVALID_ARGUMENT
    assert await _raw_push(server[0], chunks[:1], "LoadAdapter") == grpc.StatusCode.INVALID_ARGUMENT
    assert await greedy(client) == before and (await client.info())[0].policy_version == info.policy_version


async def test_bad_local_files_are_rejected_and_the_old_weights_keep_serving(server, client, hf) -> None:
    before, info = await greedy(client), (await client.info())[0]
    local = Path(info.local_dir)
    sd = {k: v + 0.1 for k, v in hf.state_dict().items()}
    cases = {
        "shape": (dict(sd, **{"model.norm.weight": torch.ones(3)}), torch.float32, "shape"),
        "dtype": (sd, torch.float16, "dtype"),
        "name": ({"model.nope": torch.ones(2), **sd}, torch.float32, "not a tensor of"),
        "missing": ({k: v for k, v in sd.items() if k != "model.norm.weight"}, torch.float32, "missing"),
    }
    for name, (tensors, dtype, match) in cases.items():
        path = local / f"bad-{name}.safetensors"
        write_safetensors(path, tensors, dtype)
        async with aio_channel(server[0]) as ch:
            call = pb_grpc.RolloutStub(ch).UpdateWeights(metadata=auth_metadata(TOKEN), timeout=60)
            header = pb.WeightsHeader(version=88, num_tensors=len(tensors), local_path=str(path))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await send_stream(call, [pb.WeightsChunk(header=header)])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and match in (err.value.details() or ""), name
        assert not path.exists(), name  # rejected files are deleted too
    truncated = local / "truncated.safetensors"
    write_safetensors(truncated, sd, torch.float32)
    os.truncate(truncated, truncated.stat().st_size - 100)
    assert await _local_push(server[0], str(truncated)) == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(p.name for p in local.iterdir()) == ["owner.pid"]
    assert await greedy(client) == before and (await client.info())[0].policy_version == info.policy_version


# ---------------------------------------------------------------------------- adapters


def lora_adapter(hf, seed: int, **kw):
    """A peft model on a copy of `hf` with random (non-zero) lora_B, its config dict and adapter tensors."""
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"], **kw)
    model = get_peft_model(copy.deepcopy(hf), config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return model.eval(), config.to_dict(), get_peft_model_state_dict(model)


async def test_adapter_hot_load_and_replacement(client: RolloutClient, hf) -> None:
    base = await greedy(client)
    v = (await client.info())[0].policy_version
    for k, seed in enumerate((1, 2)):
        model, config, tensors = lora_adapter(hf, seed)
        assert await client.load_adapter("pol", config, tensors, version=v + 1 + k) == v + 1 + k
        s = (await client.generate([PROMPT], SamplingConfig(max_tokens=16), adapter="pol"))[0]
        assert s.policy_version == v + 1 + k
        assert max_diff(s.logprobs, hf_logprobs(model, PROMPT, s.token_ids)) < LOGPROB_TOL
    assert await greedy(client, adapter="pol") != base and await greedy(client) == base
    assert (await client.info())[0].adapters == ["pol"]


async def test_bad_adapters_are_rejected_and_the_old_one_keeps_serving(client: RolloutClient, hf) -> None:
    before = await greedy(client, adapter="pol")
    _, config, tensors = lora_adapter(hf, 9)
    name = next(k for k in tensors if "lora_B" in k)
    for cfg, ts, match in [
        (config, {**tensors, name: torch.zeros(3, 3)}, "expected"),
        ({**config, "r": 64}, tensors, "max_lora_rank"),
        (config, {k: v for k, v in tensors.items() if k != name}, "lora_B"),
    ]:
        with pytest.raises(RolloutError, match=match) as err:
            await client.load_adapter("pol", cfg, ts, version=999)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert await greedy(client, adapter="pol") == before
