"""GRPO benchmark: rlvr vs TRL's GRPOTrainer, same model, tasks, hyperparameters and wall-clock budget.

    .venv/bin/python benchmarks/grpo.py [--budget-s 900] [--tasks addition,arith] [--sides trl,rlvr]

For each task: the base model's held-out greedy accuracy, then TRL (in-process HF generation, 2 threads) and
rlvr (`rlvr train grpo` as a subprocess: vLLM rollout + grader services, one thread for the trainer and
one for the engine) each train for `--budget-s` seconds of training time (held-out evaluation excluded on
both sides). Both sides use the same hyperparameters (LoRA r16, lr 2e-4, 2 prompts x 8 samples, <= 24 tokens,
dapo loss) and score with the same rule: the last integer in the
completion equals the answer (a `regex` grader on the rlvr side, the identical `re.fullmatch` in TRL's
reward). Held-out accuracy comes from one evaluator for both: HF float32 greedy decoding of the policy
(TRL's in memory, rlvr's from its checkpoints). Printed: accuracy over time, trainer tokens/s vs raw
forward+backward tokens/s of the same batch (efficiency), and the time rlvr needs to reach TRL's final
accuracy. Results go to <out>/results.json; `--reuse` takes one side from an earlier results.json.

Not yet like for like (issue 10 §2): rlvr holds out data.eval_size of its training prompts while TRL trains on
all of them, rlvr trains in bf16 and TRL in float32, TRL generates with HF `generate` (not its vLLM
integration), one seed per side, and the printed ratio divides by TRL's whole budget, not TRL's time to the
same accuracy."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from grpo_common import REPO, TASKS, Curve, HParams, base_accuracy, with_patterns
from grpo_rlvr import raw_rlvr, run_rlvr
from grpo_trl import run_trl

from trainer.data import build_tasks


def _efficiency(c: Curve) -> str:
    own = c.tokens_per_s / c.raw_tokens_per_s if c.raw_tokens_per_s else float("nan")
    machine = c.tokens_per_s / c.raw_machine_tokens_per_s if c.raw_machine_tokens_per_s else float("nan")
    return (f"raw fwd+bwd {c.raw_tokens_per_s:.0f} tok/s on its threads, {c.raw_machine_tokens_per_s:.0f} on the "
            f"machine -> efficiency {own:.2f} (own threads) / {machine:.2f} (machine)")  # fmt: skip


def summarize(task: str, base: float, curves: dict[str, Curve], budget_s: float) -> dict[str, Any]:
    print(f"\n=== {task}: base held-out accuracy {base:.1%} (budget {budget_s:.0f}s of training) ===")
    for side, c in curves.items():
        if c.error:
            print(f"{side}: FAILED: {c.error}")
            continue
        pts = "  ".join(f"{t:.0f}s/{s}:{a:.0%}" for t, s, a in c.points)
        print(f"{side:5s} steps {c.steps:4d}  final {c.final_acc:.1%}  train {c.train_s:.0f}s  "
              f"{c.tokens_per_s:.0f} tok/s  {c.train_s / max(c.steps, 1):.1f} s/step")  # fmt: skip
        print(f"      {_efficiency(c)}")
        print(f"      accuracy over time (train s/step:acc): {pts}")
    summary: dict[str, Any] = {"task": task, "base_acc": base, "budget_s": budget_s}
    summary["curves"] = {
        k: {**asdict(v), "final_acc": v.final_acc, "tokens_per_s": v.tokens_per_s} for k, v in curves.items()
    }
    trl, ours = curves.get("trl"), curves.get("rlvr")
    if trl and ours and not trl.error and not ours.error:
        target = trl.final_acc
        t = ours.time_to(target)
        ratio = t / trl.train_s if t is not None and trl.train_s else None
        summary.update(rlvr_time_to_trl_final_s=t, ratio_to_trl_time=ratio)
        when = f"{t:.0f}s = {ratio:.2f}x TRL's {trl.train_s:.0f}s" if t is not None and ratio is not None else "never"
        print(f"rlvr reaches TRL's final accuracy ({target:.1%}) at: {when}   (target <= 0.5x)")
        best = max(a for _, _, a in trl.points)
        t_trl, t_ours = trl.time_to(best), ours.time_to(best)
        if t_trl and t_ours is not None:
            ratio_best = t_ours / t_trl
            print(f"TRL's best accuracy ({best:.1%}): TRL at {t_trl:.0f}s, rlvr at {t_ours:.0f}s = {ratio_best:.2f}x")
        else:
            print(f"TRL's best accuracy ({best:.1%}): rlvr {'never' if t_ours is None else f'at {t_ours:.0f}s'}")
        summary.update(trl_best_acc=best, trl_time_to_best_s=t_trl, rlvr_time_to_trl_best_s=t_ours)
        for side, c in curves.items():
            t85 = c.time_to(0.85)
            print(f"{side} time to 85%: {'never' if t85 is None else f'{t85:.0f}s'}")
            summary[f"{side}_time_to_85_s"] = t85
    return summary


def reused_curve(path: Path, task: str, side: str) -> Curve:
    """A side's curve from an earlier results.json (lets the sides run at different times)."""
    for summary in json.loads(path.read_text()):
        if summary["task"] == task and side in summary["curves"]:
            d = summary["curves"][side]
            c = Curve(**{k: v for k, v in d.items() if k in Curve.__dataclass_fields__})
            c.points = [tuple(p) for p in c.points]  # type: ignore[misc]
            if side == "trl" and not c.raw_machine_tokens_per_s:
                c.raw_machine_tokens_per_s = c.raw_tokens_per_s  # results written before that field existed
            return c
    raise SystemExit(f"{path}: no {side} curve for task {task!r}")


