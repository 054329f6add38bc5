"""What the hardware computes fast: the one place that decides whether bf16 is worth using on a device.

On an x86 CPU without AVX512 / AMX, oneDNN has no bf16 kernels and torch falls back to a reference bf16 gemm:
measured on this project's AVX2 machine, a policy update runs 13x slower in bf16 than in float32
(benchmarks/results/trainer_dtype.json) and vLLM-CPU generates ~4x slower (benchmarks/results/rollout_dtype.json).
So "auto" dtypes (trainer model.dtype, rollout dtype) pick float32 there and bf16 where it has kernels."""

from __future__ import annotations

from typing import Any


def bf16_is_native(device: Any) -> bool:
    """Whether bf16 matmuls run on bf16 kernels on `device` (a torch.device or "cpu" / "cuda"): a CUDA GPU that
    supports bf16, or a CPU where oneDNN has them (AVX512 / AMX)."""
    import torch

    kind = device if isinstance(device, str) else device.type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check()) if check is not None else False
    return False


def machine_facts() -> dict[str, Any]:
    """What a benchmark result records about the machine, so a figure from one CPU is not read as another's."""
    import os
    import time

    import torch

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "bf16_native": bf16_is_native("cpu"),
            "cpus": os.cpu_count(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
