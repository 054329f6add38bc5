"""GRPO benchmark: rlvr vs TRL's GRPOTrainer, same model, tasks, hyperparameters and wall-clock budget.

    .venv/bin/python benchmarks/grpo.py [--budget-s 900] [--tasks addition,arith] [--sides trl,rlvr]

For each task: the base model's held-out greedy accuracy, then TRL (in-process HF generation) and rlvr
(`rlvr train grpo` as a subprocess, read back from its metrics.jsonl) each train for `--budget-s` seconds of
training time (held-out evaluation excluded on both sides). Both sides see the same training prompts and
the same held-out set, and score with the same rule: the last integer in the completion equals the answer
(a `regex` grader pattern on the rlvr side, the identical `re.fullmatch` on the TRL side). Printed:
accuracy over time, tokens/s of each trainer vs raw forward+backward tokens/s of the same batch
(efficiency), and the time rlvr needs to reach TRL's final accuracy. Results go to <out>/results.json."""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from trainer.data import DataConfig, Task, build_tasks  # noqa: E402


@dataclass
class HParams:
    """Shared by both sides (the TRL reference settings of the issue)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lr: float = 2e-4
    prompts_per_step: int = 2
    samples_per_prompt: int = 8
    max_tokens: int = 24
    temperature: float = 1.0
    loss_type: str = "dapo"
    epsilon_low: float = 0.2
    epsilon_high: float = 0.28
    seed: int = 0


@dataclass
class TaskSpec:
    name: str
    data: DataConfig


ARITH_CONFIG = {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"],
                "allow_parentheses": False, "allow_negation": False}  # fmt: skip
# fmt: off
TASKS = {
    "addition": TaskSpec("addition", DataConfig(source="addition", size=2000, eval_size=100, seed=0)),
    "arith": TaskSpec(
        "reasoning_gym:basic_arithmetic",
        DataConfig(source="reasoning_gym", name="basic_arithmetic", size=2000, eval_size=100, seed=0,
                   template="{question} Reply with only the number.", rg_config=ARITH_CONFIG),
    ),
}
# fmt: on


@dataclass
class Curve:
    """One side's run on one task."""

    side: str
    points: list[tuple[float, int, float]] = field(default_factory=list)
    """(training seconds, step, held-out accuracy)."""
    train_s: float = 0.0
    steps: int = 0
    tokens: float = 0.0
    """Prompt + completion tokens trained on."""
    raw_tokens_per_s: float = 0.0
    error: str = ""

    @property
    def final_acc(self) -> float:
        return self.points[-1][2] if self.points else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.train_s if self.train_s else float("nan")

    def time_to(self, acc: float) -> float | None:
        return next((t for t, _, a in self.points if a >= acc - 1e-9), None)


# ------------------------------------------------------------------------------------------- grading


def last_number_pattern(answer: str) -> str:
    """fullmatch pattern: the completion's last integer is `answer` (not part of a longer number/sign)."""
    return rf"(?:.*[^0-9-])?{re.escape(answer.strip())}[^0-9]*"


def is_correct(completion: str, pattern: str) -> bool:
    return re.fullmatch(pattern, completion.strip(), flags=re.S) is not None  # the regex grader strips too


def with_patterns(tasks: list[Task]) -> list[Task]:
    return [Task(t.id, t.messages, {**t.fields, "pattern": last_number_pattern(t.fields["answer"])}) for t in tasks]


def mean_prompt_tokens(tasks: list[Task]) -> float:
    from transformers import AutoTokenizer

    from rlvr.models import prepare_base_model

    tok = AutoTokenizer.from_pretrained(prepare_base_model())
    sample = tasks[:200]
    texts = [tok.apply_chat_template(t.messages, tokenize=False, add_generation_prompt=True) for t in sample]
    return sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in texts) / len(sample)


def write_jsonl(tasks: list[Task], path: Path) -> Path:
    with path.open("w") as f:
        for t in tasks:
            f.write(json.dumps({"id": t.id, "messages": t.messages, **t.fields}) + "\n")
    return path


# --------------------------------------------------------------------------------------- HF helpers


def hf_greedy_accuracy(model: Any, tok: Any, tasks: list[Task], max_tokens: int, batch: int = 100) -> float:
    import torch

    was_training = model.training
    model.eval()
    tok.padding_side = "left"
    correct = 0
    for i in range(0, len(tasks), batch):
        chunk = tasks[i : i + batch]
        texts = [tok.apply_chat_template(t.messages, tokenize=False, add_generation_prompt=True) for t in chunk]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(
                **enc, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id, top_p=None,
                use_cache=True,  # TRL turns the cache off in the config while it trains
            )
        for t, ids in zip(chunk, out[:, enc["input_ids"].shape[1] :], strict=True):
            correct += is_correct(tok.decode(ids, skip_special_tokens=True), t.fields["pattern"])
    model.train(was_training)
    return correct / len(tasks)


