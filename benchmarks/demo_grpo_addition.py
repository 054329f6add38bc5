"""`rlvr demo --grpo-only` measured: held-out accuracy by the strict scorer (last_integer) before and after, per seed.

    .venv/bin/python benchmarks/demo_grpo_addition.py [--seeds 0 1 2] [--out benchmarks/results/demo_grpo_addition.json]

Runs `rlvr demo --grpo-only --seed S` (embedded services, examples/grpo_addition.toml's recipe) once
per seed as a subprocess, then reads each run's metrics.jsonl and eval_samples.jsonl: base and final
accuracy on the 200 held-out problems (the same problems for every seed), training and wall time, and the
first held-out answers before and after, so the numbers can be checked against what the model wrote; a plot
of held-out accuracy and training reward per step beside the JSON. The README's demo claim quotes these files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.metrics import EVAL_FILE, read_records  # noqa: E402

EXAMPLES = 6


def _examples(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"prompt": r["prompt"], "answer": r["completion"], "verdict": r["verdict"]} for r in rows[:EXAMPLES]]


def run_seed(seed: int, run_dir: Path) -> dict[str, Any]:
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "rlvr.cli", "demo", "--grpo-only", "--seed", str(seed), "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"seed {seed}: rlvr demo failed:\n{proc.stderr[-3000:]}")
    records = read_records(run_dir / "metrics.jsonl")
    evals = [r for r in records if r["kind"] == "eval"]
    rows = read_records(run_dir / EVAL_FILE)
    first, last = evals[0], evals[-1]
    return {
        "seed": seed,
        "held_out": int(last["eval/samples"]),
        "base_accuracy": first["eval/accuracy"],
        "final_accuracy": last["eval/accuracy"],
        "gain_points": round(100 * (last["eval/accuracy"] - first["eval/accuracy"]), 1),
        "accuracy_by_step": {r["step"]: r["eval/accuracy"] for r in evals},
        "reward_mean_by_step": {r["step"]: r.get("eval/rewards/reward_mean") for r in evals},
        "train_reward_by_step": {r["step"]: r.get("reward_mean") for r in records if r["kind"] == "train"},
        "steps": last["step"],
        "training_s": last["training_s"],
        "wall_s": round(wall, 1),
        "examples_before": _examples([r for r in rows if r["step"] == first["step"]]),
        "examples_after": _examples([r for r in rows if r["step"] == last["step"]]),
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for i, r in enumerate(results):
        color = f"C{i}"
        acc = r["accuracy_by_step"]
        ax.plot(list(acc), [100 * v for v in acc.values()], "o-", color=color,
                label=f"seed {r['seed']}: held-out accuracy (greedy, strict scorer)")  # fmt: skip
        rew = r["train_reward_by_step"]
        ax.plot(list(rew), [100 * v for v in rew.values()], ":", color=color, alpha=0.7,
                label=f"seed {r['seed']}: training reward (sampled, T = 1)")  # fmt: skip
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("%")
    ax.set_title(f"rlvr demo --grpo-only: 2-digit addition, {results[0]['held_out']} held-out problems", fontsize=10)
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "demo_grpo_addition.json")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "bench-demo")
    ap.add_argument("--note", default="", help="e.g. whether other work loaded the machine")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    results = []
    for seed in args.seeds:
        res = run_seed(seed, args.runs / f"seed{seed}")
        print(f"seed {seed}: {res['base_accuracy']:.1%} -> {res['final_accuracy']:.1%} "
              f"({res['gain_points']:+.1f} points) in {res['training_s']:.0f}s training, {res['wall_s']:.0f}s wall")
        results.append(res)
    out = {
        "benchmark": "rlvr demo --grpo-only: GRPO, SmolLM2-135M-Instruct, 2-digit addition; accuracy = last_integer "
                     "on 200 held-out problems, greedy",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "note": args.note,
        "load_average_1m": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": results,
        "summary": {
            "base_accuracy": [r["base_accuracy"] for r in results],
            "final_accuracy": [r["final_accuracy"] for r in results],
            "min_gain_points": min(r["gain_points"] for r in results),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png').name}")


if __name__ == "__main__":
    main()
