"""`rlvr export` end to end: load (and merge), write, verify, measure. Returns a Report; the CLI prints it
and exits non-zero when a check failed. A GGUF file that fails a check is renamed to `<out>.unverified` so it
cannot be shipped by mistake."""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.export.verify import Agreement, Check

FORMATS = ("hf", "gguf")


@dataclass
class ExportOptions:
    model: Path
    out: Path
    format: str = "gguf"
    quant: str = "f16"
    adapter: Path | None = None
    compare: str = "greedy"
    """greedy: greedy text and top-1 (real models); logits: top-1 and logit distance (random test models)."""
    max_new_tokens: int = 32
    threads: int = 2
    speed_tokens: int = 64


@dataclass
class Report:
    out: Path
    format: str
    quant: str
    checks: list[Check] = field(default_factory=list)
    agreements: list[Agreement] = field(default_factory=list)
    sizes_mb: dict[str, float] = field(default_factory=dict)
    tokens_per_s: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "format": self.format, "quant": self.quant, "passed": self.passed,
                "checks": [c.__dict__ for c in self.checks], "agreements": [a.to_dict() for a in self.agreements],
                "sizes_mb": self.sizes_mb, "tokens_per_s": self.tokens_per_s, "seconds": self.seconds,
                "info": self.info}  # fmt: skip


def _size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 2**20, 2)


def _stop_ids(model: Any, tok: Any) -> set[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), model.config):
        eos = getattr(src, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else list(eos or []))
    if tok.eos_token_id is not None:
        ids.add(int(tok.eos_token_id))
    return ids


def run_export(opts: ExportOptions) -> Report:
    import torch

    from trainer.export.source import load_source

    torch.set_num_threads(opts.threads)
    t0 = time.perf_counter()
    src = load_source(opts.model, opts.adapter)
    report = Report(opts.out, opts.format, opts.quant if opts.format == "gguf" else "bf16")
    report.info = {"model": str(opts.model), "adapter": str(opts.adapter) if opts.adapter else None,
                   "source_dtype": src.dtype, "params": sum(p.numel() for p in src.model.parameters())}  # fmt: skip
    report.sizes_mb["source"] = _size_mb(opts.model)
    report.seconds["load"] = round(time.perf_counter() - t0, 2)
    if opts.format == "hf":
        _export_hf(src, opts, report)
    else:
        _export_gguf(src, opts, report)
    return report


def _export_hf(src: Any, opts: ExportOptions, report: Report) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.export.hf import write_hf

    t0 = time.perf_counter()
    write_hf(src.model, src.tokenizer, opts.out)
    report.seconds["write"] = round(time.perf_counter() - t0, 2)
    report.sizes_mb["hf"] = _size_mb(opts.out)
    back = AutoModelForCausalLM.from_pretrained(opts.out, dtype=torch.bfloat16)
    want, got = src.model.state_dict(), back.state_dict()
    diff = [k for k in want if k not in got or not torch.equal(want[k], got[k])]
    report.checks.append(Check("weights", not diff, f"{len(want)} tensors reload bit-identical" if not diff
                               else f"{len(diff)} tensors differ after reload, first {diff[0]!r}"))  # fmt: skip
    tok = AutoTokenizer.from_pretrained(opts.out)
    same = tok.chat_template == src.tokenizer.chat_template and tok.get_vocab() == src.tokenizer.get_vocab()
    report.checks.append(Check("tokenizer", same, "vocabulary and chat template reload identical" if same
                               else "the reloaded tokenizer differs (vocabulary or chat template)"))  # fmt: skip


def _export_gguf(src: Any, opts: ExportOptions, report: Report) -> None:
    from trainer.export.gguf_writer import write_gguf
    from trainer.export.integrity import GgufIntegrityError, check_gguf

    t0 = time.perf_counter()
    written = write_gguf(src.model, src.tokenizer, opts.out, opts.quant, name=src.name)
    report.seconds["write"] = round(time.perf_counter() - t0, 2)
    report.sizes_mb["gguf"] = _size_mb(opts.out)
    report.info.update({"tensor_types": written.types, "vocab": written.vocab})
    try:
        summary = check_gguf(opts.out)
        report.checks.append(Check("integrity", True, f"{summary.n_tensors} tensors, checksum matches"))
    except GgufIntegrityError as e:
        report.checks.append(Check("integrity", False, str(e)))
        return
    t0 = time.perf_counter()
    _verify_gguf(src, opts, report)
    report.seconds["verify"] = round(time.perf_counter() - t0, 2)
    if not report.passed:
        os.replace(opts.out, opts.out.with_name(opts.out.name + ".unverified"))


def _verify_gguf(src: Any, opts: ExportOptions, report: Report) -> None:
    from trainer.export.probes import probe_ids, probe_texts
    from trainer.export.readers import HfRunner, LlamaCppRunner, load_transformers_gguf, tokens_per_s
    from trainer.export.verify import at_file_precision, check_tokenizer, compare, judge, reference

    tok = src.tokenizer
    greedy = opts.compare == "greedy"
    texts = probe_texts(tok)
    ids = probe_ids(tok, texts)
    stop = _stop_ids(src.model, tok)
    hf = HfRunner(src.model, "hf")
    rounded = at_file_precision(src.model, opts.quant) if src.dtype == "float32" else None
    ref = reference(HfRunner(rounded, "hf") if rounded is not None else hf, ids, opts.max_new_tokens, stop)
    if rounded is not None:
        cost = compare(hf, ref, opts.max_new_tokens, stop, greedy, tok)
        report.info["rounding"] = {"what": f"the float32 source against its weights rounded to {opts.quant}",
                                   "top1": round(cost.top1, 4), "greedy_same": cost.greedy_same,
                                   "greedy_total": cost.greedy_total}  # fmt: skip
        del rounded
    n_ctx = max(len(p) + opts.max_new_tokens for p in ids) + opts.speed_tokens + 8
    llama = LlamaCppRunner(opts.out, opts.threads, n_ctx=max(n_ctx, 256))
    report.checks.append(check_tokenizer(llama, tok, texts, ids))
    reader = load_transformers_gguf(opts.out)
    for runner in (reader, llama):
        agr = compare(runner, ref, opts.max_new_tokens, stop, greedy, tok)
        report.agreements.append(agr)
        report.checks.append(judge(agr, opts.quant, greedy))
    del reader
    gc.collect()
    report.info["probes"] = len(ids)
    report.tokens_per_s["hf_float32"] = round(tokens_per_s(hf, ids[0], opts.speed_tokens), 1)
    report.tokens_per_s["llama.cpp"] = round(tokens_per_s(llama, ids[0], opts.speed_tokens), 1)
