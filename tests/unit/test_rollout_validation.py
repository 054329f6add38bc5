"""Generate request checks, adapter checks and the server's config (no engine)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from rlvr.config import load_config
from rlvr.paths import REPO_ROOT
from rlvr.v1 import rollout_pb2 as pb
from rollout.adapters import adapter_spec, check_adapter_name, parse_adapter_config
from rollout.config import RolloutConfig
from rollout.engine import EngineSettings, apply_cpu_env, engine_dtype, kv_block_size
from rollout.server import load
from rollout.validation import RequestError, prompt_token_ids, sampling_from_proto
from rollout.weights import TensorSpec, WeightsError


def test_proto_defaults_are_applied() -> None:
    p = sampling_from_proto(pb.SamplingParams(), max_samples=100, num_prompts=1, seeds=True)
    assert (p.n, p.top_p, p.top_k, p.max_tokens, p.seed, p.temperature) == (1, 1.0, -1, 16, None, 0.0)
    seeded = sampling_from_proto(pb.SamplingParams(seed=0, top_k=5), 100, 1, seeds=True)
    assert seeded.seed == 0 and seeded.top_k == 5


def test_seed_is_refused_where_the_engine_cannot_take_it() -> None:
    """vLLM's CPU build crashes its engine on seeded requests, so such a server refuses them up front."""
    with pytest.raises(RequestError, match=r"^seed: per-request seeds are not supported.*CPU.*omit the seed"):
        sampling_from_proto(pb.SamplingParams(seed=0), 100, 1, seeds=False)
    assert sampling_from_proto(pb.SamplingParams(temperature=1.0), 100, 1, seeds=False).seed is None


class _Aborted(Exception):
    pass


class _Context:
    """A grpc.aio servicer context that records the abort (which, as in grpc, raises)."""

    code: grpc.StatusCode | None = None
    details = ""

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise _Aborted


class _CpuEngine:
    """What _samples asks of an engine before generating; generating itself must not be reached."""

    seeded_requests = False
    vocab_size, max_model_len = 50, 64

    def chat_token_ids(self, messages: list[dict[str, str]]) -> list[int]:
        return [7]

    async def generate(self, *args: object) -> None:
        raise AssertionError("a refused request reached the engine")


def test_servicer_refuses_a_seeded_request_on_a_cpu_engine() -> None:
    from rollout.adapters import AdapterStore
    from rollout.servicer import RolloutServicer

    servicer = object.__new__(RolloutServicer)  # no spill dirs, no model files: only what Generate's checks use
    servicer.cfg = RolloutConfig(model=Path("unused"))
    servicer.engine, servicer.merger = _CpuEngine(), None  # type: ignore[assignment]
    servicer.adapters = AdapterStore(Path("unused"))  # writes nothing until an adapter is loaded
    request = pb.GenerateRequest(prompts=[pb.Prompt(token_ids=[1, 2])], params=pb.SamplingParams(seed=3, n=2))
    context = _Context()
    with pytest.raises(_Aborted):
        asyncio.run(servicer.Generate(request, context))  # type: ignore[arg-type]
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and context.details.startswith("seed: per-request")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (pb.SamplingParams(temperature=-0.5), "temperature must be >= 0"),
        (pb.SamplingParams(top_p=1.5), r"top_p must be in \(0, 1\]"),
        (pb.SamplingParams(top_k=-2), "top_k must be"),
        (pb.SamplingParams(n=60), "exceeds the server's 100 samples"),
        (pb.SamplingParams(stop=[""]), "non-empty strings"),
    ],
)
def test_bad_sampling_params(params: pb.SamplingParams, match: str) -> None:
    with pytest.raises(RequestError, match=match):
        sampling_from_proto(params, max_samples=100, num_prompts=2, seeds=True)


def _ids(prompt: pb.Prompt) -> list[int]:
    return prompt_token_ids(prompt, 0, lambda msgs: [7] * len(msgs), vocab_size=50, max_model_len=8)


def test_prompt_forms_and_errors() -> None:
    assert _ids(pb.Prompt(token_ids=[1, 2])) == [1, 2]
    assert _ids(pb.Prompt(messages=[pb.ChatMessage(role="user", content="hi")])) == [7]
    for prompt, match in [
        (pb.Prompt(id="p"), "prompt 0 \\('p'\\): empty prompt"),
        (pb.Prompt(token_ids=[50]), "outside the vocabulary"),
        (pb.Prompt(token_ids=list(range(8))), "no room to generate within max_model_len 8"),
        (pb.Prompt(messages=[pb.ChatMessage(role="robot", content="x")]), "role 'robot'"),
    ]:
        with pytest.raises(RequestError, match=match):
            _ids(prompt)


