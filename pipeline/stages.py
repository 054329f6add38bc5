"""The stage kinds a pipeline can run. Each `StageKind` validates its stage config (a plain table) and runs it
in-process through the stage's own runner (e.g. trainer.grpo.run_grpo), with the stage dir as its run dir and the
resolved input model in its model field. A kind whose implementation is not in this checkout is listed but
answers "stage kind X is not available". To add a kind: write `_validate_X` / `_run_X` and one KINDS entry."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rlvr.config import ConfigError, _format_errors

log = logging.getLogger(__name__)
MODEL_DIR = "model"
"""Where a training stage publishes its final model (a plain HF directory with tokenizer) inside its stage dir."""


class StageUnavailable(ConfigError):
    """The pipeline names a stage kind whose implementation is not in this checkout."""


@dataclass
class StageContext:
    """What a stage runner gets from the pipeline."""

    name: str
    table: dict[str, Any]
    """The stage config (file or inline table, overrides merged)."""
    stage_dir: Path
    input_model: str | None
    """Resolved input model (path, "base", "tiny"), or None to keep the config's own."""
    input_models: list[str] = field(default_factory=list)
    """eval: the resolved models to compare (empty: just input_model)."""
    input_labels: list[str] = field(default_factory=list)
    """Their names in tables: the stage a reference points to, or the path's last component."""
    resume: bool = False


@dataclass
class StageResult:
    output: str
    """What the next stage reads: a model directory, a GGUF file, an eval table."""
    result: dict[str, Any] = field(default_factory=dict)
    """accuracy (held-out, 0..1), size_bytes, tokens_per_s: shown in the pipeline table."""


@dataclass(frozen=True)
class StageKind:
    name: str
    module: str
    """The implementing module; the kind is available when it is importable."""
    validate_fn: Callable[[dict[str, Any], str], Any] | None = None
    run_fn: Callable[[StageContext], StageResult] | None = None
    resumable: bool = False
    """Continues from its last checkpoint when run with resume=True."""

    @property
    def available(self) -> bool:
        if self.run_fn is None:
            return False
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:  # its parent package is missing too
            return False

    def _require(self) -> None:
        if not self.available:
            raise StageUnavailable(f"stage kind {self.name} is not available (its implementation, {self.module}, "
                                   "is not in this checkout)")  # fmt: skip

    def validate(self, table: dict[str, Any], where: str) -> Any:
        """The typed stage config, or a ConfigError naming `where` and the field."""
        self._require()
        assert self.validate_fn is not None
        try:
            return self.validate_fn(table, where)
        except StageUnavailable as e:
            raise ConfigError(f"{where}: {e}") from None

    def run(self, ctx: StageContext) -> StageResult:
        self._require()
        assert self.run_fn is not None
        return self.run_fn(ctx)


def _typed(cls: Any, table: dict[str, Any], where: str) -> Any:
    try:
        return cls.model_validate(table)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, where)) from None


def _model_dir(path: str) -> Path:
    # Imported here, alone: trainer.policy loads torch, which `rlvr --help` must not wait for.
    from trainer.policy import resolve_model_path

    return resolve_model_path(path)


def dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def publish_model(ckpt: Path, base_model: Path, out: Path) -> Path:
    """The final checkpoint as a plain HF model dir (what later stages and `rlvr eval` load): full weights as
    saved, or a LoRA adapter merged into its base (peft merge_and_unload). The tokenizer is the one saved with the
    checkpoint (the base's for checkpoints written before tokenizers were saved with them)."""
    from transformers import AutoTokenizer

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    saved = ckpt / "model" if (ckpt / "model").is_dir() else ckpt / "adapter"
    if saved.name == "model":
        shutil.copytree(saved, tmp)
    else:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(base_model, torch_dtype="auto")
        merged = PeftModel.from_pretrained(base, saved).merge_and_unload()
        merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer_dir = saved if (saved / "tokenizer_config.json").is_file() else base_model
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


# ---------------------------------------------------------------------------------------------- grpo


def _grpo_table(ctx: StageContext) -> dict[str, Any]:
    table = dict(ctx.table)
    table["run_dir"] = str(ctx.stage_dir)
    if ctx.input_model is not None:
        table["model"] = {**table.get("model", {}), "path": ctx.input_model}
    return table


