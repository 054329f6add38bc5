"""The distillation run: the student learns from the teacher step by step, with held-out loss, metrics and
checkpoints in the GRPO run-dir layout (metrics.jsonl, tasks.jsonl, tensorboard/, checkpoints/, student/).

Each step takes train.batch_size examples from a resumable TaskStream (dataset tasks, or the teacher's verified
samples), runs them in micro-batches, and steps AdamW once:
- logits: the frozen teacher scores the same token ids in-process; the loss is the configured divergence
  (trainer/distill/losses.py) over the assistant tokens;
- sequence: cross-entropy on the teacher's verified completions (sequence-level KD, Kim & Rush 2016: training on
  the teacher's outputs); the teacher is only needed for sampling and for the held-out divergence. On
  completions = "dataset" it is plain SFT on the dataset's answers: the control every mode is compared with.
Logits are computed only at the columns the loss reads (logits_to_keep), not at every prompt position.
Held-out evaluation reports the student's divergence from the teacher and both models' cross-entropy on the
held-out tasks' completions (in-process, token-level; accuracy comes from the shared evaluator)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rlvr.student import check_compatible, count_parameters
from rollout.types import SamplingConfig
from trainer.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from trainer.data import Task, TaskStream, build_tasks
from trainer.distill.accuracy import AccuracyProbe
from trainer.distill.accuracy import record as record_report
from trainer.distill.config import DistillConfig
from trainer.distill.examples import Batch, Example, collate, encode_task
from trainer.distill.losses import masked_mean, token_divergence
from trainer.metrics import RunLog, truncate_history
from trainer.policy import Policy, resolve_dtype, resolve_model_path

log = logging.getLogger(__name__)
STUDENT_DIR = "student"


class DistillRunError(RuntimeError):
    """The run directory holds an earlier run and neither --resume nor a fresh directory was asked for."""


@dataclass
class DistillSummary:
    run_dir: Path
    steps: int
    evals: list[dict[str, Any]]
    student_dir: Path


def prepare_run_dir(cfg: DistillConfig, resume: bool) -> tuple[Path, Path | None]:
    """(run_dir, checkpoint to resume from); refuses to mix a new run into an old run's files."""
    assert cfg.run_dir is not None
    run_dir = Path(cfg.run_dir)
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if resume and ckpt is None:
        log.warning("--resume: no checkpoint under %s; starting from step 0", run_dir / "checkpoints")
        truncate_history(run_dir, -1)
    if not resume and ((run_dir / "metrics.jsonl").is_file() or ckpt is not None):
        raise DistillRunError(f"{run_dir} already holds a run (metrics.jsonl / checkpoints): pass --resume to "
                              "continue it, or set run_dir to a new directory")  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(cfg.model_dump_json(indent=1))
    return run_dir, ckpt if resume else None


def _chunks(xs: Sequence[Example], n: int) -> Iterator[Sequence[Example]]:
    for i in range(0, len(xs), n):
        yield xs[i : i + n]


def _summary(m: Mapping[str, float]) -> str:
    """One progress line: the training loss, or the held-out metrics of an eval record."""
    if "train/loss" in m:
        return f"loss {m['train/loss']:.4f}  lr {m.get('train/lr', 0):.2e}"
    keys = ("eval/accuracy", "teacher/accuracy", "eval/kd_loss", "eval/student_ce", "eval/teacher_ce")
    parts = [f"{k.replace('eval/', '')} {m[k]:.4f}" for k in keys if k in m]
    return "  ".join(parts) + f"  ({int(m.get('eval/samples', 0))} held-out tasks)"


