"""The rlvr side of the GRPO race: `rlvr train grpo` as a subprocess (embedded rollout + grader services), on
the race clock: started at t0, stopped (SIGTERM) at t0 + budget, a checkpoint every 60 s of training
(checkpoint.every_s); each checkpoint's time is its save time (state.json saved_unix) minus t0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from grpo_common import CHECKPOINT_EVERY_S, REPO, TASKS, HParams, read_jsonl


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


def rlvr_config(run_dir: Path, task: str, hp: HParams, seed: int, budget_s: float,
                checkpoint_every_s: float = CHECKPOINT_EVERY_S, max_staleness: int = 1) -> str:  # fmt: skip
    """`rlvr train grpo` with the shared hyperparameters on run_dir/train.jsonl in file order (no split, no
    shuffle; held.jsonl is only named because a jsonl source needs a held-out set for its scorer: nothing is
    evaluated during the run). AdamW betas match TRL's defaults; one thread each for trainer and engine,
    staleness 1 and the merged-LoRA engine are rlvr's documented CPU settings."""
    lora = {"r": hp.lora_r, "alpha": hp.lora_alpha, "target_modules": "all-linear"}
    return to_toml({
        "run_dir": str(run_dir / "run"),
        "rewards": [{"grader": "regex", "name": "last_number"}],  # pattern comes from each task
        "model": {"path": "base", "finetune": "lora", "dtype": hp.dtype, "threads": 1, "lora": lora},
        "data": {"source": "jsonl", "path": str(run_dir / "train.jsonl"), "eval_path": str(run_dir / "held.jsonl"),
                 "shuffle": False, "seed": seed},
        "loss": {"loss_type": hp.loss_type, "epsilon_low": hp.epsilon_low, "epsilon_high": hp.epsilon_high},
        "sampling": {"group_size": hp.samples_per_prompt, "temperature": hp.temperature, "max_tokens": hp.max_tokens},
        "optim": {"lr": hp.lr, "schedule": "constant", "betas": [0.9, 0.999], "max_grad_norm": 1.0},
        "train": {"steps": 100_000, "max_time_s": budget_s, "prompts_per_step": hp.prompts_per_step,
                  "max_staleness": max_staleness, "seed": seed},
        "eval": {"every": 0, "at_start": False, "at_end": False, "scorer": TASKS[task].scorer},
        "checkpoint": {"every": 0, "every_s": checkpoint_every_s, "keep_last": 10_000, "at_end": False},
        "rollout": {"threads": 1, "max_model_len": 512},
        "logging": {"tensorboard": False, "progress": "plain"},
    })  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the trainer unwinds and stops its services), SIGKILL of the process group if it hangs."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def checkpoints(run_dir: Path, t0: float) -> list[dict[str, Any]]:
    """The run's checkpoints on the race clock, as in checkpoints.jsonl (written here for the rlvr side)."""
    from trainer.checkpoint import list_checkpoints

    out = []
    for ckpt in list_checkpoints(run_dir / "run" / "checkpoints"):
        state = json.loads((ckpt / "state.json").read_text())
        out.append({"t_s": float(state["extra"]["saved_unix"]) - t0, "step": int(state["step"]),
                    "adapter": str(ckpt / "adapter")})  # fmt: skip
    return out


def run_rlvr(run_dir: Path, task: str, hp: HParams, seed: int, budget_s: float,
             checkpoint_every_s: float = CHECKPOINT_EVERY_S, max_staleness: int = 1) -> None:  # fmt: skip
    """One run; leaves run_dir/checkpoints.jsonl and run_dir/run/metrics.jsonl (per-step timings)."""
    cfg_path = run_dir / "rlvr.toml"
    cfg_path.write_text(rlvr_config(run_dir, task, hp, seed, budget_s, checkpoint_every_s, max_staleness))
    cmd = [str(REPO / ".venv" / "bin" / "rlvr"), "train", "grpo", "--config", str(cfg_path)]
    log_path = run_dir / "train.log"
    print(f"  [rlvr] {' '.join(cmd)}  (log: {log_path})", flush=True)
    t0 = time.time()
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        try:
            while proc.poll() is None and time.time() - t0 < budget_s:
                time.sleep(0.5)
        finally:
            _stop(proc)
    saved = checkpoints(run_dir, t0)
    with (run_dir / "checkpoints.jsonl").open("w") as f:
        f.writelines(json.dumps(c) + "\n" for c in saved)
    steps = [r for r in read_jsonl(run_dir / "run" / "metrics.jsonl") if r.get("kind") == "train"]
    if not saved:
        raise RuntimeError(f"rlvr saved no checkpoint (exit {proc.returncode}); log tail:\n"
                           f"{log_path.read_text()[-3000:]}")  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps({"steps": len(steps), "exit": proc.returncode}))
