"""The vLLM adapter: the only module of rlvr that imports vLLM (its API changes between releases).

It owns one AsyncLLM (continuous batching across every concurrent request), the chat template, and the three
engine operations the service needs: generate one sample, reload full weights from a safetensors directory,
and add/remove a LoRA adapter. Settings that vLLM reads from the environment on CPU (KV cache size, OpenMP
thread binding) are applied by `apply_cpu_env` before vLLM is imported.

Logprobs: the engine runs with `logprobs_mode="processed_logprobs"`, so each returned logprob is the
log-probability of the sampled token under the distribution it was actually sampled from (after temperature,
top-k and top-p). With top_p=1 and top_k off this is exactly log_softmax(logits / temperature), which is what
the trainer recomputes; vLLM's default ("raw_logprobs") would ignore the temperature. Greedy requests
(temperature 0) report raw log_softmax(logits)."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout.types import SamplingConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSettings:
    """What the engine is built from (see rollout.config.RolloutConfig for the documented options)."""

    model: Path
    max_model_len: int = 2048
    dtype: str = "auto"
    enable_lora: bool = False
    max_lora_rank: int = 16
    max_loras: int = 2
    seed: int = 0
    eager: bool = True
    kv_cache_gib: float = 1.0
    threads: int | None = None
    cpu_bind: str | None = None
    max_num_seqs: int = 256
    block_size: int | None = None


@dataclass
class Completion:
    """One finished sample as the engine produced it."""

    token_ids: list[int]
    text: str
    logprobs: list[float]
    finish_reason: str


def apply_cpu_env(s: EngineSettings, env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set vLLM's CPU environment knobs (read at engine start) and return what was set.

    kv_cache_gib → VLLM_CPU_KVCACHE_SPACE when it is a whole number of GiB (vLLM parses an int).
    cpu_bind → VLLM_CPU_OMP_THREADS_BIND ("auto": vLLM pins one thread per core of the NUMA node and keeps
    one core for its scheduler process; "nobind": no pinning; "0-1" etc.: pin to those cores).
    threads without cpu_bind → no pinning with that many OpenMP threads, so the OS can share the cores
    with a trainer on the same machine instead of two pinned thread pools fighting over a core."""
    target: MutableMapping[str, str] = os.environ if env is None else env
    out: dict[str, str] = {}
    if float(s.kv_cache_gib).is_integer():
        out["VLLM_CPU_KVCACHE_SPACE"] = str(int(s.kv_cache_gib))
    else:  # vLLM reads this variable as whole GiB; fractions go through kv_cache_memory_bytes instead
        target.pop("VLLM_CPU_KVCACHE_SPACE", None)
    if s.cpu_bind:
        out["VLLM_CPU_OMP_THREADS_BIND"] = s.cpu_bind
        if s.cpu_bind not in ("auto", "nobind"):
            out["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"  # explicit cores: reserve none of them
    if s.threads is not None:
        out.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        out["OMP_NUM_THREADS"] = str(s.threads)
    target.update(out)
    return out


class Engine:
    """A started vLLM AsyncLLM plus the tokenizer; create with `Engine.start(settings)`."""

    def __init__(self, llm: Any, tokenizer: Any, settings: EngineSettings, version: str, seeded_requests: bool) -> None:
        self._llm = llm
        self._tok = tokenizer
        self.settings = settings
        self.version = version
        # vLLM-CPU 0.32's model runner rewinds a seeded request's torch.Generator with set_offset after a chunked
        # prefill step, which CPU generators do not support: the engine dies. So the server refuses such requests.
        self.seeded_requests = seeded_requests
        cfg = llm.model_config
        self.max_model_len: int = int(cfg.max_model_len)
        self.vocab_size: int = int(cfg.get_vocab_size())
        self.dtype: str = str(cfg.dtype).removeprefix("torch.")

    @classmethod
    def start(cls, s: EngineSettings) -> Engine:
        """Build the engine (blocking, ~25 s on CPU): run it in a worker thread so the server stays responsive."""
        apply_cpu_env(s)
        import vllm
        from transformers import AutoTokenizer
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(
            model=str(s.model),
            max_model_len=s.max_model_len,
            dtype=engine_dtype(s, is_cpu_platform()),  # type: ignore[arg-type]
            enforce_eager=s.eager,
            enable_lora=s.enable_lora,
            max_lora_rank=s.max_lora_rank if s.enable_lora else None,  # type: ignore[arg-type]
            max_loras=s.max_loras,
            seed=s.seed,
            max_num_seqs=s.max_num_seqs,
            block_size=kv_block_size(s, is_cpu_platform()),  # type: ignore[arg-type]
            logprobs_mode="processed_logprobs",
            disable_log_stats=True,
            worker_extension_cls=f"{__name__}.WorkerExtension",
        )
        if not float(s.kv_cache_gib).is_integer():
            args.kv_cache_memory_bytes = int(s.kv_cache_gib * 2**30)
        llm = AsyncLLM.from_engine_args(args)
        tok = AutoTokenizer.from_pretrained(str(s.model))
        cpu = is_cpu_platform()
        return cls(llm, tok, s, f"vllm {vllm.__version__} ({'cpu' if cpu else 'gpu'})", seeded_requests=not cpu)

    # ------------------------------------------------------------------ prompts

    def chat_token_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The model's chat template with the assistant turn opened (add_generation_prompt)."""
        text = self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self._tok.encode(text, add_special_tokens=False))

    # ------------------------------------------------------------------ generation

    def _sampling_params(self, p: SamplingConfig, seed: int | None) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            n=1,
            temperature=p.temperature,
            top_p=p.top_p,
            top_k=p.top_k if p.top_k > 0 else 0,
            max_tokens=p.max_tokens,
            stop=list(p.stop) or None,
            seed=seed,
            logprobs=0,  # only the sampled token's logprob
            flat_logprobs=True,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    async def generate(
        self, token_ids: list[int], params: SamplingConfig, seed: int | None = None, lora: Any = None
    ) -> Completion:
        """One sample for one prompt; many concurrent calls are batched by the engine."""
        from vllm.inputs import TokensPrompt

        request_id = uuid.uuid4().hex
        final = None
        async for out in self._llm.generate(
            TokensPrompt(prompt_token_ids=token_ids),
            self._sampling_params(params, seed),
            request_id,
            lora_request=lora,
        ):
            final = out
        if final is None or not final.outputs:
            return Completion([], "", [], "abort")
        o = final.outputs[0]
        ids = list(o.token_ids)
        return Completion(ids, o.text, _sampled_logprobs(o.logprobs, ids), o.finish_reason or "abort")

    def num_running(self) -> int:
        return int(self._llm.get_num_unfinished_requests())

    # ------------------------------------------------------------------ weights

    async def reload_weights(self, weights_dir: Path) -> float:
        """Swap every weight in place from a safetensors directory; returns seconds taken."""
        t0 = time.perf_counter()
        await self._llm.collective_rpc("rlvr_reload_weights", kwargs={"weights_path": str(weights_dir)})
        # Cached prefixes were computed with the old weights.
        await self._llm.reset_prefix_cache()
        return time.perf_counter() - t0

    def lora_request(self, name: str, lora_id: int, path: Path) -> Any:
        from vllm.lora.request import LoRARequest

        return LoRARequest(lora_name=name, lora_int_id=lora_id, lora_path=str(path))

    async def add_lora(self, lora: Any) -> None:
        """Load an adapter now (so a broken one fails here, not in the next Generate)."""
        if not await self._llm.add_lora(lora):
            raise RuntimeError(f"vLLM refused adapter {lora.lora_name}")

    async def remove_lora(self, lora_id: int) -> None:
        await self._llm.remove_lora(lora_id)

    async def check_health(self) -> None:
        await self._llm.check_health()

    def shutdown(self) -> None:
        self._llm.shutdown()


