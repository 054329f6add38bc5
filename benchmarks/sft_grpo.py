"""SFT warm-up + GRPO against GRPO alone on the same training-time budget (run: .venv/bin/python
benchmarks/sft_grpo.py [--seeds 0 1 2] [--sft-steps 30] [--grpo-steps 20]).

Per seed s, on reasoning-gym chain_sum (examples/sft_arith.toml, examples/grpo_arith.toml as committed, with
the overrides recorded in the result):
* chain: `rlvr train sft` (train.seed = s), then `rlvr train grpo` from its model (train.seed = s, engine
  seed s);
* alone: `rlvr train grpo` from the base model with train.max_time_s = the chain's SFT + GRPO training
  seconds (each run's own metrics clock: set-up and held-out evaluation excluded), same GRPO settings.
Then one evaluator, `rlvr eval --config examples/eval_arith.toml`, scores the base model and every final model
on the same 200 held-out tasks in one call: accuracy = reasoning-gym's score_answer == 1.0 (the task's strict
scorer, never the `math` reward GRPO trained on), format rate = the "Answer: n" regex.
Writes benchmarks/results/sft_grpo_arith.json and .png. Run it on a quiet machine: the budget is wall time."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPO)  # not benchmarks/: its rollout.py would shadow the rollout package
RLVR = str(REPO / ".venv" / "bin" / "rlvr")
OUT = REPO / "benchmarks" / "results" / "sft_grpo_arith.json"
ANSWER_KEYS = ("prompt", "completion", "gold", "verdict")
COMMON_GRPO = ["eval.every=0", "eval.at_start=false", "eval.at_end=false", "checkpoint.every=0",
               "checkpoint.at_end=true", "logging.progress='plain'", "logging.tensorboard=false"]  # fmt: skip


def run(cmd: list[str], log: Path) -> float:
    """Runs an rlvr command, its output to log; returns its wall seconds; raises with the log's tail on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"  $ {' '.join(cmd)}  (log: {log})", flush=True)
    t0 = time.perf_counter()
    with log.open("w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    if rc != 0:
        raise RuntimeError(f"exit {rc}: {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return time.perf_counter() - t0


def records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    from trainer.metrics import read_records

    return [r for r in read_records(run_dir / "metrics.jsonl") if r.get("kind") == kind]


def training_s(run_dir: Path) -> float:
    return float(records(run_dir, "train")[-1]["training_s"])


def final_model(grpo_dir: Path) -> Path:
    ckpts = grpo_dir / "checkpoints"
    return ckpts / (ckpts / "latest").read_text().strip() / "model"


def sft(work: Path, seed: int, steps: int) -> dict[str, Any]:
    run_dir = work / f"seed{seed}" / "sft"
    # eval.size=20: the run's own closing check stays short; every model is scored later by one evaluator.
    cmd = [RLVR, "train", "sft", "--config", "examples/sft_arith.toml", f"run_dir='{run_dir}'",
           f"train.steps={steps}", f"train.seed={seed}", "eval.at_start=false", "eval.every=0", "eval.size=20",
           "checkpoint.every=0", "logging.progress='plain'", "logging.tensorboard=false"]  # fmt: skip
    wall = run(cmd, run_dir.parent / "sft.log")
    return {"run_dir": str(run_dir), "model": str(run_dir / "model"), "steps": steps,
            "training_s": training_s(run_dir), "wall_s": round(wall, 1)}  # fmt: skip


def grpo(work: Path, seed: int, name: str, model: str, extra: list[str]) -> dict[str, Any]:
    run_dir = work / f"seed{seed}" / name
    wall = run([RLVR, "train", "grpo", "--config", "examples/grpo_arith.toml", f"run_dir='{run_dir}'",
                f"model.path='{model}'", f"train.seed={seed}", f'rollout.extra_args=["--seed", "{seed}"]',
                *COMMON_GRPO, *extra], run_dir.parent / f"{name}.log")  # fmt: skip
    steps = records(run_dir, "train")
    return {"run_dir": str(run_dir), "model": str(final_model(run_dir)), "steps": steps[-1]["step"],
            "training_s": training_s(run_dir), "wall_s": round(wall, 1),
            "train_reward_by_step": [round(r["reward_mean"], 4) for r in steps]}  # fmt: skip


def evaluate(work: Path, models: dict[str, str]) -> dict[str, dict[str, Any]]:
    out = work / "eval.json"
    cmd = [RLVR, "eval", "--config", "examples/eval_arith.toml", f"out_dir='{work / 'eval'}'", "--json", str(out)]
    for path in models.values():
        cmd += ["--model", path]
    wall = run(cmd, work / "eval.log")
    from trainer.eval_models import resolve_model

    by_path = {str(Path(r["model"]).resolve()): r for r in json.loads(out.read_text())}
    result = {}
    for label, path in models.items():
        r = by_path[str(resolve_model(path).resolve())]
        rows = [json.loads(x) for x in Path(r["samples_file"]).read_text().splitlines()]
        greedy = [x for x in rows if x.get("mode") == "greedy"]
        m = r["metrics"]
        result[label] = {"accuracy": m["accuracy"], "format_rate": m["reward/format"], "reward/math": m["reward/math"],
                         "tasks": int(m["tasks"]), "statuses": r["statuses"],
                         "answers": [{k: x[k] for k in ANSWER_KEYS} for x in greedy[:4]]}  # fmt: skip
    print(f"  eval of {len(models)} models: {wall:.0f}s", flush=True)
    return result


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def summarise(seeds: list[int], runs: dict[int, dict[str, Any]], scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    arms = {"sft": [scores[f"sft_s{s}"]["accuracy"] for s in seeds],
            "sft_grpo": [scores[f"sft_grpo_s{s}"]["accuracy"] for s in seeds],
            "grpo_alone": [scores[f"grpo_alone_s{s}"]["accuracy"] for s in seeds]}  # fmt: skip
    base = scores["base"]["accuracy"]
    beats = all(a > b for a, b in zip(arms["sft_grpo"], arms["grpo_alone"], strict=True))
    return {"base_accuracy": base, "accuracy_by_seed": arms, "mean_accuracy": {k: mean(v) for k, v in arms.items()},
            "sft_grpo_minus_base_points": round(100 * (mean(arms["sft_grpo"]) - base), 1),
            "sft_grpo_beats_grpo_alone_every_seed": beats,
            "format_rate_after_sft": [scores[f"sft_s{s}"]["format_rate"] for s in seeds],
            "budget_s_by_seed": [runs[s]["budget_s"] for s in seeds]}  # fmt: skip


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    labels = ["base", "SFT", "SFT + GRPO", "GRPO alone\n(same budget)"]
    values = [[s["base_accuracy"]], *(s["accuracy_by_seed"][k] for k in ("sft", "sft_grpo", "grpo_alone"))]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, vals in enumerate(values):
        ax.bar(i, 100 * mean(vals), color=["#999", "#6a9fd4", "#2b6cb0", "#d08c3c"][i], alpha=0.8)
        ax.scatter([i] * len(vals), [100 * v for v in vals], color="k", s=14, zorder=3)
        ax.text(i, 100 * max(vals) + 1.5, f"{100 * mean(vals):.1f}", ha="center", fontsize=9)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, 100 * max(max(v) for v in values) + 10)
    ax.set_ylabel("held-out accuracy, % (score_answer == 1)")
    budget = mean(s["budget_s_by_seed"])
    ax.set_title(f"chain_sum, {result['scores']['base']['tasks']} held-out tasks, seeds {result['seeds']}\n"
                 f"training budget per seed ≈ {budget:.0f} s on 2 CPU cores (dots: seeds)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sft-steps", type=int, default=30)
    ap.add_argument("--grpo-steps", type=int, default=20)
    ap.add_argument("--workdir", type=Path, default=REPO / "runs" / "bench-sft-grpo")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--replot", action="store_true", help="only redraw the plot of an existing --out file")
    a = ap.parse_args()
    if a.replot:
        plot(json.loads(a.out.read_text()), a.out.with_suffix(".png"))
        return
    t0, load0 = time.perf_counter(), os.getloadavg()
    runs: dict[int, dict[str, Any]] = {}
    for seed in a.seeds:
        print(f"seed {seed}", flush=True)
        s = sft(a.workdir, seed, a.sft_steps)
        g = grpo(a.workdir, seed, "sft_grpo", s["model"], [f"train.steps={a.grpo_steps}"])
        budget = round(s["training_s"] + g["training_s"], 1)
        alone = grpo(a.workdir, seed, "grpo_alone", "base", ["train.steps=100000", f"train.max_time_s={budget}"])
        runs[seed] = {"sft": s, "sft_grpo": g, "grpo_alone": alone, "budget_s": budget}
        print(f"  budget {budget}s: SFT {s['steps']} + GRPO {g['steps']} steps vs GRPO alone {alone['steps']} steps",
              flush=True)  # fmt: skip
    models = {"base": "base"}
    for seed in a.seeds:
        models |= {f"sft_s{seed}": runs[seed]["sft"]["model"], f"sft_grpo_s{seed}": runs[seed]["sft_grpo"]["model"],
                   f"grpo_alone_s{seed}": runs[seed]["grpo_alone"]["model"]}  # fmt: skip
    scores = evaluate(a.workdir, models)
    result = {"benchmark": __doc__.split("\n\n")[0].replace("\n", " "), "seeds": a.seeds,
              "configs": ["examples/sft_arith.toml", "examples/grpo_arith.toml", "examples/eval_arith.toml"],
              "sft_steps": a.sft_steps, "grpo_steps_after_sft": a.grpo_steps, "runs": runs, "scores": scores,
              "wall_s": round(time.perf_counter() - t0, 1), "machine": {"cpus": os.cpu_count(), "load_avg_start": load0,
              "load_avg_end": os.getloadavg()}, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    result["summary"] = summarise(a.seeds, runs, scores)
    print(json.dumps(result["summary"], indent=1))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, a.out.with_suffix(".png"))
    print(f"wrote {a.out} and {a.out.with_suffix('.png')}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