def run_side(side: str, train: list[Any], held: list[Any], hp: HParams, a: argparse.Namespace) -> Curve:
    if side == "trl":
        curve = run_trl(train, held, hp, a.budget_s, a.eval_every, a.out / a.task)
        curve.raw_machine_tokens_per_s = curve.raw_tokens_per_s  # TRL trains on all threads
        return curve
    curve = run_rlvr(train, held, hp, a.budget_s, a.eval_every, a.out / a.task)
    if not curve.error:
        curve.raw_tokens_per_s = raw_rlvr(curve, hp, threads=1)
        curve.raw_machine_tokens_per_s = raw_rlvr(curve, hp, threads=a.threads)
    return curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=900, help="training seconds per side per task")
    ap.add_argument("--tasks", default="addition,arith", help=f"comma list of {sorted(TASKS)}")
    ap.add_argument("--sides", default="trl,rlvr", help="comma list of trl, rlvr")
    ap.add_argument("--eval-every", type=int, default=10, help="steps between held-out evaluations")
    ap.add_argument("--eval-size", type=int, default=100, help="held-out tasks per task")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the TRL side (the machine)")
    ap.add_argument("--reuse", type=Path, help="results.json of an earlier run: take its curves for --reuse-sides")
    ap.add_argument("--reuse-sides", default="trl", help="sides taken from --reuse instead of being run")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / f"bench-grpo-{time.strftime('%Y%m%d-%H%M%S')}")
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stops the rlvr subprocess too
    import torch

    torch.set_num_threads(a.threads)
    hp = HParams()
    a.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in a.tasks.split(","):
        spec, a.task = TASKS[name], name
        stream, held = build_tasks(spec.data.model_copy(update={"eval_size": a.eval_size}))
        train, held = with_patterns(stream.tasks), with_patterns(held)
        print(f"\n### {spec.name}: {len(train)} train / {len(held)} held-out tasks", flush=True)
        base = base_accuracy(held, hp)
        print(f"  base held-out accuracy {base:.1%}", flush=True)
        curves: dict[str, Curve] = {}
        for side in a.sides.split(","):
            if a.reuse and side in a.reuse_sides.split(","):
                curves[side] = reused_curve(a.reuse, spec.name, side)
            else:
                curves[side] = run_side(side, train, held, hp, a)
            if not curves[side].points or curves[side].points[0][1] != 0:
                curves[side].points.insert(0, (0.0, 0, base))
        results.append(summarize(spec.name, base, curves, a.budget_s))
        (a.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nresults: {a.out / 'results.json'}")


if __name__ == "__main__":
    main()