def test_adapter_checks() -> None:
    base = {"model.layers.0.q.weight": TensorSpec("model.layers.0.q.weight", "bfloat16", (64, 32))}
    cfg = parse_adapter_config('{"r": 4, "target_modules": ["q"]}', max_rank=8)
    a = pb.TensorChunk(name="base_model.model.model.layers.0.q.lora_A.weight", dtype="float32", shape=[4, 32])
    b = pb.TensorChunk(name="base_model.model.model.layers.0.q.lora_B.weight", dtype="float32", shape=[64, 4])
    assert adapter_spec(a, cfg, base, 8).shape == (4, 32) and adapter_spec(b, cfg, base, 8).shape == (64, 4)
    wrong = pb.TensorChunk(name=b.name, dtype="float32", shape=[4, 64])
    with pytest.raises(WeightsError, match=r"expected \[64, 4\]"):
        adapter_spec(wrong, cfg, base, 8)
    with pytest.raises(WeightsError, match="no Linear"):
        adapter_spec(pb.TensorChunk(name="base_model.model.x.lora_A.weight", dtype="float32"), cfg, base, 8)
    with pytest.raises(WeightsError, match="exceeds the server's max_lora_rank 2"):
        parse_adapter_config('{"r": 4, "target_modules": ["q"]}', max_rank=2)
    with pytest.raises(WeightsError, match="not JSON"):
        parse_adapter_config("{", max_rank=2)
    with pytest.raises(WeightsError, match="adapter_name"):
        check_adapter_name("../evil")


def test_example_config_parses_and_flags_override(tmp_path: Path) -> None:
    cfg = load_config(RolloutConfig, REPO_ROOT / "examples" / "rollout.toml")
    assert cfg.enable_lora and cfg.threads == 2 and cfg.eager
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    merged = load(["--config", str(REPO_ROOT / "examples" / "rollout.toml"), "--model", str(model), "--port", "5"])
    assert merged.port == 5 and merged.max_model_len == 1024 and merged.model == model
    assert load(["--model", str(model), "--compile"]).eager is False
    assert all(f.description for f in RolloutConfig.model_fields.values())


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_serves_in_float32_on_a_cpu_without_bf16_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    import torch

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    bf16, f32 = tmp_path / "bf16", tmp_path / "f32"
    for d, dtype in ((bf16, "bfloat16"), (f32, "float32")):
        d.mkdir()
        (d / "config.json").write_text(f'{{"dtype": "{dtype}"}}')
    assert engine_dtype(EngineSettings(model=bf16), cpu=True) == ("auto" if native else "float32")
    assert engine_dtype(EngineSettings(model=bf16), cpu=False) == "auto"  # a GPU serves the checkpoint's dtype
    # vLLM-CPU's own "auto" serves a float32 checkpoint in bf16: on such a CPU it must be float32 explicitly.
    assert engine_dtype(EngineSettings(model=f32), cpu=True) == ("auto" if native else "float32")
    assert engine_dtype(EngineSettings(model=bf16, dtype="bfloat16"), cpu=True) == "bfloat16"  # explicit: kept


def test_kv_block_size_lets_short_prompts_share_cached_blocks_on_cpu(tmp_path: Path) -> None:
    from rollout.server import engine_settings

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    unset = engine_settings(load(["--model", str(model)]))
    assert kv_block_size(unset, cpu=True) == 32  # vLLM-CPU's own 128 never caches a short prompt
    assert kv_block_size(unset, cpu=False) is None  # elsewhere vLLM's default
    chosen = engine_settings(load(["--model", str(model), "--block-size", "64"]))
    assert kv_block_size(chosen, cpu=True) == kv_block_size(chosen, cpu=False) == 64


def test_cpu_env_mapping() -> None:
    env: dict[str, str] = {}
    apply_cpu_env(EngineSettings(model=Path("m"), threads=2, kv_cache_gib=2), env)
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "2"}
    env = {"VLLM_CPU_KVCACHE_SPACE": "1"}
    apply_cpu_env(EngineSettings(model=Path("m"), kv_cache_gib=0.25), env)
    assert env == {}  # fractions are passed to the engine as kv_cache_memory_bytes
    env = {}
    apply_cpu_env(EngineSettings(model=Path("m"), cpu_bind="0-1"), env)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