class DistillTrainer:
    """State and steps of one run; `run()` drives it (see the module docstring)."""

    def __init__(self, cfg: DistillConfig, run_dir: Path, ckpt: Path | None, train_tasks: list[Task],
                 held_out: list[Task]) -> None:  # fmt: skip
        from transformers import AutoModelForCausalLM, AutoTokenizer, get_scheduler

        self.cfg, self.run_dir = cfg, run_dir
        self.student = Policy(cfg.student)
        self.tok = AutoTokenizer.from_pretrained(self.student.path)
        teacher_dir = resolve_model_path(cfg.teacher.path)
        # The held-out divergence needs token-level agreement; sequence mode also works without it.
        self.same_vocab = True
        try:
            check_compatible(teacher_dir, self.student.path, "logits")
        except ValueError:
            if cfg.mode != "sequence":
                raise
            self.same_vocab = False
        self.teacher: Any = None
        if self.same_vocab:
            dtype = resolve_dtype(cfg.teacher.dtype, self.student.device)
            self.teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=dtype)
            self.teacher = self.teacher.to(self.student.device).eval().requires_grad_(False)
        self.vocab = len(self.tok)
        self.share_prefix = cfg.train.share_prefix
        # numel with tied embeddings counted once: the size comparison a "half the teacher" goal is about.
        teacher_params = count_parameters(self.teacher) if self.teacher is not None else None
        self.params: dict[str, int | None] = {"student_params": count_parameters(self.student.model),
                                              "teacher_params": teacher_params}  # fmt: skip
        self.stream = TaskStream(train_tasks, seed=cfg.data.seed, shuffle=cfg.data.shuffle)
        self.held_out = [encode_task(self.tok, t) for t in held_out]
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(self.student.parameters(), lr=o.lr, betas=o.betas, eps=o.eps,
                                           weight_decay=o.weight_decay)  # fmt: skip
        self.scheduler = get_scheduler(o.schedule, self.optimizer, num_warmup_steps=o.warmup_steps,
                                       num_training_steps=cfg.train.steps)  # fmt: skip
        self.state = TrainState()
        if ckpt is not None:
            self.state = load_checkpoint(ckpt, self.student.model, self.optimizer, self.scheduler)
            self.stream.load_state_dict(self.state.data_state)
            truncate_history(run_dir, self.state.step)
        self.step = self.state.step
        self.runlog = RunLog(run_dir, total_steps=cfg.train.steps, start_step=self.step,
                             elapsed_offset=float(self.state.extra.get("elapsed_s", 0.0)),
                             eval_offset=float(self.state.extra.get("eval_s", 0.0)),
                             tensorboard=cfg.logging.tensorboard, progress=cfg.logging.progress,
                             label=f"distill ({cfg.mode})", summary=_summary)  # fmt: skip
        self.evals: list[dict[str, Any]] = []
        self.probe: AccuracyProbe | None = None
        """Held-out accuracy through the rollout and grader services (None: token-level metrics only)."""
        self.teacher_eval: dict[str, Any] = {}
        """The teacher's held-out accuracy metrics, repeated in every eval record for comparison."""

    # ------------------------------------------------------------------ losses

    def _logits(self, model: Any, batch: Batch, cols: slice) -> torch.Tensor:
        """Logits [B, cols, V] at the positions `cols` of [0, L-1) only: the head (a 576 x 49152 matrix on
        SmolLM2, ~40% of an 11-layer student's forward) and the loss run on the columns a mask reads, not on
        every prompt token. The token prefix all rows share (the chat template's system prompt and the task's
        fixed wording: 35 of 51 tokens on 2-digit addition) runs once, as one row whose key/value cache is
        repeated for the batch; gradients flow through it as through the rows' own copies."""
        dev = self.student.device
        ids, attn = batch.input_ids.to(dev), batch.attention_mask.to(dev)
        shared = shared_prefix(ids, cols.start) if self.share_prefix else 0
        past = None
        if shared:
            head = model(input_ids=ids[:1, :shared], attention_mask=attn[:1, :shared], use_cache=True,
                         logits_to_keep=1)  # fmt: skip
            past = head.past_key_values
            past.batch_repeat_interleave(ids.shape[0])
        keep = torch.arange(cols.start - shared, cols.stop - shared, device=dev)
        out = model(input_ids=ids[:, shared:], attention_mask=attn, past_key_values=past, use_cache=past is not None,
                    logits_to_keep=keep)  # fmt: skip
        return out.logits[..., : self.vocab]  # a padded embedding's extra rows are no tokens

    def _micro_loss(self, batch: Batch, denominator: float) -> torch.Tensor:
        """Sum of the micro-batch's weighted per-token losses / the step's total weight (gradient accumulation)."""
        weights = _weights(batch, self.cfg.kd.prompt_weight)  # prompt weight 0 in sequence mode (validated)
        cols = _columns(weights)
        with self.student.autocast():  # bf16 compute over float32 masters, as GRPO's passes (trainer/policy.py)
            logits = self._logits(self.student.model, batch, cols)
        mask = weights[:, cols].to(logits.device)
        if self.cfg.mode == "sequence":
            per_token = _token_ce(logits, batch.input_ids[:, cols.start + 1 : cols.stop + 1].to(logits.device))
        else:
            kd = self.cfg.kd
            with torch.no_grad():
                teacher_logits = self._logits(self.teacher, batch, cols)
            per_token = token_divergence(logits, teacher_logits, kd.divergence, beta=kd.beta,
                                         temperature=kd.temperature, top_k=kd.top_k)  # fmt: skip
        return masked_mean(per_token, mask, denominator)

    def _on_policy_examples(self, tasks: list[Task]) -> list[Example]:
        """The student's own samples with its current weights (pushed as version = step), as token ids: the
        engine's prompt and completion ids are scored as they are (same tokenizer: checked before the run)."""
        assert self.probe is not None
        o = self.cfg.on_policy
        params = SamplingConfig(n=o.n, temperature=o.temperature, max_tokens=o.max_tokens, stop=list(o.stop))
        weights = self.student.full_state() if self.step > 0 else None
        samples = self.probe.sample(tasks, params, weights, version=self.step)
        return [Example(f"{s.prompt_id}#{s.sample_index}", list(s.prompt_token_ids), list(s.token_ids))
                for s in samples if s.token_ids]  # fmt: skip

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        tasks = self.stream.take(cfg.train.batch_size)
        t_gen = time.monotonic()
        examples = self._on_policy_examples(tasks) if cfg.mode == "on_policy" else [encode_task(self.tok, t)
                                                                                    for t in tasks]  # fmt: skip
        gen_s = time.monotonic() - t_gen
        pad = self.tok.pad_token_id or 0
        batches = [collate(chunk, pad) for chunk in _chunks(examples, cfg.train.micro_batch_size)]
        total = float(sum(_weights(b, cfg.kd.prompt_weight).sum() for b in batches))  # the loss's denominator
        tokens = float(sum(b.tokens for b in batches))
        t0 = time.monotonic()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for b in batches:
            loss = self._micro_loss(b, total)
            loss.backward()
            loss_sum += float(loss.detach())
        params = self.student.parameters()
        max_norm = cfg.optim.max_grad_norm if cfg.optim.max_grad_norm is not None else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        dt = time.monotonic() - t0
        self.runlog.write_ids(self.step, [t.id for t in tasks])
        metrics = {"train/loss": loss_sum, "train/grad_norm": norm, "train/lr": float(self.scheduler.get_last_lr()[0]),
                   "train/tokens": tokens, "train/tokens_per_s": tokens / max(dt, 1e-9), "time/step_s": dt + gen_s,
                   "time/gen_s": gen_s}  # fmt: skip
        return self.runlog.write("train", self.step, metrics)

    # ------------------------------------------------------------------ evaluation

    def evaluate(self) -> dict[str, float]:
        """Held-out token-level metrics; the student is put in eval mode (no dropout) for the pass."""
        t0 = time.monotonic()
        sums: dict[str, float] = {}
        tokens = 0.0
        self.student.model.eval()
        try:
            with torch.no_grad():
                for chunk in _chunks(self.held_out, self.cfg.train.micro_batch_size):
                    b = collate(chunk, self.tok.pad_token_id or 0)
                    for k, v in self._eval_sums(b).items():
                        sums[k] = sums.get(k, 0.0) + v
                    tokens += b.tokens
        finally:
            self.student.model.train()
        metrics = {f"eval/{k}": v / max(tokens, 1.0) for k, v in sums.items()}
        metrics.update({"eval/tokens": tokens, "eval/samples": float(len(self.held_out))})
        examples = ""
        if self.probe is not None and self.cfg.eval.accuracy:
            weights = self.student.full_state() if self.step > 0 else None
            report = self.probe.measure(weights, version=self.step)
            metrics.update(record_report(report, self.run_dir, self.step))
            examples = report.examples(self.cfg.eval.examples)
        metrics.update({k: v for k, v in self.teacher_eval.items() if isinstance(v, float)})
        metrics["time/eval_s"] = time.monotonic() - t0
        record = self.runlog.write("eval", self.step, metrics)
        if examples:
            self.runlog.note(f"held-out answers at step {self.step} (prompt → answer → verdict):\n{examples}")
        self.evals.append(record)
        return metrics

    def _eval_sums(self, b: Batch) -> dict[str, float]:
        cols = _columns(b.loss_mask)
        with self.student.autocast():
            s_logits = self._logits(self.student.model, b, cols)
        mask = b.loss_mask[:, cols].to(s_logits.device)
        targets = b.input_ids[:, cols.start + 1 : cols.stop + 1].to(s_logits.device)
        out = {"student_ce": float((_token_ce(s_logits, targets) * mask).sum())}
        if self.teacher is not None:
            t_logits = self._logits(self.teacher, b, cols)
            kd = self.cfg.kd
            out["kd_loss"] = float((token_divergence(s_logits, t_logits, kd.divergence, beta=kd.beta,
                                                     temperature=kd.temperature) * mask).sum())  # fmt: skip
            out["forward_kl"] = float((token_divergence(s_logits, t_logits, "forward_kl") * mask).sum())
            out["teacher_ce"] = float((_token_ce(t_logits, targets) * mask).sum())
        return out

    # ------------------------------------------------------------------ the run

    def checkpoint(self) -> None:
        t0 = time.monotonic()
        state = TrainState(step=self.step, data_state=self.stream.state_dict(),
                           extra={"elapsed_s": self.runlog.elapsed_s, "eval_s": self.runlog.eval_s})  # fmt: skip
        save_checkpoint(self.run_dir / "checkpoints", self.step, self.student.model, self.optimizer, self.scheduler,
                        state, self.cfg.checkpoint.keep_last, self.tok)  # fmt: skip
        self.runlog.note(f"checkpoint step {self.step} saved ({time.monotonic() - t0:.1f}s)")

    def run(self) -> DistillSummary:
        cfg = self.cfg
        self.runlog.restart_clock()
        if self.step == 0 and cfg.eval.at_start:
            self.evaluate()
        every = cfg.checkpoint.every
        while self.step < cfg.train.steps and not self._out_of_time():
            self.train_step()
            if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.train.steps:
                self.evaluate()
            if every and self.step % every == 0:
                self.checkpoint()
        if cfg.eval.at_end:
            self.evaluate()
        if cfg.checkpoint.at_end and not (every and self.step % every == 0):
            self.checkpoint()
        return DistillSummary(self.run_dir, self.step, self.evals, self.save_student())

    def _out_of_time(self) -> bool:
        limit = self.cfg.train.max_time_s
        if limit is None or self.runlog.training_s < limit:
            return False
        self.runlog.note(f"train.max_time_s reached ({self.runlog.training_s:.0f}s of training) at step {self.step}")
        return True

    def save_student(self) -> Path:
        """The distilled student as a plain HF directory (LoRA merged), with its tokenizer: ready to serve/export."""
        out = self.run_dir / STUDENT_DIR
        model = self.student.model
        if self.student.is_lora:
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(out, safe_serialization=True)
        self.tok.save_pretrained(out)
        return out

    def close(self) -> None:
        self.runlog.close()


