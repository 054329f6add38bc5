"""SFT stage throughput (run: .venv/bin/python benchmarks/sft.py check [--rows 100000]).

* check: `rlvr data check` rows/s on a generated file (worked chain-sum solutions plus a share of varied
  free-text rows), with --eval and the base model's tokenizer, i.e. every check on. Target: a 100k-row file
  in well under a minute on 2 cores.
* arith: the §3 example (examples/sft_arith.toml, overrides allowed): held-out format adherence and strict
  accuracy (reasoning-gym score_answer) of the base model and after SFT, with wall times.
Results go to benchmarks/results/sft_<part>.json. Numbers depend on machine load: say so when quoting them."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from examples.data.make_arith_sft import RG_CONFIG, TEMPLATE, worked_solution  # noqa: E402

_PROSE = ("the of and to in is was for on that with as by it at from this be are or an have which one had not but "
          "all were when we there can been has more if will would other its about than into them these some so")
WORDS = _PROSE.split(" ")


def make_rows(n: int, seed: int) -> list[dict[str, object]]:
    """n rows: 80% arithmetic with worked solutions, 20% random prose (long, so tokenisation is exercised)."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for i in range(n):
        if i % 5:
            terms = [str(rng.randint(0, 99)) for _ in range(rng.randint(2, 3))]
            expr = " ".join(t for pair in zip([""] + [rng.choice("+-") for _ in terms[1:]], terms, strict=True)
                            for t in pair if t)  # fmt: skip
            q = TEMPLATE.replace("{question}", f"State the final answer to the following arithmetic problem: {expr} =")
            rows.append({"messages": [{"role": "user", "content": q},
                                      {"role": "assistant", "content": worked_solution(expr)[0]}]})  # fmt: skip
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 200)))
            rows.append({"prompt": [{"role": "user", "content": f"Summarise: {text}"}],
                         "completion": [{"role": "assistant", "content": text[: len(text) // 3]}]})  # fmt: skip
    return rows


def bench_check(a: argparse.Namespace) -> dict[str, object]:
    from trainer.datacheck.check import load_tokenizer, run_check

    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data, held = work / "check.jsonl", work / "held.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in make_rows(a.rows, 0)))
    held.write_text("".join(json.dumps(r) + "\n" for r in make_rows(500, 1)))
    tok = load_tokenizer("base")
    t0, c0 = time.perf_counter(), time.process_time()
    report, _ = run_check(data, eval_path=held, tokenizer=tok, model_name="base", max_len=256)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    # cpu_s (all threads of this process) is what the check costs; wall_s also holds the other processes'
    # share of a loaded machine.
    return {"rows": a.rows, "wall_s": round(wall, 2), "rows_per_s": round(a.rows / wall), "cpu_s": round(cpu, 2),
            "rows_per_cpu_s": round(a.rows / cpu), "errors": report.errors,
            "warnings": report.warnings, "cpus": os.cpu_count(), "load_avg_1m": os.getloadavg()[0],
            "rg_config": RG_CONFIG}  # fmt: skip


def bench_arith(a: argparse.Namespace) -> dict[str, object]:
    """One `rlvr train sft` run of the example: eval at step 0 (the base model) and at the end."""
    import shutil

    from trainer.sft.config import load_sft_config
    from trainer.sft.run import run_sft

    run_dir = Path(a.workdir) / "sft_arith"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = [f"run_dir='{run_dir}'", *a.overrides]
    cfg = load_sft_config("examples/sft_arith.toml", overrides)
    t0 = time.perf_counter()
    summary = run_sft(cfg)
    wall = time.perf_counter() - t0
    evals = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if '"eval/accuracy"' in x]
    return {"config": "examples/sft_arith.toml", "overrides": a.overrides, "steps": summary.steps,
            "held_out_tasks": int(evals[-1]["eval/samples"]),
            "base": {"format_rate": summary.first_format_rate, "accuracy": summary.first_accuracy},
            "sft": {"format_rate": summary.last_format_rate, "accuracy": summary.last_accuracy},
            "held_out_loss": [summary.first_eval_loss, summary.last_eval_loss],
            "sft_training_s": evals[-1]["training_s"], "run_wall_s": round(wall, 1), "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0], "machine": "shared 2-core machine, loaded by other jobs"}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["check", "arith"])
    ap.add_argument("overrides", nargs="*", help="arith: config overrides (key=value)")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--workdir", default="/tmp/rlvr-bench-sft")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    a.out = a.out or Path(f"benchmarks/results/sft_{a.part}.json")
    result = bench_check(a) if a.part == "check" else bench_arith(a)
    print(json.dumps(result, indent=1))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
