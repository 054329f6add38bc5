"""Distillation measured: a shrunk SmolLM2 student against its teacher on 2-digit addition, held-out accuracy by
the strict scorer (last_integer) through the shared evaluator.

    .venv/bin/python benchmarks/distill_addition.py --teacher DIR [--layers 11] [--select block|greedy] \
        [--mode logits] [--minutes 10] [--config examples/distill_addition.toml] [--out benchmarks/results/FILE.json] \
        [key=value ...]
    .venv/bin/python benchmarks/distill_addition.py --teacher DIR --config examples/distill_logits_addition.toml \
        --mode keep --minutes 0 --out benchmarks/results/FILE.json    # the logits recipe as a pipeline runs it

Makes the student with `rlvr models shrink` (afresh), runs `rlvr train distill` with the config
(mode and overrides as given, train.max_time_s = minutes unless 0; --mode keep: the config's) as a subprocess while
sampling the machine's load average, then reads the run's metrics.jsonl, teacher_eval.json and eval_samples.jsonl:
teacher and student accuracy on the same held-out problems, the student's accuracy per evaluation, training and
wall time, both parameter counts and the first held-out answers, so the numbers can be checked against what the
models wrote. The ≥ 90%-of-teacher-in-30-minutes goal is only meaningful on a quiet 2-core machine: the file
records the load average seen during the run next to the numbers."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.metrics import EVAL_FILE, read_records  # noqa: E402

EXAMPLES = 6


def _load_sampler(stop: threading.Event, out: list[float]) -> None:
    while not stop.wait(10.0):
        out.append(os.getloadavg()[0])


def _examples(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"prompt": r["prompt"], "answer": r["completion"], "verdict": r["verdict"]} for r in rows[:EXAMPLES]]


def summarize(run_dir: Path) -> dict[str, Any]:
    """What a finished `rlvr train distill` run dir says: the teacher's and the student's held-out accuracy on the
    same problems, the student's per evaluation (by step, training seconds and seconds since the run began), its
    divergence from the teacher, and the first held-out answers of each, to check the numbers against."""
    evals = [r for r in read_records(run_dir / "metrics.jsonl") if r["kind"] == "eval"]
    teacher = json.loads((run_dir / "teacher_eval.json").read_text())
    rows = read_records(run_dir / EVAL_FILE)
    first, last = evals[0], evals[-1]
    config = json.loads((run_dir / "config.json").read_text())
    t_acc = teacher["teacher/accuracy"]
    end = [r for r in rows if r["step"] == last["step"]]
    return {
        "task": f"{_task_name(config['data'])} (held-out, greedy, scorer {config['eval']['scorer']['grader']})",
        "mode": config["mode"],
        "completions": config["completions"],
        "held_out": int(last["eval/samples"]),
        "teacher_accuracy": t_acc,
        "student_accuracy_start": first["eval/accuracy"],
        "student_accuracy_end": last["eval/accuracy"],
        "fraction_of_teacher": last["eval/accuracy"] / t_acc if t_acc else None,
        "accuracy_by_step": {r["step"]: r["eval/accuracy"] for r in evals},
        "points": [[r["step"], r["training_s"], r["eval/accuracy"]] for r in evals],  # step, training s, accuracy
        "elapsed_s_by_step": {r["step"]: r["elapsed_s"] for r in evals},  # since the run began, evaluations included
        "forward_kl_by_step": {r["step"]: r.get("eval/forward_kl") for r in evals},
        "steps": last["step"],
        "training_s": last["training_s"],
        "teacher_examples": teacher.get("examples", ""),
        **_teacher_samples(run_dir),
        "student_examples_start": _examples([r for r in rows if r["step"] == first["step"]]),
        "student_examples_end": _examples(end),
        **_agreement(end, run_dir / "teacher_eval_samples.jsonl"),
    }


def _teacher_samples(run_dir: Path) -> dict[str, Any]:
    """The rejection-sampling totals of a run that sampled its teacher (prompts, verified rows, wall time)."""
    summary = run_dir / "teacher_samples" / "summary.json"
    if not summary.is_file():
        return {}
    return {"teacher_samples": {k: v for k, v in json.loads(summary.read_text()).items() if k != "teacher"}}


def _task_name(data: dict[str, Any]) -> str:
    """The task a run's data section describes, as the results files name it."""
    if data["source"] == "addition":
        return "2-digit addition"
    if data["source"] == "reasoning_gym":
        return f"reasoning-gym {data['name']} {json.dumps(data.get('rg_config') or {}, sort_keys=True)}"
    return f"{data['source']} {data.get('path') or data.get('name') or ''}".strip()