def _validate_grpo(table: dict[str, Any], where: str) -> Any:
    from trainer.config import GRPOConfig

    return _typed(GRPOConfig, table, where)


def _run_grpo(ctx: StageContext) -> StageResult:
    from trainer.checkpoint import latest_checkpoint
    from trainer.config import GRPOConfig
    from trainer.grpo import run_grpo
    from trainer.policy import resolve_model_path

    cfg = _typed(GRPOConfig, _grpo_table(ctx), f"stage {ctx.name}")
    summary = run_grpo(cfg, resume=ctx.resume)
    ckpt = latest_checkpoint(ctx.stage_dir / "checkpoints")
    if ckpt is None:
        raise RuntimeError(f"stage {ctx.name}: GRPO finished without a checkpoint (set checkpoint.at_end = true)")
    model = publish_model(ckpt, resolve_model_path(cfg.model.path), ctx.stage_dir / MODEL_DIR)
    last = summary.last_eval or {}
    result: dict[str, Any] = {"size_bytes": dir_size(model), "steps": summary.steps}
    for key in ("eval/accuracy", "eval/pass_rate"):
        if isinstance(last.get(key), int | float):
            result["accuracy"] = float(last[key])
            break
    return StageResult(str(model), result)


# ---------------------------------------------------------------------------------------------- sft


def _with_run_dir(ctx: StageContext, model_key: str) -> dict[str, Any]:
    """The stage table with the stage dir as run dir and the input model in `model_key`'s path."""
    table = dict(ctx.table)
    table["run_dir"] = str(ctx.stage_dir)
    if ctx.input_model is not None:
        table[model_key] = {**table.get(model_key, {}), "path": ctx.input_model}
    return table


def _validate_sft(table: dict[str, Any], where: str) -> Any:
    from trainer.sft.config import SFTConfig

    return _typed(SFTConfig, table, where)


def _run_sft(ctx: StageContext) -> StageResult:
    from trainer.sft.config import SFTConfig
    from trainer.sft.run import run_sft

    cfg = _typed(SFTConfig, _with_run_dir(ctx, "model"), f"stage {ctx.name}")
    summary = run_sft(cfg, resume=ctx.resume)
    model = Path(summary.model_dir)
    return StageResult(str(model), {"size_bytes": dir_size(model), "steps": summary.steps})


# ---------------------------------------------------------------------------------------------- distill


def _validate_distill(table: dict[str, Any], where: str) -> Any:
    from rlvr.student import SELECTIONS
    from trainer.distill.config import DistillConfig

    select = table.get("student_select", "block")
    if select not in SELECTIONS:
        raise ConfigError(f"{where}: student_select = {select!r}: must be one of {', '.join(SELECTIONS)}")
    if "student_select" in table and "student_layers" not in table:
        raise ConfigError(f"{where}: student_select needs student_layers (the student is made from the teacher)")
    return _typed(DistillConfig, {k: v for k, v in table.items() if k not in STUDENT_KEYS}, where)


STUDENT_KEYS = ("student_layers", "student_select")
"""Distill-stage keys the pipeline itself reads: the student is cut from the teacher (rlvr/student.py); "greedy"
decides on the stage's first PROBE_ROWS training examples with their dataset answers."""


def _make_student(ctx: StageContext, table: dict[str, Any], layers: int, select: str) -> Path:
    from rlvr.student import PROBE_ROWS, shrink

    init = ctx.stage_dir / "student_init"
    if (init / "config.json").is_file():
        return init
    teacher = _model_dir(str(table.get("teacher", {}).get("path", "base")))
    probe = None
    if select == "greedy":
        from trainer.data import build_tasks
        from trainer.distill.config import DistillConfig
        from trainer.distill.examples import probe_batch

        cfg = _typed(DistillConfig, table, f"stage {ctx.name}")
        stream, _ = build_tasks(cfg.data)
        probe = probe_batch(teacher, stream.tasks[:PROBE_ROWS])
    shrink(teacher, layers, init, probe=probe)
    return init


