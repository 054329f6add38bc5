"""trainer/checkpoint.py: exact round trip, peft adapters, atomicity under a crash mid-save, pruning."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import trainer.checkpoint as ckpt_mod
from trainer.checkpoint import (
    CheckpointError,
    TrainState,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)


def _model(seed: int = 0) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg)


def _optim(model: Any) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.1, total_iters=10)
    return opt, sched


def _train_steps(model: Any, opt: Any, sched: Any, n: int) -> None:
    for _ in range(n):
        ids = torch.randint(0, 64, (2, 6))
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()


def _state(step: int) -> TrainState:
    return TrainState(
        step=step,
        policy_version=step + 100,
        data_state={"epoch": 1, "position": step},
        inflight_tasks=[{"id": f"t{step}", "messages": [{"role": "user", "content": "q"}], "fields": {}}],
        samples_seen=step * 16,
        extra={"note": "x"},
    )


def _rng_draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def _assert_same_optimizer(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys() and sa["state"]
    for k in sa["state"]:
        for name, v in sa["state"][k].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(sb["state"][k][name])), (k, name)


def test_round_trip_restores_model_optimizer_scheduler_rng(tmp_path: Path) -> None:
    model = _model()
    opt, sched = _optim(model)
    _train_steps(model, opt, sched, 3)
    at_save = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt_at_save = _optim(_model())[0]
    opt_at_save.load_state_dict(copy.deepcopy(opt.state_dict()))
    path = save_checkpoint(tmp_path, 3, model, opt, sched, _state(3))
    _train_steps(model, opt, sched, 2)  # the original run goes on after the checkpoint

    fresh = _model(seed=1)
    fresh_opt, fresh_sched = _optim(fresh)
    state = load_checkpoint(latest_checkpoint(tmp_path) or path, fresh, fresh_opt, fresh_sched)
    assert (state.step, state.policy_version, state.samples_seen) == (3, 103, 48)
    assert state.data_state == {"epoch": 1, "position": 3}
    assert state.inflight_tasks == _state(3).inflight_tasks and state.extra == {"note": "x"}
    for n, p in fresh.named_parameters():
        assert torch.equal(p, at_save[n]), n
    _assert_same_optimizer(fresh_opt, opt_at_save)
    assert fresh_sched.state_dict()["last_epoch"] == 3
    assert fresh_sched.get_last_lr() == pytest.approx([1e-2 * (1 - 0.9 * 3 / 10)])

    # Continuing from the checkpoint reproduces the original run exactly (same RNG draws for the data,
    # same optimizer moments, same learning rates).
    _train_steps(fresh, fresh_opt, fresh_sched, 2)
    for (n, p), (_, q) in zip(model.named_parameters(), fresh.named_parameters(), strict=True):
        assert torch.equal(p, q), n
    _assert_same_optimizer(fresh_opt, opt)
    assert fresh_sched.state_dict() == sched.state_dict()

    # python, numpy and torch RNGs all resume from the saved state.
    load_checkpoint(path, _model())
    first = _rng_draws()
    load_checkpoint(path, _model())
    assert _rng_draws() == first
    assert _rng_draws() != first


def test_peft_model_saves_only_the_adapter(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(_model(), lora)
    opt, sched = _optim(model)
    _train_steps(model, opt, sched, 2)
    path = save_checkpoint(tmp_path, 2, model, opt, sched, _state(2))
    assert (path / "adapter" / "adapter_config.json").is_file() and not (path / "model").exists()

    other = get_peft_model(_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    other_opt, other_sched = _optim(other)
    load_checkpoint(path, other, other_opt, other_sched)
    for (n, p), (_, q) in zip(model.named_parameters(), other.named_parameters(), strict=True):
        assert torch.equal(p, q), n
    _assert_same_optimizer(opt, other_opt)
    with pytest.raises(CheckpointError, match="no model weights"):
        load_checkpoint(path, _model())


def test_crash_during_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    opt, sched = _optim(model)
    _train_steps(model, opt, sched, 1)
    first = save_checkpoint(tmp_path, 1, model, opt, sched, _state(1))
    saved_params = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train_steps(model, opt, sched, 1)

    real_save = torch.save

    def exploding_save(obj: Any, f: Any, *a: Any, **kw: Any) -> None:
        if str(f).endswith("scheduler.pt"):  # model and optimizer already written by now
            raise OSError("disk full (simulated)")
        real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ckpt_mod.torch, "save", exploding_save)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path, 2, model, opt, sched, _state(2))
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)

    assert latest_checkpoint(tmp_path) == first
    assert list_checkpoints(tmp_path) == [first]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-00000001", "latest"]
    fresh = _model(seed=5)
    state = load_checkpoint(first, fresh, *_optim(fresh))
    assert state.step == 1
    for n, p in fresh.named_parameters():
        assert torch.equal(p, saved_params[n]), n


def test_killed_save_leftovers_are_invisible_and_cleaned(tmp_path: Path) -> None:
    model = _model()
    opt, sched = _optim(model)
    first = save_checkpoint(tmp_path, 1, model, opt, sched, _state(1))
    # A process killed mid-save (no exception handler ran) leaves its temp dir behind.
    leftover = tmp_path / ".tmp-ckpt-00000002-abc"
    (leftover / "model").mkdir(parents=True)
    assert latest_checkpoint(tmp_path) == first and list_checkpoints(tmp_path) == [first]
    # A checkpoint-named directory without state.json (e.g. copied by hand) is not complete either.
    (tmp_path / "ckpt-00000003").mkdir()
    (tmp_path / "latest").write_text("ckpt-00000003\n")
    assert latest_checkpoint(tmp_path) == first
    save_checkpoint(tmp_path, 4, model, opt, sched, _state(4))
    assert not leftover.exists()


def test_keep_last_prunes_old_checkpoints(tmp_path: Path) -> None:
    model = _model()
    opt, sched = _optim(model)
    for step in range(1, 6):
        save_checkpoint(tmp_path, step * 10, model, opt, sched, _state(step), keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000040", "ckpt-00000050"]
    assert latest_checkpoint(tmp_path) == tmp_path / "ckpt-00000050"
    # Re-saving an existing step replaces it atomically.
    again = save_checkpoint(tmp_path, 50, model, opt, sched, _state(9), keep_last=2)
    assert load_checkpoint(again, model).step == 9
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000040", "ckpt-00000050"]
    assert not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(ValueError, match="keep_last"):
        save_checkpoint(tmp_path, 60, model, opt, sched, _state(6), keep_last=0)


def test_missing_or_empty_root(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "nope") is None
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_checkpoint(tmp_path, _model())


def test_checkpoint_due_by_steps_or_wall_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """checkpoint.every (steps) and checkpoint.every_s (wall seconds since the last save) each trigger a save."""
    import trainer.grpo as grpo
    from trainer.config import GRPOConfig

    clock = [100.0]
    monkeypatch.setattr(grpo.time, "monotonic", lambda: clock[0])
    trainer = object.__new__(grpo.GRPOTrainer)
    trainer.cfg = GRPOConfig.model_validate({"checkpoint": {"every": 0, "every_s": 60}})
    trainer.step, trainer.last_saved_at = 3, 100.0
    clock[0] = 159.0
    assert not trainer._checkpoint_due()
    clock[0] = 160.0
    assert trainer._checkpoint_due()
    trainer.cfg = GRPOConfig.model_validate({"checkpoint": {"every": 4}})
    assert not trainer._checkpoint_due()  # every_s unset: wall time alone never triggers
    trainer.step = 8
    assert trainer._checkpoint_due()
    with pytest.raises(ValueError, match="every_s"):
        GRPOConfig.model_validate({"checkpoint": {"every_s": 0}})


def _chat(tok: Any) -> str:
    messages = [{"role": "user", "content": "2+2?"}]
    text: str = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_checkpoint_dir_carries_the_tokenizer(finetune: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    """A checkpoint's model/ (or adapter/) dir is a complete HF dir: the tokenizer and chat template come along, so
    it loads (and publishes, shrinks, serves) without the base model's files."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipeline.stages import publish_model
    from rlvr.student import load_tokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.chat_template  # the tiny model has SmolLM2's template: the round trip below can fail
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    if finetune == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    path = save_checkpoint(tmp_path / "ckpts", 1, model, None, None, _state(1), tokenizer=tok)
    saved = path / ("model" if finetune == "full" else "adapter")
    assert (saved / "tokenizer.json").is_file() and (saved / "tokenizer_config.json").is_file()
    back = load_tokenizer(saved, "teacher")
    assert _chat(back) == _chat(tok) and back("1 + 1").input_ids == tok("1 + 1").input_ids
    if finetune == "full":
        assert AutoModelForCausalLM.from_pretrained(saved).config.num_hidden_layers == model.config.num_hidden_layers

    # The pipeline publishes the checkpoint's own tokenizer; a base without tokenizer files proves where it came from.
    bare_base = tmp_path / "bare_base"
    bare_base.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        (bare_base / name).write_bytes((tiny_model_dir / name).read_bytes())
    out = publish_model(path, bare_base, tmp_path / "published")
    assert _chat(AutoTokenizer.from_pretrained(out)) == _chat(tok)
    assert AutoModelForCausalLM.from_pretrained(out).config.vocab_size == model.config.vocab_size


def test_checkpoint_without_tokenizer_still_saves_weights_only(tmp_path: Path) -> None:
    model = _model()
    path = save_checkpoint(tmp_path, 1, model, None, None, _state(1))
    assert (path / "model" / "model.safetensors").is_file() and not (path / "model" / "tokenizer.json").exists()
