"""Trainer compute dtype: seconds per policy update on the demo's batch shape, interleaved round by round (the
machine is shared), for full fine-tuning of SmolLM2-135M-Instruct (dequantized from a Q4_1 GGUF):

- bf16 autocast over float32 master weights (model.dtype = "bfloat16"; what "auto", the default, picks where
  the hardware has bf16 matmul kernels),
- float32 compute (model.dtype = "float32"),
- pure bf16 weights and AdamW state (the old path, which loses updates below half a bf16 ulp), for reference.

The batch is the demo's: 8 addition prompts in the chat template × 8 completions of up to 16 tokens, rewards
with variance in every group (so no pass is skipped), one torch thread (model.threads = 1 in the demo).

The results file records the CPU's torch capability and whether oneDNN has bf16 kernels on it (an AVX2-only CPU
has none: torch then runs a reference bf16 gemm), and what model.dtype = "auto" resolves to there.

Run: .venv/bin/python benchmarks/trainer_dtype.py [--rounds 3 --threads 1 --paths bf16-autocast,float32]
Results: benchmarks/results/trainer_dtype.json

On a GPU: --device cuda (results: trainer_dtype_cuda.json, with the GPU's name). --random-init DIR replaces
the weights by a random init of the same config (DIR holds SmolLM2's config.json and tokenizer files), for a
machine without the model: a step's time does not depend on the weights' values."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
REPO = Path(__file__).resolve().parents[1]

PATHS = ("bf16-autocast", "float32", "pure-bf16")


def demo_groups(tokenizer: Any, prompts: int = 8, group_size: int = 8, max_tokens: int = 16) -> list[Any]:
    from rollout.types import Sample
    from trainer.data import DataConfig, build_tasks
    from trainer.pipeline import Group, ScoredSample
    from trainer.rewards import RewardOutcome

    rng = random.Random(0)
    stream, _ = build_tasks(DataConfig(source="addition", size=100, eval_size=10, seed=0))
    groups = []
    for task in stream.take(prompts):
        text = tokenizer.apply_chat_template(task.messages, add_generation_prompt=True, tokenize=False)
        prompt = tokenizer.encode(text, add_special_tokens=False)  # as rollout/engine.py does
        samples = []
        for i in range(group_size):
            text = f"The answer is {rng.randint(10, 198)}. " * 4
            ids = tokenizer.encode(text, add_special_tokens=False)[: rng.randint(4, max_tokens)]
            s = Sample(task.id, 0, i, prompt, ids, text, [-1.0] * len(ids), "stop", 0)
            r = float(i % 2)
            samples.append(ScoredSample(s, RewardOutcome(reward=r, per_grader={"math": r}, statuses={"math": "x"})))
        groups.append(Group(task, group_size, samples))
    return groups


def random_model(spec: Path, out: Path) -> Path:
    """A model dir with the config and tokenizer of `spec` and random weights (seed 0)."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(spec))
    model.save_pretrained(out)
    for f in spec.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template", "generation_config")):
            shutil.copy(f, out / f.name)
    return out


def make(path: str, model: str, device: str, groups_per_pass: int = 1) -> tuple[Any, Any, Any, Any]:
    import torch

    from trainer.config import load_grpo_config
    from trainer.grpo import make_optimizer
    from trainer.policy import Policy

    dtype = "float32" if path == "float32" else "bfloat16"
    cfg = load_grpo_config(REPO / "examples" / "grpo_addition.toml",
                           [f"model.dtype='{dtype}'", f"model.path='{model}'", f"model.device='{device}'",
                            f"model.groups_per_pass={groups_per_pass}"])  # fmt: skip
    policy = Policy(cfg.model)
    if path == "pure-bf16":
        policy.model.to(torch.bfloat16)
    optimizer, scheduler = make_optimizer(policy, cfg)
    return cfg, policy, optimizer, scheduler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of " + ", ".join(PATHS))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--random-init", type=Path, default=None, help="config + tokenizer dir; random weights")
    ap.add_argument("--groups-per-pass", default="1", help="comma-separated model.groups_per_pass values (1 first)")
    args = ap.parse_args()
    per_pass = [int(k) for k in args.groups_per_pass.split(",")]
    dtypes = [p for p in args.paths.split(",") if p]
    unknown = set(dtypes) - set(PATHS)
    label = {(p, k): p if k == 1 else f"{p} x{k} groups/pass" for k in per_pass for p in dtypes}
    paths = list(label.values())
    if unknown or "float32" not in dtypes or per_pass[0] != 1:
        ap.error(f"--paths: unknown {sorted(unknown)}; float32 (the baseline) must be included, and --groups-per-pass "
                 "must start with 1")
    import torch
    from transformers import AutoTokenizer

    from rlvr.models import prepare_base_model
    from trainer.grpo import policy_update

    torch.set_num_threads(args.threads)
    if args.random_init is not None:
        import tempfile

        model = str(random_model(args.random_init, Path(tempfile.mkdtemp(prefix="rlvr-random-"))))
    else:
        model = str(prepare_base_model())
    groups = demo_groups(AutoTokenizer.from_pretrained(model))
    tokens = sum(len(g.samples[0].sample.prompt_token_ids) + sum(len(s.sample.token_ids) for s in g.samples)
                 for g in groups)  # fmt: skip
    setups = {name: make(p, model, args.device, k) for (p, k), name in label.items()}
    for cfg, policy, opt, sched in setups.values():  # warm-up (allocator, autocast kernels, a batched pass)
        policy_update(policy, opt, sched, groups[:2], cfg)
    times: dict[str, list[float]] = {p: [] for p in paths}

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    for r in range(args.rounds):
        for p in paths if r % 2 == 0 else paths[::-1]:  # alternate the order between rounds
            cfg, policy, opt, sched = setups[p]
            sync()
            t0 = time.perf_counter()
            policy_update(policy, opt, sched, groups, cfg)
            sync()
            times[p].append(time.perf_counter() - t0)
            print(f"round {r + 1}: {p:14s} {times[p][-1]:6.2f} s", flush=True)
    base = statistics.median(times["float32"])
    print(f"\npolicy update, demo batch ({len(groups)} groups, {tokens} tokens), {args.threads} thread(s), "
          f"median of {args.rounds} interleaved rounds:")  # fmt: skip
    for p in paths:
        med = statistics.median(times[p])
        spread = f"{min(times[p]):.2f}-{max(times[p]):.2f}"
        print(f"  {p:14s} {med:6.2f} s/step  ({med / base:.2f}x float32; range {spread})")
    from rlvr.hardware import machine_facts
    from trainer.policy import compute_dtype

    out = {"batch": {"groups": len(groups), "tokens": tokens}, "threads": args.threads, "rounds": args.rounds,
           "seconds": times, "median_s": {p: round(statistics.median(times[p]), 2) for p in paths},
           "over_float32": {p: round(statistics.median(times[p]) / base, 2) for p in paths},
           "auto_resolves_to": str(compute_dtype(setups["float32"][0].model.model_copy(update={"dtype": "auto"}))),
           "device": args.device, "random_init": args.random_init is not None, "groups_per_pass": per_pass,
           **machine_facts()}  # fmt: skip
    if args.device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
    name = "trainer_dtype.json" if args.device == "cpu" else f"trainer_dtype_{args.device}.json"
    path = REPO / "benchmarks" / "results" / name
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
