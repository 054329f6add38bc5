"""Every stage kind in one `rlvr pipeline run` on a tiny model (the tiny Llama with 4 layers instead of 2, so a
student can be cut from it), with the real services: SFT on a chat JSONL made here from the addition task → GRPO
from @sft (vLLM rollout + grader service) → logits-mode distillation of @grpo into a 2-layer student cut from it
(student_layers) → GGUF export of @distill, verified by both readers → one eval
stage comparing @sft, @grpo, @distill and @export side by side (the HF models through vLLM, the GGUF file through
llama.cpp with only the grader service). Checks the manifest, each stage's output, eval.json's rows and the report
(rebuilt by `rlvr report --check` in headless Chromium). Measured only on the shared 2-core machine under load
(load average 6.5-9): 304 s and 339 s wall, ~105 s CPU, before the stages shared services; most of the wall time
is vLLM engine starts (now two: GRPO's shape, reused by the eval, and the student's).
The models are random, so only the plumbing is judged here: accuracy is a number in [0, 1], not a level."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.data import addition_tasks

pytestmark = pytest.mark.timeout(900)
EVAL_SIZE = 4
STAGES = ("sft", "grpo", "distill", "export", "exam")


@pytest.fixture(scope="module")
def tiny4(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's shape and tokenizer with 4 decoder layers (random weights)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rlvr.models import TINY_CONFIG

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    shape = {**TINY_CONFIG, "num_hidden_layers": 4}
    cfg = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, dtype="bfloat16", **shape)  # fmt: skip
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("models") / "tiny-4layers"
    LlamaForCausalLM(cfg).bfloat16().save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def sft_rows(path: Path, n: int = 32) -> Path:
    """Chat rows answering the addition task's training problems (the held-out first EVAL_SIZE are left out)."""
    tasks = addition_tasks(EVAL_SIZE + n, seed=0)[EVAL_SIZE:]
    rows = [{"messages": [*t.messages, {"role": "assistant", "content": t.fields["answer"]}]} for t in tasks]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_pipeline(tmp_path: Path, tiny: Path) -> Path:
    data = sft_rows(tmp_path / "sft.jsonl")
    addition = f'{{ source = "addition", size = 200, eval_size = {EVAL_SIZE} }}'
    text = f"""
name = "all stages"
run_dir = "{tmp_path / "run"}"

[[stages]]
name = "sft"
kind = "sft"
model = "{tiny}"
[stages.config]
data = {{ path = "{data}", max_len = 64 }}
model = {{ finetune = "full", threads = 1 }}
optim = {{ lr = 1e-3 }}
train = {{ steps = 2, batch_size = 4 }}
eval = {{ at_start = false }}
logging = {{ progress = "plain", tensorboard = false }}

[[stages]]
name = "grpo"
kind = "grpo"
model = "@sft"
[stages.config]
data = {addition}
rewards = [{{ grader = "math" }}]
sampling = {{ group_size = 4, max_tokens = 6 }}
optim = {{ lr = 1e-4 }}
train = {{ steps = 2, prompts_per_step = 2, max_staleness = 1 }}
eval = {{ at_start = false, at_end = true, every = 0 }}
rollout = {{ threads = 1, max_model_len = 256 }}
logging = {{ progress = "plain", tensorboard = false }}
model = {{ finetune = "full", threads = 1 }}

[[stages]]
name = "distill"
kind = "distill"
model = "@grpo"
[stages.config]
student_layers = 2
student_select = "greedy"
mode = "logits"
data = {addition}
student = {{ finetune = "full", threads = 1 }}
optim = {{ lr = 2e-3 }}
train = {{ steps = 2, batch_size = 4 }}
eval = {{ every = 0, accuracy = false }}
logging = {{ progress = "plain", tensorboard = false }}

[[stages]]
name = "export"
kind = "export"
model = "@distill"
[stages.config]
format = "gguf"
quant = "f16"
compare = "logits"
threads = 1
max_new_tokens = 4
speed_tokens = 16

[[stages]]
name = "exam"
kind = "eval"
models = ["@sft", "@grpo", "@distill", "@export"]
[stages.config]
data = {addition}
generation = {{ max_tokens = 6 }}
rollout = {{ threads = 1, max_model_len = 256 }}
"""
    path = tmp_path / "pipe.toml"
    path.write_text(text)
    return path


