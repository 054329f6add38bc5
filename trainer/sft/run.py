"""`rlvr train sft`: check the data, then supervised fine-tuning on TRL's SFTTrainer.

What is the project's and what is TRL's: the data check (trainer.datacheck), the assistant masks
(encode.py), the model (full / LoRA / QLoRA, trainer.policy), the run directory, metrics and complete
checkpoints (callbacks.py) and the final model (export.py) are ours; batching, padding, the loss over the
`assistant_masks` labels, truncation, the optimiser loop, evaluation loss and resume at the same step and data
position (transformers skips the batches already seen) are TRL's / transformers'."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.sft.config import SFTConfig

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"


class RunDirError(RuntimeError):
    """The run directory already holds a run (and --resume was not given)."""


class DataCheckFailed(RuntimeError):
    """The training data has errors (the report says which, file:line)."""


@dataclass
class SFTSummary:
    run_dir: Path
    steps: int
    model_dir: Path
    first_eval_loss: float | None
    last_eval_loss: float | None
    first_accuracy: float | None = None
    last_accuracy: float | None = None
    first_format_rate: float | None = None
    last_format_rate: float | None = None


def _prepare_run_dir(cfg: SFTConfig, resume: bool) -> tuple[Path, Path | None]:
    from trainer.metrics import truncate_history
    from trainer.sft.callbacks import latest_complete, remove_incomplete

    assert cfg.run_dir is not None
    run_dir = Path(cfg.run_dir)
    root = run_dir / CHECKPOINTS
    if not resume and ((run_dir / "metrics.jsonl").is_file() or root.is_dir()):
        raise RunDirError(f"{run_dir} already holds a run (metrics.jsonl / checkpoints): pass --resume to continue "
                          "it, or set run_dir to a new directory")  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = None
    if resume:
        for p in remove_incomplete(root):
            log.warning("removed incomplete checkpoint %s (interrupted save)", p)
        ckpt = latest_complete(root)
        step = int(ckpt.name.split("-")[1]) if ckpt else -1
        if ckpt is None:
            log.warning("--resume: no complete checkpoint under %s; starting from step 0", root)
        truncate_history(run_dir, step)
    (run_dir / "config.json").write_text(cfg.model_dump_json(indent=1))
    return run_dir, ckpt


def check_data(cfg: SFTConfig, tok: Any, run_dir: Path, skip_check: bool, template: str | None) -> list[Any]:
    """Run `rlvr data check` on the training file; returns its valid rows (errors stop unless skip_check)."""
    from trainer.datacheck.check import run_check

    report, rows = run_check(cfg.data.path, eval_path=cfg.data.eval_path, tokenizer=tok, model_name=cfg.model.path,
                             max_len=cfg.data.max_len, threshold=cfg.data.near_dup_threshold,
                             chat_template=template)  # fmt: skip
    report.write_json(run_dir / "data_check.json")
    print(report.render(), file=sys.stderr, flush=True)
    if report.errors and not skip_check:
        raise DataCheckFailed(f"{cfg.data.path}: {report.errors} error(s) in the data check (report above and in "
                              f"{run_dir / 'data_check.json'}); fix them (rlvr data check --write-clean) or pass "
                              "--skip-check")  # fmt: skip
    return rows


def _dataset(tok: Any, rows: list[Any], template: str | None) -> Any:
    from datasets import Dataset

    from trainer.sft.encode import encode_rows

    enc = encode_rows(tok, rows, template)
    columns = {"input_ids": [e.input_ids for e in enc], "assistant_masks": [e.assistant_masks for e in enc]}
    return Dataset.from_dict(columns)


def _eval_rows(path: Path) -> list[Any]:
    from trainer.data import DataError
    from trainer.datacheck.problems import Findings
    from trainer.datacheck.rows import read_rows

    findings = Findings()
    rows, _ = read_rows(path, findings)
    if findings.by_kind:
        kind, found = next(iter(findings.by_kind.items()))
        raise DataError(f"{path}:{found[0].line}: {kind}: {found[0].detail} (data.eval_path must be SFT rows)")
    return rows


def _model(cfg: SFTConfig, path: Path) -> Any:
    import torch

    from trainer.policy import add_lora, load_base_model, resolve_device

    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)
    model = load_base_model(path, cfg.model, resolve_device(cfg.model.device))
    if cfg.model.finetune in ("lora", "qlora"):
        model = add_lora(model, cfg.model)
    return model


def _autocast_bf16(cfg: SFTConfig) -> bool:
    """Whether TRL runs the passes under bf16 autocast: a full fine-tune keeps float32 masters (policy.py), so a
    bf16 model.dtype (as compute_dtype resolves it) means autocast over them, as in GRPO (Policy.autocast). LoRA
    computes in its base's stored dtype already, and autocast over its float32 adapter would differ from GRPO's."""
    import torch

    from trainer.policy import compute_dtype

    return cfg.model.finetune == "full" and compute_dtype(cfg.model) == torch.bfloat16


def _args(cfg: SFTConfig, run_dir: Path, has_eval: bool) -> Any:
    from trl import SFTConfig as TRLConfig

    from trainer.policy import resolve_device

    schedule = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}[cfg.optim.schedule]
    return TRLConfig(
        output_dir=str(run_dir / CHECKPOINTS), max_steps=cfg.train.steps or -1, num_train_epochs=cfg.train.epochs,
        per_device_train_batch_size=cfg.train.batch_size, per_device_eval_batch_size=cfg.eval.batch_size,
        gradient_accumulation_steps=cfg.train.grad_accum, learning_rate=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay, adam_beta1=cfg.optim.betas[0], adam_beta2=cfg.optim.betas[1],
        adam_epsilon=cfg.optim.eps, lr_scheduler_type=schedule, warmup_steps=cfg.optim.warmup_steps,
        max_grad_norm=cfg.optim.max_grad_norm or 0.0, logging_steps=cfg.report_every,
        eval_strategy="steps" if has_eval and cfg.eval.every else "no", eval_steps=cfg.eval.every or None,
        save_strategy="steps" if cfg.checkpoint.every else "no", save_steps=cfg.checkpoint.every or 500,
        save_total_limit=None, report_to=[], max_length=cfg.data.max_len, packing=False, seed=cfg.train.seed,
        data_seed=cfg.train.seed, use_cpu=resolve_device(cfg.model.device).type == "cpu", dataloader_num_workers=0,
        gradient_checkpointing=cfg.model.gradient_checkpointing, bf16=_autocast_bf16(cfg), fp16=False,
        disable_tqdm=not sys.stderr.isatty() or cfg.logging.progress in ("plain", "off"),
        assistant_only_loss=False, completion_only_loss=False, dataloader_pin_memory=False,
    )  # fmt: skip


def run_sft(cfg: SFTConfig, resume: bool = False, skip_check: bool = False) -> SFTSummary:
    from transformers import AutoTokenizer, PrinterCallback
    from trl import SFTTrainer

    from trainer.metrics import RunLog, read_records
    from trainer.policy import resolve_model_path
    from trainer.sft.callbacks import (
        CompleteCheckpoints,
        GenerationEvalCallback,
        RunLogCallback,
        record_generation_eval,
    )
    from trainer.sft.export import export_model
    from trainer.sft.heldout import GenerationEval

    run_dir, ckpt = _prepare_run_dir(cfg, resume)
    base_path = resolve_model_path(cfg.model.path)
    tok = AutoTokenizer.from_pretrained(str(base_path))
    template = cfg.data.chat_template.read_text() if cfg.data.chat_template else None
    if template is not None:
        tok.chat_template = template
    rows = check_data(cfg, tok, run_dir, skip_check, template)
    model = _model(cfg, base_path)
    train_ds = _dataset(tok, rows, template)
    eval_ds = _dataset(tok, _eval_rows(cfg.data.eval_path), template) if cfg.data.eval_path else None
    records = read_records(run_dir / "metrics.jsonl")
    plain = cfg.logging.progress == "plain" or (cfg.logging.progress == "auto" and not sys.stderr.isatty())
    run_log = RunLog(run_dir, total_steps=cfg.train.steps or 0, start_step=0, tensorboard=cfg.logging.tensorboard,
                     progress="off", elapsed_offset=float(records[-1]["elapsed_s"]) if records else 0.0,
                     eval_offset=float(records[-1]["elapsed_s"] - records[-1]["training_s"]) if records else 0.0,
                     show=False)  # fmt: skip
    gen_eval = GenerationEval(cfg, run_dir, tok) if cfg.eval.tasks is not None else None
    callbacks: list[Any] = [RunLogCallback(run_log, cfg.train.steps or 0, plain),
                            CompleteCheckpoints(run_dir / CHECKPOINTS, cfg.checkpoint.keep_last)]  # fmt: skip
    if gen_eval is not None:
        callbacks.append(GenerationEvalCallback(gen_eval, run_log, cfg.eval.every))
    trainer = SFTTrainer(
        model=model, args=_args(cfg, run_dir, eval_ds is not None), train_dataset=train_ds, eval_dataset=eval_ds,
        processing_class=tok, callbacks=callbacks,
    )  # fmt: skip
    # TRL's own log printer duplicates our progress lines (its tqdm bar stays on a terminal).
    trainer.remove_callback(PrinterCallback)
    try:
        if cfg.eval.at_start and ckpt is None:
            if eval_ds is not None:
                trainer.evaluate()
            if gen_eval is not None:
                record_generation_eval(gen_eval, trainer.model, 0, run_log)
        if ckpt is not None and _finished(cfg, ckpt):
            _restore(trainer, ckpt)
        else:
            trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
        if eval_ds is not None:
            trainer.evaluate()
        if gen_eval is not None:
            record_generation_eval(gen_eval, trainer.model, trainer.state.global_step, run_log)
        model_dir = export_model(trainer.model, tok, cfg, base_path, run_dir / "model")
    finally:
        run_log.close()
        if gen_eval is not None:
            gen_eval.close()
    return _summary(run_dir, trainer.state.global_step, model_dir)


def _finished(cfg: SFTConfig, ckpt: Path) -> bool:
    """The checkpoint is the run's last step (killed after it, before the model was written). HF's loop checks
    max_steps only after a step, so resuming from it would train one step more than asked (seen in a pipeline)."""
    return cfg.train.steps is not None and int(ckpt.name.split("-")[1]) >= cfg.train.steps


def _restore(trainer: Any, ckpt: Path) -> None:
    """The finished run's weights and state from its last checkpoint, without a training step."""
    from transformers import TrainerState

    log.info("--resume: %s is the last step; writing the model from it without training", ckpt.name)
    trainer._load_from_checkpoint(str(ckpt))
    trainer.state = TrainerState.load_from_json(str(ckpt / "trainer_state.json"))


def _summary(run_dir: Path, steps: int, model_dir: Path) -> SFTSummary:
    from trainer.metrics import read_records

    records = [r for r in read_records(run_dir / "metrics.jsonl") if r["kind"] == "eval"]

    def series(key: str) -> tuple[float | None, float | None]:
        vals = [r[key] for r in records if r.get(key) is not None]
        return (vals[0], vals[-1]) if vals else (None, None)

    loss, acc, fmt = series("eval/loss"), series("eval/accuracy"), series("eval/format_rate")
    summary = SFTSummary(run_dir, steps, model_dir, loss[0], loss[1], acc[0], acc[1], fmt[0], fmt[1])
    (run_dir / "summary.json").write_text(json.dumps({k: str(v) if isinstance(v, Path) else v
                                                      for k, v in summary.__dict__.items()}, indent=1))  # fmt: skip
    return summary
