"""GRPO race: rlvr vs TRL's GRPOTrainer, same model, data, hyperparameters, precision and wall clock.

    .venv/bin/python benchmarks/grpo.py                       # the race: 2 tasks x 2 sides x 3 seeds x 900 s (~4 h)
    .venv/bin/python benchmarks/grpo.py --budget-s 180 --seeds 1 --tasks addition --checkpoint-every-s 45 \
        --eval-size 50 --out benchmarks/results/grpo_race_smoke.json    # a smoke run (not a result)
    .venv/bin/python benchmarks/grpo.py --tasks addition --seed-list 0 \
        --out benchmarks/results/grpo_race/addition_seed0.json            # one part of the race (~50 min)
    .venv/bin/python benchmarks/grpo_merge.py benchmarks/results/grpo_race/*.json   # parts -> grpo_race.json

Run it on a quiet machine (nothing else running): both sides are timed on the wall clock. Per task and seed,
the runs of the sides alternate; every run is its own process and its clock starts just before that process
is started (imports, model load and rlvr's rollout and grader services count), and training stops at
--budget-s on that clock. Both sides:
- train on the same 2,000 prompts in the same seeded order (neither reshuffles) and never see the task's
  200 held-out problems; LoRA r16, lr 2e-4, 2 prompts x 8 samples, <= 24 tokens, dapo loss, bf16;
- are rewarded by the same rule (the last integer of the completion equals the answer);
- save their adapter every 60 s of training. After all runs, off the clock, every checkpoint is scored by
  one evaluator: HF float32 greedy decoding on the 200 held-out problems, judged by the task's strict scorer
  (graders' `last_integer` for both tasks: the base model and both sides answer with an equation, "8 + 2 - 7
  = 3", which reasoning-gym's score_answer refused however right: 0.0% for all, commit a4a0ff8's arith part).
Sides: `trl` (TRL, HF generate in-process, both threads), `trl_vllm` (TRL's vLLM integration in colocate
mode; see benchmarks/results/trl_vllm_colocate_error.log for why it is not in the default set), `rlvr`
(`rlvr train grpo`: vLLM rollout + grader services, one thread for the trainer and one for the engine), and
`rlvr_sync` (rlvr with max_staleness 0: only for the async-overlap figure). The race can be run in parts (a
task and some seeds each, e.g. one quiet hour at a time) and the parts merged: benchmarks/grpo_merge.py checks
that they share every setting and the base model's score. Results: --out (JSON) and the
plot beside it; `python benchmarks/grpo_table.py --results OUT` prints the README's table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from grpo_common import (
    CHECKPOINT_EVERY_S,
    EVAL_SIZE,
    REPO,
    TASKS,
    HParams,
    read_jsonl,
    score,
    seeded_order,
    task_data,
    write_jsonl,
)
from grpo_plot import publish
from grpo_rlvr import run_rlvr

SIDES = ("trl", "trl_vllm", "rlvr", "rlvr_sync")


def run_trl(run_dir: Path, seed: int, a: argparse.Namespace, vllm: bool) -> None:
    cmd = [sys.executable, str(REPO / "benchmarks" / "grpo_trl.py"), str(run_dir), "--budget-s", str(a.budget_s),
           "--seed", str(seed), "--threads", str(a.threads), "--checkpoint-every-s", str(a.checkpoint_every_s),
           *(["--vllm"] if vllm else [])]  # fmt: skip
    print(f"  [trl] {' '.join(cmd)}  (log: {run_dir / 'train.log'})", flush=True)
    with (run_dir / "train.log").open("w") as log:
        # The clock starts here: the child's interpreter start, imports and model load count.
        proc = subprocess.Popen([*cmd, "--t0", str(time.time())], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            rc = proc.wait(a.budget_s * 2 + 600)
        finally:
            if proc.poll() is None:
                proc.kill()
    if rc != 0:
        raise RuntimeError(f"TRL exited {rc}; log tail:\n{(run_dir / 'train.log').read_text()[-3000:]}")


def run_one(side: str, run_dir: Path, task: str, seed: int, a: argparse.Namespace) -> None:
    if side in ("trl", "trl_vllm"):
        run_trl(run_dir, seed, a, vllm=side == "trl_vllm")
    else:
        staleness = 0 if side == "rlvr_sync" else 1
        run_rlvr(run_dir, task, HParams(), seed, a.budget_s, a.checkpoint_every_s, max_staleness=staleness)


def scored_run(side: str, run_dir: Path, seed: int, held: list[Any], task: str, a: argparse.Namespace
               ) -> dict[str, Any]:  # fmt: skip
    """Every checkpoint within the budget through the one evaluator (off the clock)."""
    points, samples = [], []
    for c in read_jsonl(run_dir / "checkpoints.jsonl"):
        if c["t_s"] > a.budget_s + 1e-6:
            continue
        s = score(Path(c["adapter"]), held, TASKS[task].scorer, HParams())
        points.append([round(c["t_s"], 2), c["step"], s["acc"]])
        samples = s["samples"]
        print(f"  [{side} seed {seed}] {c['t_s']:6.1f}s step {c['step']:4d}: held-out {s['acc']:.1%}", flush=True)
    steps = [r for r in read_jsonl(run_dir / "run" / "metrics.jsonl") if r.get("kind") == "train"]
    step_s = [r["time/step_s"] for r in steps]
    return {"seed": seed, "points": points, "final_samples": samples,
            "median_step_s": sorted(step_s)[len(step_s) // 2] if step_s else None}  # fmt: skip


def race_task(task: str, a: argparse.Namespace) -> dict[str, Any]:
    train, held = task_data(task)
    held = held[: a.eval_size]
    print(f"\n### {TASKS[task].name}: {len(train)} training / {len(held)} held-out problems", flush=True)
    base = score(None, held, TASKS[task].scorer, HParams())
    print(f"  base model held-out accuracy {base['acc']:.1%}; e.g. {base['samples'][0]}", flush=True)
    dirs: dict[tuple[str, int], Path] = {}
    errors: dict[tuple[str, int], str] = {}
    for seed in a.seed_list:
        for side in a.sides:  # sides alternate within a seed, so slow drift of the machine hits both
            run_dir = a.work / task / f"seed{seed}" / side
            run_dir.mkdir(parents=True, exist_ok=False)
            write_jsonl(seeded_order(train, seed), run_dir / "train.jsonl")
            write_jsonl(held, run_dir / "held.jsonl")
            try:
                run_one(side, run_dir, task, seed, a)
            except RuntimeError as e:  # recorded in the results (a run without checkpoints has no curve)
                print(f"  [{side} seed {seed}] FAILED: {e}", flush=True)
                errors[side, seed] = str(e)[-2000:]
            dirs[side, seed] = run_dir
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in a.sides}
    for (side, seed), run_dir in dirs.items():
        run = scored_run(side, run_dir, seed, held, task, a)
        if (side, seed) in errors:
            run["error"] = errors[side, seed]
        runs[side].append(run)
    return {"name": TASKS[task].name, "scorer": TASKS[task].scorer, "base_acc": base["acc"],
            "base_samples": base["samples"], "runs": runs}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=900, help="wall seconds per run, from the command's start")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per side per task")
    ap.add_argument("--seed-list", default="", help="comma list of seeds to run instead (one part of the race)")
    ap.add_argument("--tasks", default="addition,arith", help=f"comma list of {sorted(TASKS)}")
    ap.add_argument("--sides", default="trl,rlvr", help=f"comma list of {SIDES}")
    ap.add_argument("--checkpoint-every-s", type=float, default=CHECKPOINT_EVERY_S, help="race: 60")
    ap.add_argument("--eval-size", type=int, default=EVAL_SIZE, help="held-out problems scored (race: 200)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the TRL side (the machine)")
    ap.add_argument("--note", default="", help="stored in the results, e.g. how loaded the machine was")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "grpo_race.json")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / f"race-{time.strftime('%Y%m%d-%H%M%S')}")
    a = ap.parse_args()
    a.sides = a.sides.split(",")
    a.seed_list = [int(s) for s in a.seed_list.split(",")] if a.seed_list else list(range(a.seeds))
    if unknown := [s for s in a.sides if s not in SIDES] + [t for t in a.tasks.split(",") if t not in TASKS]:
        ap.error(f"unknown side/task: {unknown}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stops the running side too
    hp = HParams()
    results: dict[str, Any] = {
        "command": " ".join(sys.argv), "note": a.note, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "budget_s": a.budget_s, "load_average_start": os.getloadavg(),
        "seeds": a.seed_list, "sides": a.sides, "checkpoint_every_s": a.checkpoint_every_s, "eval_size": a.eval_size,
        "hparams": vars(hp), "machine": f"{platform.node()} {platform.processor() or platform.machine()}", "tasks": {},
    }  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    for task in a.tasks.split(","):
        results["tasks"][task] = race_task(task, a)
        results["load_average_end"] = os.getloadavg()
        a.out.write_text(json.dumps(results, indent=1))  # each finished task is kept, should a later one fail
    publish(results, a.out)


if __name__ == "__main__":
    main()
