"""GGUF export benchmark on SmolLM2-135M-Instruct: `rlvr export` for f16 and q8_0 (the same code path as the
command), recording the agreement figures through transformers' GGUF reader and llama.cpp, size on disk and
generation tokens/s (HF float32 vs llama.cpp), plus held-out accuracy on 2-digit addition with llama.cpp as
the generator vs the HF model, scored by the benchmarks' strict scorer (grpo_common.strict_correct, last_integer: the
completion's last integer is the sum). Writes benchmarks/results/export_smollm2.json with the machine's load.

Run: .venv/bin/python benchmarks/export.py [--quants f16 q8_0 --eval-size 100 --threads 2]"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.grpo_common import strict_correct  # noqa: E402


def heldout_accuracy(runner: Any, tok: Any, n: int, stop: set[int]) -> float:
    """Greedy accuracy on the addition task's held-out split (trainer.data: the first eval_size problems)."""
    from trainer.data import addition_tasks

    correct = 0
    for task in addition_tasks(n, seed=0):
        text = tok.apply_chat_template(task.messages, tokenize=False, add_generation_prompt=True)
        out = runner.greedy(list(tok(text, add_special_tokens=True).input_ids), 16, stop)
        completion = tok.decode(out, skip_special_tokens=True)
        correct += strict_correct("last_integer", completion, task)
    return correct / n


def run(quant: str, a: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    from trainer.export.exporter import ExportOptions, _stop_ids, run_export
    from trainer.export.readers import HfRunner, LlamaCppRunner
    from trainer.export.source import load_source

    model_dir = Path(a.model)
    out = out_dir / f"smollm2-{quant}.gguf"
    load0 = os.getloadavg()[0]
    start = time.perf_counter()
    report = run_export(ExportOptions(model=model_dir, out=out, quant=quant, threads=a.threads))
    row: dict[str, Any] = {"quant": quant, "wall_s": round(time.perf_counter() - start, 1), **report.to_dict()}
    row["loadavg_1m_before"] = round(load0, 2)
    if report.passed and a.eval_size:
        src = load_source(model_dir)
        stop = _stop_ids(src.model, src.tokenizer)
        row["heldout_addition_accuracy"] = {
            "n": a.eval_size,
            "hf_float32": heldout_accuracy(HfRunner(src.model), src.tokenizer, a.eval_size, stop),
            "llama.cpp": heldout_accuracy(LlamaCppRunner(out, a.threads), src.tokenizer, a.eval_size, stop),
        }
    print(json.dumps({k: v for k, v in row.items() if k != "checks"}, indent=1)[:3000], flush=True)
    return row


def main() -> None:
    from rlvr.models import prepare_base_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(prepare_base_model()))
    ap.add_argument("--quants", nargs="+", default=["f16", "q8_0"])
    ap.add_argument("--eval-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/export_smollm2.json"))
    ap.add_argument("--note", default="", help="whether other work loaded the machine (tokens/s depend on it)")
    a = ap.parse_args()
    rows: list[dict[str, Any]] = []
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rlvr-export-bench-") as tmp:
        for q in a.quants:  # the file is rewritten after each run, so a long run leaves what it measured
            rows.append(run(q, a, Path(tmp)))
            result = {"model": "SmolLM2-135M-Instruct", "cpu_count": os.cpu_count(), "threads": a.threads,
                      "loadavg_1m_after": round(os.getloadavg()[0], 2),
                      "note": a.note,
                      "runs": rows}  # fmt: skip
            Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
            print(f"wrote {a.out}", flush=True)


if __name__ == "__main__":
    main()
