"""`rlvr train sft` end to end on the tiny model: held-out loss falls and the output is a model GRPO loads
(full, LoRA merged, QLoRA merged on CPU); kill -9 (also mid-save) and --resume continue at the same step and
data position, with the same losses as an uninterrupted run."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from trainer.metrics import read_records
from trainer.sft.config import load_sft_config
from trainer.sft.run import run_sft

ROOT = Path(__file__).resolve().parents[2]


def arith_module() -> Any:
    spec = importlib.util.spec_from_file_location("make_arith_sft", ROOT / "examples/data/make_arith_sft.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def arith_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    mod = arith_module()
    d = tmp_path_factory.mktemp("arith")
    held = mod.rows(40, 7_000_000, set())
    train = mod.rows(300, 5, {r["messages"][0]["content"].split("\n")[0] for r in held})
    # keep the near-duplicate warnings out of the way: only errors stop training, and there are none
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (d / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held))
    return d / "train.jsonl", d / "eval.jsonl"


def overrides(run_dir: Path, tiny: Path, files: tuple[Path, Path], *extra: str) -> list[str]:
    return [f"run_dir='{run_dir}'", f"model.path='{tiny}'", f"data.path='{files[0]}'", f"data.eval_path='{files[1]}'",
            "model.threads=1", "optim.lr=1e-3", "data.max_len=128", "train.batch_size=4", "eval.batch_size=40",
            "logging.tensorboard=false", *extra]  # fmt: skip


def test_sft_lowers_held_out_loss_and_writes_a_model_grpo_loads(tmp_path: Path, tiny_model_dir: Path,
                                                                 arith_files: tuple[Path, Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import trainer.sft.run as sft_run

    # (weight dtype, output dtype) of a projection in the training passes (not lm_head: TRL's fused LM head
    # multiplies by its weight directly)
    seen: set[tuple[Any, Any]] = set()

    def watched(cfg: Any, path: Path) -> Any:
        model = load_model(cfg, path)
        model.model.layers[0].mlp.down_proj.register_forward_hook(
            lambda m, _, out: seen.add((m.weight.dtype, out.dtype)) if m.training else None)
        return model

    load_model = sft_run._model
    monkeypatch.setattr(sft_run, "_model", watched)
    cfg = load_sft_config(None, overrides(tmp_path / "run", tiny_model_dir, arith_files, "train.steps=12",
                                          "model.finetune='full'", "model.dtype='bfloat16'"))  # fmt: skip
    summary = run_sft(cfg)
    import torch

    # model.dtype = "bfloat16" (what "auto" is on bf16 hardware): bf16 autocast over float32 masters, as GRPO trains
    assert seen == {(torch.float32, torch.bfloat16)}, seen
    assert summary.steps == 12 and summary.first_eval_loss is not None and summary.last_eval_loss is not None
    assert summary.last_eval_loss < summary.first_eval_loss - 0.3, summary
    records = read_records(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 13))
    assert json.loads((tmp_path / "run" / "data_check.json").read_text())["errors"] == 0
    from trainer.policy import Policy, resolve_model_path

    assert resolve_model_path(str(summary.model_dir)) == summary.model_dir
    from trainer.config import load_grpo_config

    grpo = load_grpo_config(None, [f"model.path='{summary.model_dir}'", "model.finetune='full'"])
    policy = Policy(grpo.model)  # what `rlvr train grpo model.path=<model dir>` loads
    assert sum(p.numel() for p in policy.parameters()) > 0


@pytest.mark.parametrize("mode", ["lora", "qlora"])
def test_adapters_are_merged_into_a_plain_model(tmp_path: Path, tiny_model_dir: Path, arith_files: tuple[Path, Path],
                                                mode: str) -> None:  # fmt: skip
    import torch
    from safetensors.torch import load_file

    extra = ("train.steps=2", f"model.finetune='{mode}'", "eval.at_start=false", "optim.lr=5e-2")
    cfg = load_sft_config(None, overrides(tmp_path / "run", tiny_model_dir, arith_files, *extra))
    summary = run_sft(cfg)
    assert (summary.model_dir / "config.json").is_file() and not (summary.model_dir / "adapter_config.json").exists()
    merged = load_file(str(summary.model_dir / "model.safetensors"))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert set(merged) == set(base)  # plain HF names, no lora_ tensors
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    assert any("q_proj" in k for k in changed)


def _cli(run_dir: Path, tiny: Path, files: tuple[Path, Path], *extra: str) -> list[str]:
    return [sys.executable, "-m", "rlvr.cli", "train", "sft", *overrides(run_dir, tiny, files, *extra)]


def test_kill_9_and_resume_continue_like_an_uninterrupted_run(tmp_path: Path, tiny_model_dir: Path,
                                                              arith_files: tuple[Path, Path]) -> None:  # fmt: skip
    common = ("train.steps=8", "checkpoint.every=2", "checkpoint.keep_last=2", "eval.at_start=false",
              "model.finetune='full'")  # fmt: skip
    ref = run_sft(load_sft_config(None, overrides(tmp_path / "ref", tiny_model_dir, arith_files, *common)))
    assert ref.steps == 8
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_cli(run, tiny_model_dir, arith_files, *common), env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    marker = run / "checkpoints" / "checkpoint-4" / ".rlvr-complete"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run never completed checkpoint 4"
    # A save interrupted by the kill: checkpoint-6 exists without its completion marker (as a kill -9 between
    # the weights and trainer_state.json leaves it); resume must take checkpoint-4 (or a complete 6) instead.
    partial = run / "checkpoints" / "checkpoint-6"
    if not (partial / ".rlvr-complete").exists():
        partial.mkdir(exist_ok=True)
        (partial / "model.safetensors").write_bytes(b"half a file")
    out = subprocess.run(_cli(run, tiny_model_dir, arith_files, *common, "--resume"), env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    steps = [r["step"] for r in read_records(run / "metrics.jsonl") if r["kind"] == "train"]
    assert steps == list(range(1, 9))  # no step repeated or skipped in the history
    ref_loss = {r["step"]: r["loss"] for r in read_records(tmp_path / "ref" / "metrics.jsonl") if r["kind"] == "train"}
    got_loss = {r["step"]: r["loss"] for r in read_records(run / "metrics.jsonl") if r["kind"] == "train"}
    for step in range(1, 9):  # same data order and weights after the resume → the same losses
        assert got_loss[step] == pytest.approx(ref_loss[step], rel=1e-3, abs=1e-3), (step, got_loss, ref_loss)
    assert (run / "model" / "config.json").is_file()
    # Killed after its last checkpoint (before or after the model was written): --resume trains no step 9.
    again = subprocess.run(_cli(run, tiny_model_dir, arith_files, *common, "--resume"), env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0 and "is the last step" in again.stderr, again.stderr[-3000:]
    assert [r["step"] for r in read_records(run / "metrics.jsonl") if r["kind"] == "train"] == list(range(1, 9))
    assert not (run / "checkpoints" / "checkpoint-9").exists() and (run / "model" / "config.json").is_file()
