"""The rlvr side of benchmarks/grpo.py: `rlvr train grpo` as a subprocess (embedded rollout + grader
services), stopped by its own train.max_time_s, checkpointing the adapter every N steps; afterwards every
checkpoint goes through the same HF float32 evaluator as TRL, placed on rlvr's training clock."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from grpo_common import REPO, Curve, HParams, adapter_accuracy, lora_config, mean_prompt_tokens, raw_for

from trainer.data import Task

RLVR_DTYPE = "bfloat16"


def _toml_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(v)  # JSON strings, numbers and booleans are valid TOML


def to_toml(data: dict[str, Any]) -> str:
    """Top-level keys, then one [table] per dict (nested dicts inline): enough for a GRPOConfig."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{name}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


def rlvr_config(train_path: Path, hp: HParams, budget_s: float, eval_every: int) -> str:
    """`rlvr train grpo` with the shared hyperparameters. AdamW betas match TRL's defaults; one thread each for
    trainer and engine, staleness 1 and the merged-LoRA engine are rlvr's documented CPU settings
    (examples/grpo_lora_addition.toml). Held-out evaluation happens afterwards, from the checkpoints."""
    lora = {"r": hp.lora_r, "alpha": hp.lora_alpha, "target_modules": "all-linear"}
    return to_toml({
        "rewards": [{"grader": "regex", "name": "last_number"}],  # pattern comes from each task
        "model": {"path": "base", "finetune": "lora", "dtype": RLVR_DTYPE, "threads": 1, "lora": lora},
        "data": {"source": "jsonl", "path": str(train_path), "seed": hp.seed},
        "loss": {"loss_type": hp.loss_type, "epsilon_low": hp.epsilon_low, "epsilon_high": hp.epsilon_high},
        "sampling": {"group_size": hp.samples_per_prompt, "temperature": hp.temperature, "max_tokens": hp.max_tokens},
        "optim": {"lr": hp.lr, "schedule": "constant", "betas": [0.9, 0.999], "max_grad_norm": 1.0},
        "train": {"steps": 100_000, "max_time_s": budget_s, "prompts_per_step": hp.prompts_per_step,
                  "max_staleness": 1, "seed": hp.seed},
        "eval": {"every": 0, "at_start": False, "at_end": False},
        "checkpoint": {"every": eval_every, "keep_last": 10_000, "at_end": True},
        "rollout": {"threads": 1, "max_model_len": 512},
        "logging": {"tensorboard": False, "progress": "plain"},
    })  # fmt: skip


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written while we read
    return out


def write_jsonl(tasks: list[Task], path: Path) -> Path:
    with path.open("w") as f:
        for t in tasks:
            f.write(json.dumps({"id": t.id, "messages": t.messages, **t.fields}) + "\n")
    return path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the trainer stops gracefully), SIGKILL of the process group if it hangs."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _watch(proc: subprocess.Popen[bytes], metrics: Path, budget_s: float) -> None:
    """Echo progress every 10 steps; a wall-clock backstop in case the run hangs (max_time_s ends it)."""
    seen, deadline = 0, time.monotonic() + budget_s * 2 + 900
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(2)
        records = read_metrics(metrics)
        for r in records[seen:]:
            if r.get("kind") == "train" and r["step"] % 10 == 0:
                print(f"  [rlvr] step {r['step']:4d}  train {r['training_s']:7.1f}s  "
                      f"reward {r.get('reward_mean', float('nan')):.2f}", flush=True)  # fmt: skip
        seen = len(records)
    _stop(proc)


def curve_from_run(run: Path, held: list[Task], hp: HParams, prompt_len: float) -> Curve:
    """Training clock and tokens from metrics.jsonl; accuracy of each checkpoint from the shared evaluator."""
    from trainer.checkpoint import list_checkpoints

    curve = Curve("rlvr")
    clock = {}
    for r in read_metrics(run / "metrics.jsonl"):
        if r.get("kind") == "train":
            clock[int(r["step"])] = float(r["training_s"])
            curve.steps = max(curve.steps, int(r["step"]))
            curve.train_s = max(curve.train_s, float(r["training_s"]))
            curve.tokens += float(r.get("samples", 0.0)) * (prompt_len + float(r.get("completion/len_mean", 0.0)))
    for ckpt in list_checkpoints(run / "checkpoints"):
        step = int(json.loads((ckpt / "state.json").read_text())["step"])
        acc = adapter_accuracy(ckpt / "adapter", held, hp)
        curve.points.append((clock.get(step, curve.train_s), step, acc))
        print(f"  [rlvr] step {step:4d}  train {clock.get(step, curve.train_s):7.1f}s  held-out {acc:.1%}", flush=True)
    return curve


def run_rlvr(train: list[Task], held: list[Task], hp: HParams, budget_s: float, eval_every: int, out: Path) -> Curve:
    run_dir = out / "rlvr"
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "bench.toml"
    cfg_path.write_text(rlvr_config(write_jsonl(train, run_dir / "train.jsonl"), hp, budget_s, eval_every))
    rlvr = str(REPO / ".venv" / "bin" / "rlvr")
    cmd = [rlvr, "train", "grpo", "--config", str(cfg_path), f"run_dir={run_dir / 'run'}"]
    log_path = run_dir / "train.log"
    print(f"  [rlvr] {' '.join(cmd)}  (log: {log_path})", flush=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        try:
            _watch(proc, run_dir / "run" / "metrics.jsonl", budget_s)
        finally:
            _stop(proc)
    curve = curve_from_run(run_dir / "run", held, hp, mean_prompt_tokens(train))
    if proc.returncode != 0 or not curve.points:
        curve.error = f"rlvr exited {proc.returncode}; log tail:\n{log_path.read_text()[-3000:]}"
    return curve


def raw_rlvr(curve: Curve, hp: HParams, threads: int) -> float:
    """Raw fwd+bwd tokens/s of rlvr's batch shape on a fresh LoRA model in rlvr's trainer dtype, on `threads`
    threads (1: the trainer's share of the cores; 2: the whole machine, as TRL gets)."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from rlvr.models import prepare_base_model

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = get_peft_model(
            AutoModelForCausalLM.from_pretrained(prepare_base_model(), dtype=getattr(torch, RLVR_DTYPE)),
            lora_config(hp),
        )
        raw = raw_for(model, curve, hp)
        del model
    finally:
        torch.set_num_threads(before)
    gc.collect()
    return raw
