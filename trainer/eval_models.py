"""Held-out evaluation of one or more models: `rlvr eval` and a pipeline's eval stage. Each model gets the
embedded services (trainer.services) and trainer/evaluate.py's `evaluate` — the one evaluator the training
stages use too: greedy accuracy by the strict scorer, and with K samples per task the unbiased pass@k
(trainer/passk.py). Reported per model: accuracy, pass@k, the mean of each `[[rewards]]` entry, the scorer's
status counts (tasks without a verdict — infra_error or invalid_request after retries — are counted apart and
are not failures), mean completion length in generated tokens, and every prompt/completion/verdict as JSONL.

An HF model directory is served by the rollout service (vLLM); a `*.gguf` file (an export stage's output) is
run in-process by llama.cpp (trainer/gguf_rollout.py) with only the grader service started. Both go through the
same `evaluate`, so a mixed list gives one side-by-side table. A new backend: a RolloutLike and a branch in
`_open_rollout`."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.eval_config import EvalConfig
from trainer.evaluate import NO_VERDICT_REASONS
from trainer.passk import ks_for, mean_pass_at_k

log = logging.getLogger(__name__)
EVAL_FILE = "eval_samples.jsonl"
SAMPLES_FILE = "pass_at_k_samples.jsonl"
NO_VERDICT = "no_verdict"


@dataclass
class ModelResult:
    """What one model scored on the exam."""

    label: str
    model: str
    metrics: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    samples_file: str = ""

    @property
    def accuracy(self) -> float:
        return self.metrics.get("accuracy", float("nan"))

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "model": self.model, "metrics": self.metrics, "statuses": self.statuses,
                "samples_file": self.samples_file}  # fmt: skip


def pass_at_k_metrics(rows: Sequence[Any], k_max: int) -> dict[str, float]:
    """pass@k over tasks from sampled rows (task_id, verdict, correct); rows without a verdict are left out of n."""
    per_task: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        if r.verdict != NO_VERDICT:
            per_task[r.task_id].append(bool(r.correct))
    counts = [(len(v), sum(v)) for v in per_task.values() if v]
    out: dict[str, float] = {}
    for k in ks_for(k_max):
        usable = [(n, c) for n, c in counts if n >= k]
        out[f"pass@{k}"] = mean_pass_at_k(usable, k)
    return out


def status_counts(rows: Sequence[Any]) -> dict[str, int]:
    """The scorer's statuses; a row without a verdict counts as why (infra_error / invalid_request), apart."""
    return dict(Counter(r.message if r.verdict == NO_VERDICT and r.message in NO_VERDICT_REASONS else r.verdict
                        for r in rows))  # fmt: skip


def is_gguf(model: str | Path) -> bool:
    return str(model).endswith(".gguf")


def resolve_model(model: str) -> Path:
    """A GGUF file as given (it must exist), anything else as the policy resolves it (HF dir, base, tiny)."""
    from trainer.policy import resolve_model_path

    if is_gguf(model):
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"--model {model}: no such GGUF file")
        return path
    return resolve_model_path(model)


def _write_rows(path: Path, rows: Sequence[Any], label: str, mode: str) -> None:
    from dataclasses import asdict

    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"model": label, "mode": mode, **asdict(r)}) + "\n")


async def _open_rollout(cfg: EvalConfig, services: Any, model: Path, version: int) -> Any:
    """The model's rollout: llama.cpp in-process for a GGUF file; else the running rollout service, with the
    model's weights swapped in first unless it is the one the engine started with (version 0)."""
    from rollout.client import RolloutClient

    r = cfg.rollout
    if is_gguf(model):
        from trainer.gguf_rollout import GgufRollout

        return GgufRollout(model, threads=r.threads or 2, n_ctx=r.max_model_len)
    rollout = RolloutClient(services.rollout_addresses, token=r.token, tls_ca=r.tls_ca, timeout_s=r.request_timeout_s)
    try:
        await rollout.wait_ready(r.start_timeout_s)
        if version:
            got = await rollout.update_weights(load_weights(model), version)
            if got != version:
                raise RuntimeError(f"rollout service reports version {got} after loading {model}")
    except BaseException:
        await rollout.close()
        raise
    return rollout