def test_all_stages_end_to_end(tmp_path: Path, tiny4: Path) -> None:
    cfg = write_pipeline(tmp_path, tiny4)
    run = tmp_path / "run"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "rlvr.cli", "pipeline", "run", str(cfg)], capture_output=True,
                          text=True, timeout=840)  # fmt: skip
    took = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-5000:]
    print(f"all-stage pipeline: {took:.0f} s")

    manifest = {e["name"]: e for e in json.loads((run / "manifest.json").read_text())["stages"]}
    assert [manifest[n]["status"] for n in STAGES] == ["done"] * len(STAGES)
    for name, out in (("sft", "model"), ("grpo", "model"), ("distill", "student")):
        model = Path(manifest[name]["output"])
        assert model == run / name / out and (model / "config.json").is_file()
        assert (model / "tokenizer_config.json").is_file() and any(model.glob("*.safetensors"))
    assert manifest["grpo"]["input_model"] == manifest["sft"]["output"]
    assert manifest["distill"]["input_model"] == manifest["grpo"]["output"]
    assert json.loads((run / "distill" / "student" / "config.json").read_text())["num_hidden_layers"] == 2
    shrunk = json.loads((run / "distill" / "student_init" / "shrink.json").read_text())
    assert shrunk["select"] == "greedy" and len(shrunk["kept_layers"]) == 2 and shrunk["probe_rows"] == 48
    gguf = Path(manifest["export"]["output"])
    assert gguf == run / "export" / "model.gguf" and gguf.is_file()
    assert manifest["export"]["input_model"] == manifest["distill"]["output"]
    assert json.loads((run / "export" / "export_report.json").read_text())["passed"] is True

    results = json.loads((run / "exam" / "eval.json").read_text())
    assert [r["label"] for r in results] == ["sft", "grpo", "distill", "export"]
    assert [r["model"] for r in results] == [manifest[n]["output"] for n in ("sft", "grpo", "distill", "export")]
    for r in results:
        m = r["metrics"]
        assert m["tasks"] == EVAL_SIZE and 0.0 <= m["accuracy"] <= 1.0 and sum(r["statuses"].values()) == EVAL_SIZE
        assert all(isinstance(v, float) for v in m.values()) and not math.isnan(m["completion_tokens_mean"])
        assert len((run / "exam" / r["label"] / "eval_samples.jsonl").read_text().splitlines()) == EVAL_SIZE
    # sft and grpo share one engine; the 2-layer student gets its own; the GGUF file none (llama.cpp).
    # The stages shared their services (trainer/service_pool.py): GRPO's engine served the eval's sft and grpo
    # (weights swapped in, no restart), the student's shape got a second engine, the GGUF file none; one grader
    # server throughout.
    pooled = sorted(p.name for p in (run / "services").glob("*.log"))
    assert pooled == ["graders-1.log", "rollout-1.log", "rollout-2.log"], pooled
    assert proc.stderr.count("swapped in (no restart)") == 1, proc.stderr[-5000:]
    assert not any((run / "exam" / r["label"] / "logs").exists() for r in results)

    html = (run / "report.html").read_text()
    assert "rlvr report: all stages" in html and all(f"<td>{n}</td>" in html for n in STAGES)
    assert '<table id="samples">' in html and all(f"<th>exam/{n}</th>" in html for n in ("sft", "export"))
    # The exported file's row of the pipeline table carries the exam's accuracy of it.
    export_row = html[html.index("<tr><td>export</td>") :].split("</tr>")[0]
    assert re.search(r"<td>\d+\.\d%</td>", export_row) and "tok/s" in export_row, export_row
    rebuilt = subprocess.run([sys.executable, "-m", "rlvr.cli", "report", str(run), "--check"], capture_output=True,
                             text=True, timeout=180)  # fmt: skip
    assert rebuilt.returncode == 0 and "browser check:" in rebuilt.stdout, rebuilt.stdout + rebuilt.stderr[-3000:]