def _weights(batch: Batch, prompt_weight: float) -> torch.Tensor:
    """Per-position loss weights [B, L-1]: 1 on completion tokens, prompt_weight on the prompt's own tokens."""
    return batch.loss_mask + prompt_weight * batch.prompt_mask if prompt_weight > 0 else batch.loss_mask


MIN_SHARED_PREFIX = 8
"""A shorter common prefix is run with the rows (one more forward call would cost more than it saves)."""


def shared_prefix(input_ids: torch.Tensor, limit: int) -> int:
    """Length of the token prefix every row of [B, L] shares, at most `limit` (the first column a loss reads:
    its logits must come from the rows' own pass); 0 for one row or a prefix under MIN_SHARED_PREFIX."""
    if input_ids.shape[0] < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(0).long().cumprod(0)
    n = min(int(same.sum()), limit)
    return n if n >= MIN_SHARED_PREFIX else 0


def _columns(weights: torch.Tensor) -> slice:
    """The smallest column range of a [B, L-1] weight mask that holds every weighted position (all rows of a
    batch share it: the model computes logits at the same positions of each row)."""
    used = weights.gt(0).any(0).nonzero().flatten()
    if used.numel() == 0:
        return slice(0, 1)
    return slice(int(used[0]), int(used[-1]) + 1)