async def _close(rollout: Any) -> None:
    # RolloutClient.close is a coroutine (a gRPC channel); GgufRollout.close frees llama.cpp's memory at once.
    closed = rollout.close()
    if asyncio.iscoroutine(closed):
        await closed


async def _exam(cfg: EvalConfig, services: Any, samples: int, model: Path, version: int) -> tuple[Any, Any]:
    """Greedy (and, with samples > 1, sampled) evaluation of `model` against the running grader service."""
    from graders.client import GraderClient
    from rollout.types import SamplingConfig
    from trainer.data import build_tasks
    from trainer.evaluate import evaluate
    from trainer.pipeline import GradeRetry

    _, held_out = build_tasks(cfg.data)
    if cfg.size is not None:
        held_out = held_out[: cfg.size]
    if not held_out:
        raise ValueError("the held-out set is empty: set data.eval_size (or data.eval_path)")
    g, gen = cfg.graders, cfg.generation
    grader = GraderClient(services.grader_address, token=g.token, tls_ca=g.tls_ca, timeout_s=g.timeout_s)
    retry = GradeRetry(g.retries, g.backoff_s, g.timeout_s)
    try:
        await grader.wait_ready(g.start_timeout_s)
        rollout = await _open_rollout(cfg, services, model, version)
        try:
            greedy = SamplingConfig(n=1, temperature=0.0, max_tokens=gen.max_tokens, stop=list(gen.stop))
            report = await evaluate(held_out, rollout, grader, cfg.resolved_scorer, greedy, rewards=cfg.rewards,
                                    retry=retry)  # fmt: skip
            sampled = None
            if samples > 1:
                params = SamplingConfig(n=samples, temperature=gen.temperature, top_p=gen.top_p,
                                        max_tokens=gen.max_tokens, stop=list(gen.stop))  # fmt: skip
                sampled = await evaluate(held_out, rollout, grader, cfg.resolved_scorer, params, retry=retry)
            return report, sampled
        finally:
            await _close(rollout)
    finally:
        await grader.close()


def load_weights(model_dir: Path) -> dict[str, Any]:
    """A model directory's safetensors as one HF state dict (what the rollout service's UpdateWeights takes)."""
    from safetensors.torch import load_file

    state: dict[str, Any] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        state.update(load_file(str(f)))
    if not state:
        raise ValueError(f"{model_dir}: no *.safetensors weights to load")
    return state


_SHAPE_KEYS = ("architectures", "model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
               "num_attention_heads", "num_key_value_heads", "vocab_size", "tie_word_embeddings",
               "max_position_embeddings", "rope_theta")  # fmt: skip


def engine_key(model_dir: Path) -> str:
    """Models with equal keys can share one engine (weights swapped): same architecture, shape and tokenizer.
    GGUF files share one key: consecutive ones share the grader service (each runs in its own llama.cpp)."""
    import hashlib

    if is_gguf(model_dir):
        return "gguf"
    cfg = json.loads((model_dir / "config.json").read_text())
    tok = model_dir / "tokenizer.json"
    tok_hash = hashlib.sha256(tok.read_bytes()).hexdigest() if tok.is_file() else str(model_dir)
    return json.dumps({k: cfg.get(k) for k in _SHAPE_KEYS} | {"tokenizer": tok_hash}, sort_keys=True)


