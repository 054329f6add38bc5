"""SFT stage throughput (run: .venv/bin/python benchmarks/sft.py check [--rows 100000]).

* check: `rlvr data check` rows/s on a generated file (worked chain-sum solutions plus a share of varied
  free-text rows), with --eval and the base model's tokenizer, i.e. every check on. Target: a 100k-row file
  in well under a minute on 2 cores.
Results go to benchmarks/results/sft_check.json. Numbers depend on machine load: say so when quoting them."""

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
    rows = []
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["check"])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--workdir", default="/tmp/rlvr-bench-sft")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/sft_check.json"))
    a = ap.parse_args()
    result = bench_check(a)
    print(json.dumps(result, indent=1))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
