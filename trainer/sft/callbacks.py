"""TrainerCallbacks that tie TRL's SFTTrainer to the project's conventions.

- RunLogCallback: TRL's logs → <run_dir>/metrics.jsonl + TensorBoard (trainer.metrics.RunLog), and a plain
  progress line when stderr is not a terminal (TRL's own tqdm bar shows otherwise).
- CompleteCheckpoints: transformers writes checkpoint-N/ in place, trainer_state.json last; after each save this
  fsyncs the directory and writes a `.rlvr-complete` marker (atomically), and only then prunes older ones. A
  kill -9 mid-save leaves a directory without the marker, which `latest_complete` skips (and --resume removes),
  so a run always resumes from the last complete checkpoint."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from trainer.checkpoint import _fsync_dir, _fsync_tree
from trainer.metrics import RunLog

MARKER = ".rlvr-complete"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(root: Path) -> list[tuple[int, Path, bool]]:
    """(step, dir, complete) of every checkpoint-N under root, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p, (p / MARKER).is_file()) for p in root.iterdir() if (m := _CKPT.match(p.name))]
    return sorted(found)


def latest_complete(root: Path) -> Path | None:
    done = [p for _, p, ok in checkpoints(root) if ok]
    return done[-1] if done else None


def remove_incomplete(root: Path) -> list[Path]:
    """Delete checkpoint directories a crash left without their marker; returns them."""
    gone = [p for _, p, ok in checkpoints(root) if not ok]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


class CompleteCheckpoints(TrainerCallback):
    def __init__(self, root: Path, keep_last: int) -> None:
        self.root = root
        self.keep_last = keep_last

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        ckpt = self.root / f"checkpoint-{state.global_step}"
        if not (ckpt / "trainer_state.json").is_file():
            return
        _fsync_tree(ckpt)
        tmp = ckpt / f"{MARKER}.tmp"
        with tmp.open("w") as f:
            f.write(f"{state.global_step}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, ckpt / MARKER)
        _fsync_dir(ckpt)
        complete = [p for _, p, ok in checkpoints(self.root) if ok]
        for old in complete[: max(0, len(complete) - self.keep_last)]:
            shutil.rmtree(old, ignore_errors=True)


class RunLogCallback(TrainerCallback):
    """Writes TRL's train / eval logs as `train` / `eval` records (eval loss as eval/loss)."""

    def __init__(self, log: RunLog, total_steps: int, plain: bool) -> None:
        self.log = log
        self.total_steps = total_steps
        self.plain = plain

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.total_steps = state.max_steps or self.total_steps

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        step = state.global_step
        if "eval_loss" in logs:
            metrics = {f"eval/{k.removeprefix('eval_')}": float(v) for k, v in logs.items()
                       if k.startswith("eval_") and isinstance(v, int | float)}  # fmt: skip
            # RunLog keeps evaluation time out of training_s (the clock GRPO's max_time_s reads too).
            metrics["time/eval_s"] = float(logs.get("eval_runtime", 0.0))
            self.log.write("eval", step, metrics)
            self._say(f"[eval] step {step}: held-out loss {metrics['eval/loss']:.4f}")
        elif "loss" in logs:
            keep = ("loss", "learning_rate", "grad_norm", "num_tokens", "mean_token_accuracy", "entropy", "epoch")
            metrics = {k: float(v) for k, v in logs.items() if k in keep and isinstance(v, int | float)}
            self.log.write("train", step, metrics)
            self._say(f"step {step}/{self.total_steps}  loss {metrics.get('loss', float('nan')):.4f}  "
                      f"lr {metrics.get('learning_rate', 0):.2e}  {self.log.elapsed_s:.0f}s")  # fmt: skip

    def _say(self, text: str) -> None:
        if self.plain:
            print(text, file=sys.stderr, flush=True)


class GenerationEvalCallback(TrainerCallback):
    """Every `every` optimizer steps: held-out generation evaluation (trainer.sft.heldout) → an `eval` record."""

    def __init__(self, evaluate: Any, log: RunLog, every: int) -> None:
        self.evaluate = evaluate
        self.log = log
        self.every = every

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if self.every and state.global_step % self.every == 0 and state.global_step < state.max_steps:
            record_generation_eval(self.evaluate, model, state.global_step, self.log)


def record_generation_eval(evaluate: Any, model: Any, step: int, log: RunLog) -> dict[str, Any]:
    metrics = evaluate(model, step)
    log.note(f"[eval] step {step}: accuracy {metrics.get('eval/accuracy', float('nan')):.3f} (strict scorer)  "
             f"format {metrics.get('eval/format_rate', float('nan')):.3f}  ({int(metrics.get('eval/samples', 0))} "
             "tasks)")  # fmt: skip
    return log.write("eval", step, metrics)