def _agreement(student: list[dict[str, Any]], teacher_file: Path) -> dict[str, Any]:
    """How often the final student wrote exactly the teacher's held-out answer: all of them, and on the problems
    the teacher got wrong (copied mistakes)."""
    if not teacher_file.is_file():
        return {}
    teacher = {r["prompt"]: r for r in read_records(teacher_file)}
    pairs = [(r, teacher[r["prompt"]]) for r in student if r["prompt"] in teacher]
    wrong = [(s, t) for s, t in pairs if t["verdict"] != "passed"]
    return {"same_answer_as_teacher": sum(s["completion"] == t["completion"] for s, t in pairs),
            "teacher_wrong": len(wrong),
            "teacher_mistakes_copied": sum(s["completion"] == t["completion"] for s, t in wrong),
            "compared": len(pairs)}  # fmt: skip


def shrink_student(teacher: Path, layers: int, out: Path, select: str, config: Path) -> dict[str, Any]:
    """`rlvr models shrink` afresh (a student left by an older layer selection must not be measured); greedy
    selection runs on the first PROBE_ROWS training tasks of the run's own config, as the pipeline's stage does.
    The selection's wall time is part of the result: it counts against a time budget."""
    cmd = [sys.executable, "-m", "rlvr.cli", "models", "shrink", "--from", str(teacher), "--layers", str(layers),
           "--out", str(out), "--select", select]  # fmt: skip
    if select == "greedy":
        from rlvr.student import PROBE_ROWS
        from trainer.data import build_tasks
        from trainer.distill.config import load_distill_config

        stream, _ = build_tasks(load_distill_config(config).data)
        probe = out.parent / f"{out.name}-probe.jsonl"
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_text("".join(json.dumps({"id": t.id, "messages": t.messages, **t.fields}) + "\n"
                                 for t in stream.tasks[:PROBE_ROWS]))  # fmt: skip
        cmd += ["--data", str(probe)]
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return {**json.loads((out / "shrink.json").read_text()), "select": select,
            "select_s": round(time.monotonic() - t0, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, required=True, help="teacher HF dir (e.g. a GRPO checkpoint's model/)")
    ap.add_argument("--layers", type=int, default=11)
    ap.add_argument("--select", default="block", choices=["block", "greedy"], help="the student's layers")
    ap.add_argument("--mode", default="logits", choices=["logits", "sequence", "on_policy", "keep"])
    ap.add_argument("--minutes", type=float, default=10.0,
                    help="training-time budget (evaluation excluded); 0: the config's")
    ap.add_argument("--config", type=Path, default=REPO / "examples" / "distill_addition.toml")
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("overrides", nargs="*", help="extra `rlvr train distill` overrides")
    args = ap.parse_args()
    tag = "-".join(args.teacher.resolve().parts[-4:]).replace(".", "_")
    student = REPO / "runs" / "students" / f"{tag}-{args.layers}layers-{args.select}"
    shrink = shrink_student(args.teacher, args.layers, student, args.select, args.config)
    run_dir = args.run_dir or REPO / "runs" / time.strftime(f"bench-distill-{args.mode}-%Y%m%d-%H%M%S")
    overrides = [f"run_dir={run_dir}", f"teacher.path={args.teacher}", f"student.path={student}",
                 "logging.progress=plain"]  # fmt: skip
    overrides += [f"mode={args.mode}"] if args.mode != "keep" else []
    overrides += [f"train.max_time_s={args.minutes * 60:g}"] if args.minutes else []
    overrides += args.overrides
    cmd = [sys.executable, "-m", "rlvr.cli", "train", "distill", "--config", str(args.config), *overrides]
    loads: list[float] = []
    load_before = list(os.getloadavg())
    stop = threading.Event()
    threading.Thread(target=_load_sampler, args=(stop, loads), daemon=True).start()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.monotonic() - t0
    stop.set()
    if proc.returncode != 0:
        raise SystemExit(f"rlvr train distill failed:\n{proc.stderr[-3000:]}")
    result = {
        "config": str(args.config.resolve().relative_to(REPO)),
        "teacher": str(args.teacher),
        "teacher_params": shrink["teacher_params"],
        "student_params": shrink["student_params"],
        "kept_layers": shrink["kept_layers"],
        "layer_select": shrink["select"],
        "layer_select_s": shrink["select_s"],
        **summarize(run_dir),
        "wall_s": round(wall, 1),
        "overrides": overrides,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_avg_1m_mean": round(sum(loads) / len(loads), 2) if loads else None,
                    "load_avg_1m_max": max(loads, default=None), "load_avg_before": load_before,
                    "load_avg_after": list(os.getloadavg())},
        "caveat": "wall and training times depend on the machine's load (load averages above; 2 cores: a load "
                  "above 2 means other jobs shared them); accuracies are of this run's length",
    }
    out = args.out or REPO / "benchmarks" / "results" / f"distill_addition_{result['mode']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("teacher_accuracy", "student_accuracy_start", "student_accuracy_end",
                                             "steps", "training_s", "wall_s")}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