def raw_train_tokens_per_s(model: Any, seq_len: int, batch: int, reps: int = 3) -> float:
    """Forward + backward + optimizer step on a [batch, seq_len] batch: the trainer's ceiling."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=0.0)
    ids = torch.randint(100, 1000, (batch, seq_len))
    model.train()
    times = []
    for _ in range(reps + 1):
        start = time.perf_counter()
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        logps = torch.log_softmax(out.logits[:, :-1].float(), -1).gather(-1, ids[:, 1:, None])
        logps.mean().backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return batch * seq_len / sorted(times[1:])[len(times[1:]) // 2]


# -------------------------------------------------------------------------------------------- TRL


class BudgetClock:
    """TrainerCallback body: stops TRL at the budget and evaluates every `eval_every` steps off the clock."""

    def __init__(self, curve: Curve, evaluate: Any, budget_s: float, eval_every: int) -> None:
        self.curve, self.evaluate, self.budget_s, self.eval_every = curve, evaluate, budget_s, eval_every
        self.t0 = 0.0
        self.eval_s = 0.0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.t0 = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        elapsed = time.perf_counter() - self.t0 - self.eval_s
        c = self.curve
        c.train_s, c.steps, c.tokens = elapsed, state.global_step, float(state.num_input_tokens_seen)
        done = elapsed >= self.budget_s
        if done or state.global_step % self.eval_every == 0:
            start = time.perf_counter()
            acc = self.evaluate(kw["model"])
            self.eval_s += time.perf_counter() - start
            c.points.append((elapsed, state.global_step, acc))
            print(f"  [trl] step {state.global_step:4d}  train {elapsed:7.1f}s  held-out {acc:.1%}", flush=True)
        control.should_training_stop = done


def trl_args(hp: HParams, out: Path) -> Any:
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(out / "trl"), use_vllm=False, use_cpu=True, bf16=False, seed=hp.seed,
        learning_rate=hp.lr, lr_scheduler_type="constant", warmup_steps=0, gradient_accumulation_steps=1,
        per_device_train_batch_size=hp.prompts_per_step * hp.samples_per_prompt,
        num_generations=hp.samples_per_prompt, max_completion_length=hp.max_tokens, temperature=hp.temperature,
        loss_type=hp.loss_type, epsilon=hp.epsilon_low, epsilon_high=hp.epsilon_high, beta=0.0,
        gradient_checkpointing=False,  # TRL's default is on; a 135M model does not need it (nor does rlvr)
        max_steps=100_000,  # the budget callback stops training
        logging_steps=10, save_strategy="no", report_to=[], disable_tqdm=True,
    )  # fmt: skip


def lora_config(hp: HParams) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=hp.lora_r, lora_alpha=hp.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM", lora_dropout=0.0
    )


def run_trl(train: list[Task], held: list[Task], hp: HParams, budget_s: float, eval_every: int, out: Path) -> Curve:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOTrainer

    from rlvr.models import prepare_base_model

    model_dir = prepare_base_model()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    curve = Curve("trl")
    clock = BudgetClock(curve, lambda m: hf_greedy_accuracy(m, tok, held, hp.max_tokens), budget_s, eval_every)
    callback = type(
        "BudgetCallback", (TrainerCallback,), {"on_train_begin": clock.on_train_begin, "on_step_end": clock.on_step_end}
    )

    def reward(completions: list[Any], pattern: list[str], **_: Any) -> list[float | None]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [float(is_correct(t, p)) for t, p in zip(texts, pattern, strict=True)]

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=trl_args(hp, out),
        train_dataset=Dataset.from_list([{"prompt": t.messages, "pattern": t.fields["pattern"]} for t in train]),
        processing_class=tok,
        peft_config=lora_config(hp),
        callbacks=[callback()],
    )
    trainer.train()
    curve.raw_tokens_per_s = raw_for(trainer.model, curve, hp)
    del trainer, model
    gc.collect()
    return curve


def raw_for(model: Any, curve: Curve, hp: HParams) -> float:
    """Raw fwd+bwd tokens/s of a batch shaped like the run's average training batch."""
    batch = hp.prompts_per_step * hp.samples_per_prompt
    seq_len = max(8, round(curve.tokens / max(curve.steps, 1) / batch))
    return raw_train_tokens_per_s(model, seq_len, batch)


