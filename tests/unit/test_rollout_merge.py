"""lora_mode=merge: the server's W0 + scale * B @ A agrees with peft's own merge for every scaling variant."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from rollout.merge import AdapterMerger, check_mergeable, lora_scale
from rollout.weights import WeightsError


@pytest.fixture(scope="module")
def hf(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def _adapter(hf, **kw):
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    cfg = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], **kw)
    model = get_peft_model(copy.deepcopy(hf), cfg)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    return model, cfg.to_dict(), get_peft_model_state_dict(model)


@pytest.mark.parametrize(
    "kw",
    [{}, {"use_rslora": True}, {"rank_pattern": {"v_proj": 4}, "alpha_pattern": {"down_proj": 3}}],
    ids=["plain", "rslora", "patterns"],
)
def test_merged_weights_equal_peft_merge(hf, tiny_model_dir: Path, tmp_path: Path, kw) -> None:
    from safetensors.torch import load_file

    model, cfg, tensors = _adapter(hf, **kw)
    if "rank_pattern" in kw:
        assert tensors["base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"].shape[0] == 4
    merger = AdapterMerger(tiny_model_dir)
    merger.write_merged(tmp_path / "m.safetensors", cfg, tensors, "float32")
    merged = load_file(str(tmp_path / "m.safetensors"))
    expected = model.merge_and_unload().state_dict()
    assert set(merged) == set(merger.base())
    changed = 0
    for name, w in merged.items():
        torch.testing.assert_close(w, expected[name], atol=1e-6, rtol=1e-5)
        changed += not torch.equal(w, merger.base()[name])
    assert changed == 3 * 2  # q, v, down in both layers of the tiny model


def test_scale_rules() -> None:
    cfg = {"r": 16, "lora_alpha": 32, "alpha_pattern": {"o_proj": 8}}
    assert lora_scale("model.layers.0.self_attn.q_proj", cfg, 16) == 2.0
    assert lora_scale("model.layers.0.self_attn.o_proj", cfg, 16) == 0.5
    assert lora_scale("model.layers.0.self_attn.q_proj", {**cfg, "use_rslora": True}, 16) == 8.0


@pytest.mark.parametrize("bad", [{"use_dora": True}, {"fan_in_fan_out": True}, {"modules_to_save": ["lm_head"]}])
def test_unmergeable_adapters_are_refused(bad) -> None:
    with pytest.raises(WeightsError, match="lora_mode=merge"):
        check_mergeable({"r": 8, **bad})


def test_merge_starts_from_the_last_full_update(hf, tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    _, cfg, tensors = _adapter(hf)
    base = {k: v.float() + 1.0 for k, v in load_file(str(next(tiny_model_dir.glob("*.safetensors")))).items()}
    save_file(base, str(tmp_path / "new.safetensors"))
    merger = AdapterMerger(tiny_model_dir)
    merger.set_base(tmp_path / "new.safetensors")
    merger.write_merged(tmp_path / "m.safetensors", cfg, tensors, "float32")
    merged = load_file(str(tmp_path / "m.safetensors"))
    torch.testing.assert_close(merged["model.norm.weight"], base["model.norm.weight"])
    q = "model.layers.0.self_attn.q_proj.weight"
    a = tensors[f"base_model.model.{q[:-7]}.lora_A.weight"]
    b = tensors[f"base_model.model.{q[:-7]}.lora_B.weight"]
    torch.testing.assert_close(merged[q], base[q] + 2.0 * b @ a)