def _token_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position cross-entropy [B, T] of the next tokens."""
    return F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def load_tasks(cfg: DistillConfig, run_dir: Path) -> tuple[list[Task], list[Task]]:
    """(training tasks, held-out tasks): the data source's, with the teacher's verified samples as the training
    tasks when the mode uses them (sampled once per run dir; a resumed run reads the same file)."""
    stream, held_out = build_tasks(cfg.data)
    if cfg.eval.size is not None:
        held_out = held_out[: cfg.eval.size]
    if not cfg.uses_teacher_samples:
        return stream.tasks, held_out
    from trainer.distill.teacher_samples import sample_teacher, verified_tasks

    path = sample_teacher(cfg, run_dir, stream.tasks, held_out)
    return verified_tasks(path), held_out


def run_distill(cfg: DistillConfig, resume: bool = False) -> DistillSummary:
    """Run (or resume) a distillation as configured; embedded services are stopped on exit, error or Ctrl-C."""
    teacher_dir = resolve_model_path(cfg.teacher.path)
    student_dir = resolve_model_path(cfg.student.path)
    check_compatible(teacher_dir, student_dir, cfg.mode)  # before any service or model is started
    run_dir, ckpt = prepare_run_dir(cfg, resume)
    if cfg.student.threads is not None:
        torch.set_num_threads(cfg.student.threads)
    _seed(cfg.train.seed)
    train_tasks, held_out = load_tasks(cfg, run_dir)
    teacher_eval: dict[str, Any] = {}
    if cfg.eval.accuracy and cfg.eval.teacher:
        from trainer.distill.accuracy import teacher_accuracy

        teacher_eval = teacher_accuracy(cfg, run_dir, held_out)
    with contextlib.ExitStack() as stack:
        probe = None
        if cfg.serves_student:
            from trainer.services import Services

            services = stack.enter_context(Services(cfg.services_config(str(student_dir)), student_dir,
                                                    run_dir / "logs" / "student"))  # fmt: skip
            probe = AccuracyProbe(cfg, services, held_out)
        trainer = DistillTrainer(cfg, run_dir, ckpt, train_tasks, held_out)
        trainer.probe, trainer.teacher_eval = probe, teacher_eval
        n_student, n_teacher = trainer.params["student_params"], trainer.params["teacher_params"]
        if n_student and n_teacher:
            trainer.runlog.note(f"student {n_student:,} parameters, {n_student / n_teacher:.1%} of the teacher's "
                                f"{n_teacher:,} (tied weights counted once)")  # fmt: skip
        if teacher_eval:
            n = int(teacher_eval["teacher/samples"])
            trainer.runlog.note(f"teacher held-out accuracy {teacher_eval['teacher/accuracy']:.3f} ({n} tasks):\n"
                                f"{teacher_eval['examples']}")  # fmt: skip
        try:
            summary = trainer.run()
        finally:
            trainer.close()
    first, last = (summary.evals[0], summary.evals[-1]) if summary.evals else (None, None)
    (run_dir / "summary.json").write_text(json.dumps(
        {"steps": summary.steps, "first_eval": first, "last_eval": last, "student": str(summary.student_dir),
         **trainer.params},
        indent=1))  # fmt: skip
    return summary
