"""SFT stage throughput (run: .venv/bin/python benchmarks/sft.py check [--rows 100000]).

* check: `rlvr data check` rows/s on a generated file (worked chain-sum solutions plus a share of varied
  free-text rows), with --eval and the base model's tokenizer, i.e. every check on. Target: a 100k-row file
  in well under a minute on 2 cores.
* arith: the §3 example (examples/sft_arith.toml, overrides allowed): held-out format adherence and strict
  accuracy (reasoning-gym score_answer) of the base model and after SFT, with wall times.
* speed: training tokens/s of `rlvr train sft` (examples/sft_arith.toml) against a plain TRL SFTTrainer script
  with the same settings (benchmarks/sft_trl_plain.py) in the precision rlvr's model.dtype = "auto" picks on this
  CPU (bf16 autocast over float32 weights where it has bf16 kernels, else float32), plus any --sides, in
  alternating rounds. Both count TRL's num_tokens and time each logged step from the same point (the step's
  log), so tokens/s = tokens of steps 2..N / their seconds (step 1 holds the warm-up); whole-process wall time
  (imports, data check, loading) is reported beside it.
Results go to benchmarks/results/sft_<part>.json. Numbers depend on machine load: say so when quoting them."""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
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
    load0 = os.getloadavg()
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
            "load_avg_start": load0, "load_avg_end": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip


def _steady_tokens_per_s(tokens: list[float], elapsed: list[float]) -> float:
    return (tokens[-1] - tokens[0]) / (elapsed[-1] - elapsed[0])


def _speed_round(a: argparse.Namespace, which: str, i: int) -> dict[str, float]:
    import shutil
    import subprocess

    from trainer.policy import resolve_model_path

    work = Path(a.workdir) / f"speed-{which}-{i}"
    shutil.rmtree(work, ignore_errors=True)
    if which == "rlvr":
        # No held-out evaluation at the end either: a copy of the example without [eval] tasks and the eval file.
        cfg = Path(a.workdir) / "sft_arith_noeval.toml"
        cfg.parent.mkdir(parents=True, exist_ok=True)
        text = Path("examples/sft_arith.toml").read_text()
        cfg.write_text("\n".join(x for x in text.splitlines() if not x.startswith(("tasks =", "eval_path ="))))
        cmd = [".venv/bin/rlvr", "train", "sft", "--config", str(cfg), f"run_dir='{work}'", f"train.steps={a.steps}",
               "eval.at_start=false", "eval.every=0", "checkpoint.every=0", "logging.tensorboard=false",
               "logging.progress='plain'"]  # fmt: skip
    else:
        cmd = [sys.executable, "benchmarks/sft_trl_plain.py", "--model", str(resolve_model_path("base")),
               "--data", "examples/data/arith_sft.jsonl", "--steps", str(a.steps), "--out-dir", str(work),
               "--precision", which.removeprefix("trl_")]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"{which}: exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    if which == "rlvr":
        from trainer.metrics import read_records

        train = [r for r in read_records(work / "metrics.jsonl") if r["kind"] == "train"]
        tokens, elapsed = [r["num_tokens"] for r in train], [r["elapsed_s"] for r in train]
    else:
        got = json.loads(out.stdout.strip().splitlines()[-1])
        tokens, elapsed = got["num_tokens"], got["elapsed_s"]
    return {"tokens_per_s": round(_steady_tokens_per_s(tokens, elapsed), 1), "tokens": tokens[-1],
            "steps": len(tokens), "process_wall_s": round(wall, 1)}  # fmt: skip


def bench_speed(a: argparse.Namespace) -> dict[str, object]:
    from rlvr.hardware import bf16_is_native, machine_facts

    # Like for like is what rlvr's model.dtype = "auto" computes in here: bf16 autocast over float32 masters on a
    # CPU with bf16 kernels (TRL bf16=True), float32 elsewhere (TRL bf16=False). --sides adds the others.
    native = bf16_is_native("cpu")
    like = "trl_autocast" if native else "trl_float32"
    sides = ["rlvr", like, *(x for x in a.sides.split(",") if x and x not in ("rlvr", like))]
    unknown = set(sides) - {"rlvr", "trl_autocast", "trl_float32", "trl_bfloat16"}
    if unknown:
        sys.exit(f"--sides: unknown {sorted(unknown)}")
    rounds: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
    load0 = os.getloadavg()
    for i in range(a.rounds):
        for which in sides if i % 2 == 0 else sides[::-1]:
            rounds[which].append(_speed_round(a, which, i))
            print(which, rounds[which][-1], flush=True)
    med = {k: statistics.median(r["tokens_per_s"] for r in v) for k, v in rounds.items()}
    return {"config": "examples/sft_arith.toml", "baseline": "benchmarks/sft_trl_plain.py", "steps": a.steps,
            "rounds": rounds, "median_tokens_per_s": med, "like_for_like": like,
            "rlvr_over_like_for_like": round(med["rlvr"] / med[like], 3),
            "ratios": {f"rlvr_over_{k}": round(med["rlvr"] / med[k], 3) for k in sides if k != "rlvr"},
            "load_avg_start": load0, "load_avg_end": os.getloadavg(), **machine_facts()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["check", "arith", "speed"])
    ap.add_argument("overrides", nargs="*", help="arith: config overrides (key=value)")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--workdir", default="/tmp/rlvr-bench-sft")
    ap.add_argument("--steps", type=int, default=40, help="speed: optimizer steps per run")
    ap.add_argument("--rounds", type=int, default=3, help="speed: alternating rounds of each")
    ap.add_argument("--sides", default="", help="speed: more TRL sides beside rlvr and the like-for-like one "
                    "(trl_autocast, trl_float32, trl_bfloat16; bf16 ones run ~13x slower without bf16 kernels)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    a.out = a.out or Path(f"benchmarks/results/sft_{a.part}.json")
    result = {"check": bench_check, "arith": bench_arith, "speed": bench_speed}[a.part](a)
    print(json.dumps(result, indent=1))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
