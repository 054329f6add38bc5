"""Typed configuration of the rollout server (TOML via --config, each field overridable by a CLI flag)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from rlvr.config import StrictModel


class RolloutConfig(StrictModel):
    """Everything `python -m rollout.server` / `rlvr serve rollout` accepts."""

    model: Path | None = None
    """HF model directory (safetensors + tokenizer) to serve. Required."""
    host: str = "127.0.0.1"
    """Bind address; loopback by default. Non-loopback binds need a token or TLS."""
    port: int = Field(0, ge=0, le=65535)
    """TCP port; 0 picks a free one (announced as `RLVR_READY rollout HOST:PORT`)."""
    token: str | None = None
    """Shared secret: clients must send `authorization: Bearer <token>`."""
    tls_cert: Path | None = None
    """PEM certificate chain; with tls_key enables TLS."""
    tls_key: Path | None = None
    """PEM private key for tls_cert."""
    allow_insecure_public: bool = False
    """Allow a non-loopback bind with neither token nor TLS (not recommended)."""
    grace_s: float = Field(30.0, ge=0)
    """On SIGTERM: how long in-flight calls may finish before they are cancelled."""
    max_model_len: int = Field(2048, ge=16)
    """Longest prompt + completion in tokens; longer prompts are rejected with INVALID_ARGUMENT."""
    dtype: Literal["auto", "bfloat16", "float32", "float16"] = "auto"
    """Engine dtype; auto = vLLM's choice for the checkpoint, except float32 on a CPU without bf16 kernels
    (rlvr/hardware.py). Weight pushes must arrive in this dtype (GetInfo.dtype)."""
    enable_lora: bool = False
    """Allow LoRA adapters (LoadAdapter, Generate.adapter)."""
    max_lora_rank: int = Field(16, ge=1)
    """Largest LoRA rank an adapter may have."""
    max_loras: int = Field(2, ge=1)
    """Adapters that can be active in one batch."""
    lora_mode: Literal["auto", "native", "merge"] = "auto"
    """How adapters are served. native: vLLM's LoRA layers (several adapters, base model alongside). merge: the
    adapter is folded into the weights on load (one adapter at a time, no base-model generation meanwhile, plain
    model speed; vLLM-CPU's LoRA layers generate several times slower). auto: merge on CPU, native elsewhere."""
    kv_cache_gib: float = Field(1.0, gt=0)
    """KV cache size in GiB (sets VLLM_CPU_KVCACHE_SPACE on CPU)."""
    threads: int | None = Field(None, ge=1)
    """OpenMP threads of the engine; without cpu_bind this also turns core pinning off (shared machines)."""
    cpu_bind: str | None = None
    """VLLM_CPU_OMP_THREADS_BIND: "auto" (vLLM: pin to the node's cores, keep one for its scheduler),
    "nobind", or a core list such as "0-1" or "1". Unset: auto, unless threads is set."""
    eager: bool = True
    """Run the model eagerly (CPU start-up ~24 s) instead of torch.compile (~86 s, somewhat faster decode)."""
    seed: int = 0
    """Engine seed (requests without their own seed are sampled from it)."""
    max_num_seqs: int = Field(256, ge=1)
    """Most sequences the engine batches at once."""
    block_size: int | None = Field(None, ge=1)
    """KV cache block size in tokens. Unset: 32 on CPU, vLLM's default elsewhere. Prefix caching reuses whole
    blocks only, and vLLM-CPU's own default (128) is longer than a short chat prompt, so a GRPO group's samples
    each recomputed their whole prompt; with 32 (the smallest vLLM-CPU accepts) they share its first 32 tokens
    (benchmarks/results/rollout_block_size.json)."""
    max_samples_per_request: int = Field(4096, ge=1)
    """Largest prompts x n one Generate call may ask for."""
    transfer_timeout_s: float = Field(600.0, gt=0)
    """Hard limit on one UpdateWeights/LoadAdapter call: receiving, waiting for in-flight generations, swap."""
    spill_dir: Path | None = None
    """Where pushed weights are assembled (a safetensors file per version); default: the system temp dir."""
    local_weights: bool | None = None
    """Accept co-located full-weight pushes as a safetensors file in local_weights_dir (WeightsHeader.local_path)
    instead of a byte stream. Unset: on only for loopback binds (then only local processes can call anyway)."""
    local_weights_dir: Path | None = None
    """Where co-located clients may put pushed files (the server makes a private 0700 subdirectory in it and only
    accepts regular files directly inside that); default /dev/shm when present, else the system temp dir."""