def _run_distill(ctx: StageContext) -> StageResult:
    """The input model is the teacher. `student_layers = N` in the stage config makes the student here from the
    teacher, as `rlvr models shrink` does (N of its layers; `student_select = "greedy"` chooses them on the
    stage's first training examples); without it, student.path names the student."""
    from trainer.distill.config import DistillConfig
    from trainer.distill.loop import run_distill

    table = _with_run_dir(ctx, "teacher")
    layers = table.pop("student_layers", None)
    select = str(table.pop("student_select", "block"))
    if layers is not None:
        init = _make_student(ctx, table, int(layers), select)
        table["student"] = {**table.get("student", {}), "path": str(init)}
    cfg = _typed(DistillConfig, table, f"stage {ctx.name}")
    summary = run_distill(cfg, resume=ctx.resume)
    model = Path(summary.student_dir)
    result: dict[str, Any] = {"size_bytes": dir_size(model), "steps": summary.steps}
    last = summary.evals[-1] if summary.evals else {}
    if isinstance(last.get("eval/accuracy"), int | float):
        result["accuracy"] = float(last["eval/accuracy"])
    return StageResult(str(model), result)


# ---------------------------------------------------------------------------------------------- export

EXPORT_FIXED = ("model", "out", "adapter")
"""ExportOptions fields the pipeline sets itself (input model, stage dir); the rest come from the stage table."""


def _export_options(table: dict[str, Any], where: str) -> dict[str, Any]:
    import dataclasses

    from trainer.export.exporter import ExportOptions

    allowed = sorted(f.name for f in dataclasses.fields(ExportOptions) if f.name not in EXPORT_FIXED)
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown export setting(s) {', '.join(unknown)} (known: {', '.join(allowed)})")
    return dict(table)


def _validate_export(table: dict[str, Any], where: str) -> Any:
    return _export_options(table, where)


def _run_export(ctx: StageContext) -> StageResult:
    """The input model written as `format` (gguf by default) and verified against the source (rlvr export)."""
    from trainer.export.exporter import ExportOptions, run_export

    options = _export_options(ctx.table, f"stage {ctx.name}")
    gguf = options.get("format", "gguf") == "gguf"
    out = ctx.stage_dir / ("model.gguf" if gguf else MODEL_DIR)
    report = run_export(ExportOptions(model=_model_dir(ctx.input_model or "base"), out=out, **options))
    (ctx.stage_dir / "export_report.json").write_text(json.dumps(report.to_dict(), indent=1))
    if not report.passed:
        failed = [c.__dict__ for c in report.checks if not c.passed]
        raise RuntimeError(f"stage {ctx.name}: the exported model failed its checks: {failed}")
    speeds = report.tokens_per_s
    speed = speeds.get("llama.cpp", next(iter(speeds.values()), None))
    result: dict[str, Any] = {"size_bytes": dir_size(out), "tokens_per_s": speed, "speeds": speeds}
    return StageResult(str(out), result)


# ---------------------------------------------------------------------------------------------- eval


def _validate_eval(table: dict[str, Any], where: str) -> Any:
    from trainer.eval_config import EvalConfig

    return _typed(EvalConfig, table, where)


def _run_eval(ctx: StageContext) -> StageResult:
    from trainer.eval_config import EvalConfig
    from trainer.eval_models import evaluate_models

    cfg = _typed(EvalConfig, ctx.table, f"stage {ctx.name}")
    models = ctx.input_models or ([ctx.input_model] if ctx.input_model else [])
    if not models:
        raise ValueError(f"stage {ctx.name}: an eval stage needs `model` or `models`")
    labels = ctx.input_labels if len(ctx.input_labels) == len(models) else None
    results = evaluate_models(cfg, models, ctx.stage_dir, labels=labels)
    per_model = {r.model: {"label": r.label, **r.metrics} for r in results}
    return StageResult(str(ctx.stage_dir / "eval.json"), {"models": per_model})


KINDS: dict[str, StageKind] = {
    "sft": StageKind("sft", "trainer.sft.run", _validate_sft, _run_sft, resumable=True),
    "grpo": StageKind("grpo", "trainer.grpo", _validate_grpo, _run_grpo, resumable=True),
    "distill": StageKind("distill", "trainer.distill.loop", _validate_distill, _run_distill, resumable=True),
    "export": StageKind("export", "trainer.export.exporter", _validate_export, _run_export),
    "eval": StageKind("eval", "trainer.eval_models", _validate_eval, _run_eval),
}


def kind_of(name: str) -> StageKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown stage kind {name!r} (known: {', '.join(KINDS)})") from None