def raw_rlvr(curve: Curve, hp: HParams, dtype: str) -> float:
    """Raw fwd+bwd tokens/s of rlvr's batch shape on a fresh LoRA model in rlvr's trainer dtype."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from rlvr.models import prepare_base_model

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(prepare_base_model(), dtype=getattr(torch, dtype)), lora_config(hp)
    )
    raw = raw_for(model, curve, hp)
    del model
    gc.collect()
    return raw


def base_accuracy(held: list[Task], hp: HParams) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.models import prepare_base_model

    model_dir = prepare_base_model()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    acc = hf_greedy_accuracy(model, AutoTokenizer.from_pretrained(model_dir), held, hp.max_tokens)
    del model
    gc.collect()
    return acc


# ------------------------------------------------------------------------------------------- rlvr

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


def rlvr_config(train_path: Path, eval_path: Path, hp: HParams, eval_every: int) -> str:
    """The `rlvr train grpo` config with the shared hyperparameters. The benchmark stops the run at the budget
    (SIGTERM), so train.steps is only a ceiling; AdamW betas match TRL's defaults; thread counts, staleness
    and max_model_len are rlvr's documented CPU settings (examples/grpo_lora_addition.toml)."""
    lora = {"r": hp.lora_r, "alpha": hp.lora_alpha, "target_modules": "all-linear"}
    return to_toml({
        "rewards": [{"grader": "regex", "name": "last_number"}],  # pattern comes from each task
        "model": {"path": "base", "finetune": "lora", "dtype": RLVR_DTYPE, "threads": 2, "lora": lora},
        "data": {"source": "jsonl", "path": str(train_path), "eval_path": str(eval_path), "seed": hp.seed},
        "loss": {"loss_type": hp.loss_type, "epsilon_low": hp.epsilon_low, "epsilon_high": hp.epsilon_high},
        "sampling": {"group_size": hp.samples_per_prompt, "temperature": hp.temperature, "max_tokens": hp.max_tokens},
        "optim": {"lr": hp.lr, "schedule": "constant", "betas": [0.9, 0.999], "max_grad_norm": 1.0},
        "train": {"steps": 100_000, "prompts_per_step": hp.prompts_per_step, "max_staleness": 1, "seed": hp.seed},
        "eval": {"every": eval_every, "at_start": True, "at_end": True},
        "checkpoint": {"every": 0, "at_end": False},
        "rollout": {"threads": 2, "max_model_len": 512},
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


def training_clock(records: list[dict[str, Any]]) -> list[tuple[float, dict[str, Any]]]:
    """(training seconds, record): metrics.jsonl's elapsed_s minus the evaluation time spent so far (an eval
    record's own elapsed_s is written after its evaluation, so its own time/eval_s is subtracted too)."""
    eval_s, out = 0.0, []
    for r in records:
        if r.get("kind") == "eval":
            eval_s += float(r.get("time/eval_s", 0.0))
        out.append((float(r.get("elapsed_s", 0.0)) - eval_s, r))
    return out


def curve_from_metrics(records: list[dict[str, Any]], budget_s: float, prompt_len: float) -> Curve:
    """rlvr's curve; tokens counted like TRL's num_input_tokens_seen (prompt + completion per sample)."""
    curve = Curve("rlvr")
    for t, r in training_clock(records):
        if t > budget_s * 1.5:
            continue  # past the budget (the run was being stopped)
        if r.get("kind") == "eval" and "eval/pass_rate" in r:
            curve.points.append((max(t, 0.0), int(r["step"]), float(r["eval/pass_rate"])))
        elif r.get("kind") == "train":
            curve.steps = max(curve.steps, int(r["step"]))
            curve.train_s = max(curve.train_s, t)
            curve.tokens += float(r.get("samples", 0.0)) * (prompt_len + float(r.get("completion/len_mean", 0.0)))
    return curve


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
    """Echo eval records; stop the run once its training clock passes the budget."""
    seen = 0
    # Wall limit: set-up (engine start) and evaluation are off the training clock but not free.
    deadline = time.monotonic() + budget_s * 3 + 900
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(2)
        records = read_metrics(metrics)
        for t, r in training_clock(records)[seen:]:
            if r.get("kind") == "eval" and "eval/pass_rate" in r:
                acc = r["eval/pass_rate"]
                print(f"  [rlvr] step {r['step']:4d}  train {max(t, 0.0):7.1f}s  held-out {acc:.1%}", flush=True)
            if r.get("kind") == "train" and t >= budget_s:
                _stop(proc)
        seen = len(records)
    _stop(proc)


def run_rlvr(train: list[Task], held: list[Task], hp: HParams, budget_s: float, eval_every: int, out: Path) -> Curve:
    run_dir = out / "rlvr"
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "bench.toml"
    train_path = write_jsonl(train, run_dir / "train.jsonl")
    eval_path = write_jsonl(held, run_dir / "held_out.jsonl")
    cfg_path.write_text(rlvr_config(train_path, eval_path, hp, eval_every))
    cmd = [
        str(REPO / ".venv" / "bin" / "rlvr"),
        "train",
        "grpo",
        "--config",
        str(cfg_path),
        f"run_dir={run_dir / 'run'}",
    ]
    log_path = run_dir / "train.log"
    print(f"  [rlvr] {' '.join(cmd)}  (log: {log_path})", flush=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        try:
            _watch(proc, run_dir / "run" / "metrics.jsonl", budget_s)
        finally:
            _stop(proc)
    curve = curve_from_metrics(read_metrics(run_dir / "run" / "metrics.jsonl"), budget_s, mean_prompt_tokens(train))
    if not curve.points:
        curve.error = f"rlvr exited {proc.returncode} without eval records; log tail:\n{log_path.read_text()[-3000:]}"
    return curve


# ----------------------------------------------------------------------------------------- report


def summarize(task: str, base: float, curves: dict[str, Curve], budget_s: float) -> dict[str, Any]:
    print(f"\n=== {task}: base held-out accuracy {base:.1%} (budget {budget_s:.0f}s of training) ===")
    for side, c in curves.items():
        if c.error:
            print(f"{side}: FAILED: {c.error}")
            continue
        pts = "  ".join(f"{t:.0f}s/{s}:{a:.0%}" for t, s, a in c.points)
        eff = c.tokens_per_s / c.raw_tokens_per_s if c.raw_tokens_per_s else float("nan")
        print(
            f"{side:5s} steps {c.steps:4d}  final {c.final_acc:.1%}  train {c.train_s:.0f}s  "
            f"{c.tokens_per_s:.0f} tok/s  raw fwd+bwd {c.raw_tokens_per_s:.0f} tok/s  efficiency {eff:.2f}"
        )
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
        print(f"rlvr reaches TRL's final accuracy ({target:.1%}) at: {when}")
        t85 = ours.time_to(0.85)
        print(f"rlvr time to 85%: {'never' if t85 is None else f'{t85:.0f}s'}")
        summary["rlvr_time_to_85_s"] = t85
    return summary


def reused_curve(path: Path, task: str, side: str) -> Curve:
    """A side's curve from an earlier results.json (the machine is shared: lets sides run at different times)."""
    for summary in json.loads(path.read_text()):
        if summary["task"] == task and side in summary["curves"]:
            d = summary["curves"][side]
            names = {f for f in Curve.__dataclass_fields__}
            c = Curve(**{k: v for k, v in d.items() if k in names})
            c.points = [tuple(p) for p in c.points]  # type: ignore[misc]
            return c
    raise SystemExit(f"{path}: no {side} curve for task {task!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-s", type=float, default=900, help="training seconds per side per task")
    ap.add_argument("--tasks", default="addition,arith", help=f"comma list of {sorted(TASKS)}")
    ap.add_argument("--sides", default="trl,rlvr", help="comma list of trl, rlvr")
    ap.add_argument("--eval-every", type=int, default=10, help="steps between held-out evaluations")
    ap.add_argument("--eval-size", type=int, default=100, help="held-out tasks per task")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the TRL side")
    ap.add_argument("--reuse", type=Path, help="results.json of an earlier run: take its curves for --reuse-sides")
    ap.add_argument("--reuse-sides", default="trl", help="sides taken from --reuse instead of being run")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / f"bench-grpo-{time.strftime('%Y%m%d-%H%M%S')}")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    hp = HParams()
    a.out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in a.tasks.split(","):
        spec = TASKS[name]
        stream, held = build_tasks(spec.data.model_copy(update={"eval_size": a.eval_size}))
        train, held = with_patterns(stream.tasks), with_patterns(held)
        print(f"\n### {spec.name}: {len(train)} train / {len(held)} held-out tasks", flush=True)
        base = base_accuracy(held, hp)
        print(f"  base held-out accuracy {base:.1%}", flush=True)
        curves: dict[str, Curve] = {}
        for side in a.sides.split(","):
            if a.reuse and side in a.reuse_sides.split(","):
                curves[side] = reused_curve(a.reuse, spec.name, side)
                continue
            run = run_trl if side == "trl" else run_rlvr
            curves[side] = run(train, held, hp, a.budget_s, a.eval_every, a.out / name)
            if side == "rlvr" and not curves[side].error:
                curves[side].raw_tokens_per_s = raw_rlvr(curves[side], hp, RLVR_DTYPE)
            if not curves[side].points or curves[side].points[0][1] != 0:
                curves[side].points.insert(0, (0.0, 0, base))
        results.append(summarize(spec.name, base, curves, a.budget_s))
        (a.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nresults: {a.out / 'results.json'}")


if __name__ == "__main__":
    main()