class WorkerExtension:
    """Mixed into vLLM's worker class (engine arg worker_extension_cls); runs in the worker process."""

    def rlvr_reload_weights(self, weights_path: str) -> None:
        """vLLM's in-place reload, then re-derive the tied lm_head.

        With tie_word_embeddings, the layerwise reload updates embed_tokens but skips lm_head (it has no
        checkpoint tensor of its own), so on CPU the lm_head keeps the GEMM it pre-packed from the *old*
        embedding and logits come from stale weights (measured: logprobs off by >1 nat after an update).
        Re-tying and re-running its post-load processing rebuilds that GEMM from the new weights."""
        worker: Any = self
        worker.reload_weights(weights_path=weights_path)
        _refresh_tied_lm_head(worker.model_runner.get_model())


def _refresh_tied_lm_head(model: Any) -> None:
    config = getattr(model, "config", None)
    lm_head, inner = getattr(model, "lm_head", None), getattr(model, "model", None)
    embed = getattr(inner, "embed_tokens", None)
    if not getattr(config, "tie_word_embeddings", False) or lm_head is None or embed is None:
        return
    head = getattr(lm_head, "base_layer", lm_head)  # LoRA-wrapped lm_head
    head.weight = embed.weight
    method = getattr(head, "quant_method", None)
    if method is not None:
        method.process_weights_after_loading(head)


def _sampled_logprobs(logprobs: Any, token_ids: list[int]) -> list[float]:
    """The sampled token's logprob at each position (vLLM returns it even with logprobs=0)."""
    if logprobs is None:
        return []
    flat = getattr(logprobs, "start_indices", None)
    if flat is not None:  # FlatLogprobs: parallel lists, one slice per position
        out = []
        for i, tok in enumerate(token_ids):
            lo, hi = logprobs.start_indices[i], logprobs.end_indices[i]
            j = logprobs.token_ids.index(tok, lo, hi)
            out.append(float(logprobs.logprobs[j]))
        return out
    return [float(pos[tok].logprob) for pos, tok in zip(logprobs, token_ids, strict=True)]


def engine_dtype(s: EngineSettings, cpu: bool) -> str:
    """s.dtype, except that "auto" serves in float32 on a CPU without bf16 kernels (rlvr/hardware.py), where
    vLLM-CPU generates ~4x slower in bf16. Not only bf16 checkpoints: vLLM-CPU's own "auto" turns a float32
    checkpoint (what SFT and GRPO publish) into bf16 too (seen in a demo run: 2.9 generated tok/s and 70 s
    weight pushes). GetInfo reports the result, so weight pushes follow it."""
    from rlvr.hardware import bf16_is_native

    if s.dtype == "auto" and cpu and not bf16_is_native("cpu"):
        log.info("dtype auto: serving in float32 (this CPU has no bf16 matmul kernels)")
        return "float32"
    return s.dtype


CPU_BLOCK_SIZE = 32


def kv_block_size(s: EngineSettings, cpu: bool) -> int | None:
    """s.block_size, else 32 on CPU and vLLM's default (None) elsewhere. vLLM-CPU defaults to 128-token blocks
    and its attention needs a multiple of 32; prefix caching reuses whole blocks only, so at 128 no prompt
    shorter than that (a 47-token addition prompt) is ever reused, not even by the other samples of its group
    (measured 1.68x faster rollouts for 8 prompts x 8 samples: benchmarks/results/rollout_block_size.json)."""
    if s.block_size is not None:
        return s.block_size
    return CPU_BLOCK_SIZE if cpu else None


def is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())