def _result(cfg: EvalConfig, label: str, model_dir: Path, out: Path, report: Any, sampled: Any, k: int) -> ModelResult:
    rows = report.rows
    metrics: dict[str, float] = {
        "accuracy": report.accuracy, "correct": float(sum(r.correct for r in rows)),
        "judged": float(len(report.judged)), "tasks": float(len(rows)),
        "completion_tokens_mean": sum(r.completion_tokens for r in rows) / len(rows) if rows else math.nan,
    }  # fmt: skip
    for spec in cfg.rewards:
        metrics[f"reward/{spec.key}"] = report.reward_metrics.get(f"eval/rewards/reward/{spec.key}_mean", math.nan)
    _write_rows(out / EVAL_FILE, rows, label, "greedy")
    if sampled is not None:
        metrics.update(pass_at_k_metrics(sampled.rows, k))
        _write_rows(out / SAMPLES_FILE, sampled.rows, label, f"sampled@T={cfg.generation.temperature:g}")
    result = ModelResult(label, str(model_dir), metrics, status_counts(rows), str(out / EVAL_FILE))
    (out / "result.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result


def _evaluate_group(cfg: EvalConfig, group: list[tuple[Path, str]], out_dir: Path, k: int) -> list[ModelResult]:
    """Models that share one engine: the services start with the first; the others' weights are swapped in.
    A group of GGUF files starts only the grader service."""
    from trainer.services import Services

    first_dir, first_label = group[0]
    results = []
    service_cfg = cfg.service_config(str(first_dir))
    with Services(service_cfg, first_dir, out_dir / first_label / "logs", rollout=not is_gguf(first_dir)) as services:
        for version, (model_dir, label) in enumerate(group):
            swapped = " (weights swapped into the running engine)" if version else ""
            how = " (llama.cpp)" if is_gguf(model_dir) else swapped
            log.info("evaluating %s (%s)%s", label, model_dir, how)
            out = out_dir / label
            out.mkdir(parents=True, exist_ok=True)
            report, sampled = asyncio.run(_exam(cfg, services, k, model_dir, version))
            results.append(_result(cfg, label, model_dir, out, report, sampled, k))
    return results


def model_labels(models: Sequence[str]) -> list[str]:
    """Short unique labels: "@stage" → stage, a path → its last component (numbered when they collide)."""
    raw = [m.lstrip("@") if m.startswith("@") else Path(m).name or m for m in models]
    seen: Counter[str] = Counter()
    out = []
    for name in raw:
        seen[name] += 1
        out.append(name if raw.count(name) == 1 else f"{name}-{seen[name]}")
    return out


def evaluate_models(cfg: EvalConfig, models: Sequence[str], out_dir: Path, samples: int | None = None,
                    labels: Sequence[str] | None = None) -> list[ModelResult]:  # fmt: skip
    """Evaluate each model (in order); consecutive models of one architecture, shape and tokenizer share one
    rollout engine and grader service (weights swapped, not the engine restarted). Writes out_dir/eval.json."""
    k = samples if samples is not None else cfg.generation.samples
    labels = list(labels) if labels is not None else model_labels(models)
    dirs = [resolve_model(m) for m in models]
    groups: list[list[tuple[Path, str]]] = []
    for model_dir, label in zip(dirs, labels, strict=True):
        if groups and engine_key(groups[-1][0][0]) == engine_key(model_dir):
            groups[-1].append((model_dir, label))
        else:
            groups.append([(model_dir, label)])
    results = [r for group in groups for r in _evaluate_group(cfg, group, out_dir, k)]
    (out_dir / "eval.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
    return results


def comparison_table(results: Sequence[ModelResult]) -> Any:
    """Side-by-side rich table: one column per model, one row per number."""
    from rich.table import Table

    table = Table(title="held-out evaluation (accuracy: greedy, strict scorer)")
    table.add_column("metric")
    for r in results:
        table.add_column(r.label, justify="right")
    keys = list(dict.fromkeys(k for r in results for k in r.metrics))
    for key in keys:
        cells = []
        for r in results:
            v = r.metrics.get(key)
            pct = key == "accuracy" or key.startswith("pass@")
            cells.append("–" if v is None or math.isnan(v) else f"{v:.1%}" if pct else f"{v:.3g}")
        table.add_row(key, *cells)
    statuses = sorted({s for r in results for s in r.statuses})
    for s in statuses:
        label = f"status {s}" + (" (no verdict: not a failure)" if s in (NO_VERDICT, *NO_VERDICT_REASONS) else "")
        table.add_row(label, *(str(r.statuses.get(s, 0)) for r in results))
    return table
