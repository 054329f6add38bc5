"""Rollout benchmark on SmolLM2-135M-Instruct (dequantized from a Q4_1 GGUF), competitors interleaved round by
round (the machine is shared):

- generation tokens/s: gRPC server (RolloutClient) vs raw vLLM offline `LLM.generate` vs HF `generate`
  (batched), same prompts and sampling (temperature 1.0, top_p 1, max_tokens, one sample per prompt);
- full weight sync: RolloutClient.update_weights vs a raw `reload_weights` of the same engine type from the
  local model directory, both ways the client can push: as a file handed over in the server's local_dir
  (/dev/shm; co-located trainer and server, the default here) and streamed over gRPC (validate + spill +
  in-place reload; what a remote replica gets);
- LoRA adapter sync (rank 16, all linear layers), and generation with that adapter served natively (vLLM's
  LoRA layers) vs merged into the weights by a second server (`--lora-mode merge`).

Both vLLM engines use identical settings (eager, same threads, LoRA enabled, processed logprobs, one sampled
logprob per token). Targets: gRPC >= 0.95x raw vLLM, >= 2x HF; full sync (local path) <= 1.5x raw reload.

Every figure is the median of --rounds (default 5) interleaved rounds, the order of the competitors alternating
between rounds. Full syncs push what a full fine-tune pushes: float32 master weights, cast to the server's bf16
as they are written or streamed.

Run: .venv/bin/python benchmarks/rollout.py [--prompts 32 --max-tokens 128 --rounds 5 --threads 2]"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

QUESTIONS = [
    "Explain why the sky is blue.", "Write a haiku about autumn.", "What is 17 * 23?",
    "Name three prime numbers above 50.", "Describe a cat to someone who has never seen one.",
    "Give me a short recipe for pancakes.", "What causes tides?", "Summarize the plot of Cinderella.",
    "How do vaccines work?", "List four planets of the solar system.", "Why do leaves change color?",
    "Write a limerick about a programmer.", "What is the capital of Japan?", "How does a bicycle stay upright?",
    "Explain recursion simply.", "What is photosynthesis?",
]  # fmt: skip


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--kv-cache-gib", type=float, default=1.0)
    p.add_argument("--sync-only", action="store_true", help="only the weight/adapter sync part")
    return p.parse_args()


def chat_ids(tok: Any, n: int) -> list[list[int]]:
    out = []
    for i in range(n):
        msgs = [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        out.append(tok.encode(text, add_special_tokens=False))
    return out


def raw_vllm(model: Path, args: argparse.Namespace) -> Any:
    """The offline engine with the same settings the server uses (rollout.engine.EngineSettings)."""
    from vllm import LLM

    from rollout.engine import EngineSettings, apply_cpu_env

    apply_cpu_env(EngineSettings(model=model, threads=args.threads, kv_cache_gib=args.kv_cache_gib))
    return LLM(model=str(model), max_model_len=1024, enforce_eager=True, enable_lora=True, max_lora_rank=16,
               max_loras=2, seed=0, logprobs_mode="processed_logprobs", disable_log_stats=True)  # fmt: skip


def run_raw(llm: Any, prompts: list[list[int]], max_tokens: int) -> int:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    sp = SamplingParams(temperature=1.0, max_tokens=max_tokens, logprobs=0, flat_logprobs=True)
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sp, use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outs)


def run_hf(model: Any, tok: Any, prompts: list[list[int]], max_tokens: int) -> int:
    import torch

    width = max(len(p) for p in prompts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0,
                             top_p=1.0, max_new_tokens=max_tokens, pad_token_id=pad)  # fmt: skip
    total = 0
    for row in out[:, width:].tolist():  # generated tokens up to and including the first EOS
        total += row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
    return total


async def run_grpc(client: Any, prompts: list[list[int]], max_tokens: int) -> int:
    from rollout.types import SamplingConfig

    samples = await client.generate(prompts, SamplingConfig(temperature=1.0, max_tokens=max_tokens))
    return sum(len(s.token_ids) for s in samples)


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def lora_tensors(model_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    cfg = LoraConfig(r=16, lora_alpha=32, target_modules=targets)
    model = get_peft_model(base, cfg)
    return cfg.to_dict(), get_peft_model_state_dict(model)


def main() -> None:
    args = parse()
    # `timeout`/Ctrl-C: unwind through the finally blocks so the server subprocess is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.models import prepare_base_model
    from rlvr.procs import ServiceProcess
    from rollout.client import RolloutClient

    model_dir = prepare_base_model()
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = chat_ids(tok, args.prompts)
    torch.set_num_threads(args.threads)
    hf = None if args.sync_only else AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).eval()
    server_args = ["--model", str(model_dir), "--max-model-len", "1024", "--enable-lora", "--max-lora-rank", "16",
                   "--threads", str(args.threads), "--kv-cache-gib", f"{args.kv_cache_gib:g}"]  # fmt: skip
    # The main server runs native LoRA, like the raw engine, so the generation comparison is like for like.
    server = ServiceProcess("rollout.server", [*server_args, "--lora-mode", "native"], "rollout",
                            log_path=Path("/tmp/rlvr-bench-rollout.log"))  # fmt: skip
    server.start(timeout_s=120)
    llm = raw_vllm(model_dir, args)
    loop = asyncio.new_event_loop()

    async def connect(address: str | None, local_weights: bool = True) -> RolloutClient:
        return RolloutClient(address or "", local_weights=local_weights)  # grpc.aio channels belong to their loop

    clients = [loop.run_until_complete(connect(server.address, lw)) for lw in (True, False)]
    try:
        loop.run_until_complete(clients[0].wait_ready(300))
        report = bench(args, loop, clients, llm, hf, tok, prompts, model_dir)
        # The merging server exists only for this last part, so it cannot disturb the comparisons above.
        with ServiceProcess("rollout.server", [*server_args, "--lora-mode", "merge"], "rollout-merge",
                            log_path=Path("/tmp/rlvr-bench-rollout-merge.log")) as merging:  # fmt: skip
            clients.append(loop.run_until_complete(connect(merging.address)))
            loop.run_until_complete(clients[2].wait_ready(300))
            report += "\n" + bench_lora(args, loop, clients, prompts, model_dir)
    finally:
        for c in clients:
            loop.run_until_complete(c.close())
        server.stop()
    print(report)


def bench(args: argparse.Namespace, loop: Any, clients: list[Any], llm: Any, hf: Any, tok: Any,
          prompts: list[list[int]], model_dir: Path) -> str:  # fmt: skip
    client = clients[0]
    gen = {
        "grpc": lambda: loop.run_until_complete(run_grpc(client, prompts, args.max_tokens)),
        "raw_vllm": lambda: run_raw(llm, prompts, args.max_tokens),
        "hf": lambda: run_hf(hf, tok, prompts, args.max_tokens),
    }
    rates: dict[str, list[float]] = {k: [] for k in gen}
    if not args.sync_only:
        gen["grpc"]()  # warm-up: first-batch overheads of both engines
        gen["raw_vllm"]()
    order = list(gen)
    for r in range(0 if args.sync_only else args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:  # alternate the order between rounds
            dt, tokens = timed(gen[name])
            rates[name].append(tokens / dt)
            print(f"round {r}: {name:9s} {tokens:5d} tokens in {dt:6.2f}s = {tokens / dt:7.1f} tok/s", flush=True)
    sync = bench_sync(args, loop, clients, llm, model_dir)
    med = {k: statistics.median(v) if v else float("nan") for k, v in rates.items()}
    lines = [
        "",
        "== rollout benchmark: SmolLM2-135M-Instruct (dequantized from Q4_1 GGUF) bf16, "
        f"{args.prompts} prompts x {args.max_tokens} max tokens, "
        f"temperature 1.0; vLLM eager, {args.threads} unpinned threads, LoRA on, KV {args.kv_cache_gib:g} GiB; "
        f"median of {args.rounds} interleaved rounds ==",
        f"gRPC server      {med['grpc']:8.1f} tok/s",
        f"raw vLLM LLM     {med['raw_vllm']:8.1f} tok/s",
        f"HF generate      {med['hf']:8.1f} tok/s",
        f"gRPC / raw vLLM  {med['grpc'] / med['raw_vllm']:8.2f}x   (target >= 0.95)",
        f"gRPC / HF        {med['grpc'] / med['hf']:8.2f}x   (target >= 2)",
        f"full sync (gRPC push {sync['mb']:.0f} MB)  {sync['push']:6.2f}s",
        f"full sync (local path)        {sync['local']:6.2f}s",
        f"raw reload_weights from disk  {sync['raw']:6.2f}s",
        f"full sync / raw reload        {sync['push'] / sync['raw']:6.2f}x   (streamed; remote replicas)",
        f"local sync / raw reload       {sync['local'] / sync['raw']:6.2f}x   (target <= 1.5)",
        f"adapter sync (r=16, all linear, {sync['adapter_mb']:.1f} MB)  {sync['adapter']:6.3f}s",
    ]
    return "\n".join(lines)


def bench_sync(args: argparse.Namespace, loop: Any, clients: list[Any], llm: Any, model_dir: Path) -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM

    client, streaming = clients
    # A full fine-tune's float32 masters (trainer/policy.py); the client casts them to the server's dtype.
    sd = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()
    times: dict[str, list[float]] = {"push": [], "local": [], "raw": [], "adapter": []}
    config, lora = lora_tensors(model_dir)
    for r in range(args.rounds):
        ops = {
            "push": lambda r=r: loop.run_until_complete(streaming.update_weights(sd, version=2 * r + 1)),
            "local": lambda r=r: loop.run_until_complete(client.update_weights(sd, version=2 * r + 2)),
            "raw": lambda: llm.collective_rpc("reload_weights", kwargs={"weights_path": str(model_dir)}),
            "adapter": lambda r=r: loop.run_until_complete(client.load_adapter("bench", config, lora, 100 + r)),
        }
        for name in ops if r % 2 == 0 else reversed(ops):  # alternate the order between rounds
            dt, _ = timed(ops[name])
            times[name].append(dt)
        push, local, raw, adapter = (times[k] for k in ("push", "local", "raw", "adapter"))
        print(f"round {r}: full push {push[-1]:.2f}s, local {local[-1]:.2f}s, raw reload {raw[-1]:.2f}s, "
              f"adapter {adapter[-1]:.3f}s", flush=True)  # fmt: skip
    mb = sum(t.numel() * 2 for k, t in sd.items() if k != "lm_head.weight") / 1e6
    adapter_mb = sum(t.numel() * t.element_size() for t in lora.values()) / 1e6
    return {**{k: statistics.median(v) for k, v in times.items()}, "mb": mb, "adapter_mb": adapter_mb}


def bench_lora(
    args: argparse.Namespace, loop: Any, clients: list[Any], prompts: list[list[int]], model_dir: Path
) -> str:
    """The same adapter served natively (vLLM's LoRA layers, main server) vs merged into the weights (second
    server): load time and generation tokens/s. A quarter of the prompts: native LoRA on CPU is slow."""
    from rollout.types import SamplingConfig

    config, lora = lora_tensors(model_dir)
    native, merged = clients[0], clients[2]
    loads: dict[str, list[float]] = {"native": [], "merge": []}
    rates: dict[str, list[float]] = {"native": [], "merge": []}
    few = prompts[: max(1, len(prompts) // 4)]
    sp = SamplingConfig(temperature=1.0, max_tokens=args.max_tokens)
    for r in range(args.rounds):
        for name, c in (("native", native), ("merge", merged)):
            dt, _ = timed(lambda c=c, r=r: loop.run_until_complete(c.load_adapter("lora", config, lora, 1000 + r)))
            loads[name].append(dt)
            dt, samples = timed(lambda c=c: loop.run_until_complete(c.generate(few, sp, adapter="lora")))
            tokens = sum(len(s.token_ids) for s in samples)
            rates[name].append(tokens / dt)
            print(f"round {r}: adapter {name:6s} load {loads[name][-1]:.2f}s, {tokens:5d} tokens in {dt:6.2f}s = "
                  f"{tokens / dt:7.1f} tok/s", flush=True)  # fmt: skip
    med = {k: statistics.median(v) for k, v in rates.items()}
    load = {k: statistics.median(v) for k, v in loads.items()}
    return (
        f"generation with a LoRA adapter ({len(few)} prompts x {args.max_tokens}): native {med['native']:.1f} tok/s, "
        f"merged {med['merge']:.1f} tok/s -> merged/native {med['merge'] / med['native']:.2f}x\n"
        f"adapter load: native {load['native']:.3f}s, merged into the weights {load['merge']:.3f}s"
    )


if __name__ == "__main__":
    main()
