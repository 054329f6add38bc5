"""Students: which layers `shrink` keeps, what it copies, parameter counts, and the compatibility check."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from rlvr.student import (
    CompatibilityError,
    ShrinkError,
    check_compatible,
    compare_tokenizers,
    count_parameters,
    select_layers,
    shrink,
)


@pytest.mark.parametrize(
    ("n", "k", "tail", "expected"),
    [
        (30, 11, 4, [0, 1, 2, 3, 4, 5, 6, 26, 27, 28, 29]),  # the measured default: first 7 + last 4
        (30, 11, 1, [*range(10), 29]),
        (30, 15, 4, [*range(11), 26, 27, 28, 29]),
        (30, 2, 4, [0, 29]),  # tail capped at keep - 1: the first layer stays
        (30, 30, 4, list(range(30))),
        (6, 3, 4, [0, 4, 5]),
        (1, 1, 4, [0]),
    ],
)
def test_first_layers_and_a_tail_of_last_layers_are_kept(n: int, k: int, tail: int, expected: list[int]) -> None:
    assert select_layers(n, k, tail) == expected


@pytest.mark.parametrize("n", range(2, 40))
def test_selection_is_strictly_increasing_for_every_k(n: int) -> None:
    for k, tail in itertools.product(range(2, n + 1), (1, 4, 40)):
        kept = select_layers(n, k, tail)
        assert len(kept) == k and kept[0] == 0 and kept[-1] == n - 1
        assert all(b > a for a, b in itertools.pairwise(kept))


@pytest.mark.parametrize(("n", "k", "tail"), [(30, 0, 4), (30, 31, 4), (30, 1, 4), (0, 1, 4), (30, 11, 0)])
def test_impossible_layer_counts_are_errors(n: int, k: int, tail: int) -> None:
    with pytest.raises(ShrinkError):
        select_layers(n, k, tail)


def test_parameter_count_counts_tied_embeddings_once() -> None:
    cfg: dict[str, Any] = dict(vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    tied = LlamaForCausalLM(LlamaConfig(**cfg, tie_word_embeddings=True))
    untied = LlamaForCausalLM(LlamaConfig(**cfg, tie_word_embeddings=False))
    assert count_parameters(untied) - count_parameters(tied) == 100 * 16
    assert count_parameters(tied) == sum(p.numel() for p in tied.state_dict().values()) - 100 * 16


@pytest.fixture(scope="module")
def six_layer_teacher(small_llama: Callable[..., Path]) -> Path:
    return small_llama(layers=6, seed=0)


def test_shrink_keeps_the_selected_layers_and_copies_the_rest(six_layer_teacher: Path, tmp_path: Path) -> None:
    result = shrink(six_layer_teacher, 3, tmp_path / "student")
    assert result.kept_layers == [0, 4, 5] and result.teacher_layers == 6
    teacher = AutoModelForCausalLM.from_pretrained(six_layer_teacher)
    student = AutoModelForCausalLM.from_pretrained(result.path)
    assert student.config.num_hidden_layers == 3
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    for new, old in enumerate([0, 4, 5]):
        for name in ("self_attn.q_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"):
            assert torch.equal(s_sd[f"model.layers.{new}.{name}"], t_sd[f"model.layers.{old}.{name}"])
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(s_sd[name], t_sd[name])
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()  # still tied
    assert result.student_params == count_parameters(student) < result.teacher_params
    # The student is the teacher with layers 1, 2, 3 removed: same logits as running only the kept blocks.
    teacher.model.layers = torch.nn.ModuleList([teacher.model.layers[i] for i in (0, 4, 5)])
    for j, layer in enumerate(teacher.model.layers):
        layer.self_attn.layer_idx = j
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    torch.testing.assert_close(student(ids).logits, teacher(ids).logits)
    s_tok, t_tok = AutoTokenizer.from_pretrained(result.path), AutoTokenizer.from_pretrained(six_layer_teacher)
    assert s_tok.chat_template == t_tok.chat_template and s_tok.get_vocab() == t_tok.get_vocab()
    info = json.loads((result.path / "shrink.json").read_text())
    assert info["kept_layers"] == [0, 4, 5] and info["teacher_layers"] == 6
    check_compatible(six_layer_teacher, result.path, "logits")  # a shrunk student always passes


def test_shrink_rejects_a_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ShrinkError, match=r"no config\.json"):
        shrink(tmp_path, 2, tmp_path / "out")


def _tokenizer_with_swapped(tiny_model_dir: Path, tmp_path: Path, a: str, b: str) -> Path:
    """A copy of the tiny model's tokenizer with the ids of tokens a and b swapped (merges stay valid)."""
    out = tmp_path / "tok"
    shutil.copytree(tiny_model_dir, out)
    data = json.loads((out / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (out / "tokenizer.json").write_text(json.dumps(data))
    return out


def test_vocabulary_mismatch_names_the_first_differing_token(tiny_model_dir: Path, tmp_path: Path) -> None:
    teacher = AutoTokenizer.from_pretrained(tiny_model_dir)
    token_300 = str(teacher.convert_ids_to_tokens(300))
    token_900 = str(teacher.convert_ids_to_tokens(900))
    other = _tokenizer_with_swapped(tiny_model_dir, tmp_path, token_900, token_300)
    with pytest.raises(CompatibilityError) as err:
        check_compatible(tiny_model_dir, other, "logits")
    assert f"id 300: teacher {token_300!r}, student {token_900!r}" in str(err.value)
    with pytest.raises(CompatibilityError):
        check_compatible(tiny_model_dir, other, "on_policy")
    check_compatible(tiny_model_dir, other, "sequence")  # text-level: any tokenizer


def test_extra_token_is_named(tiny_model_dir: Path) -> None:
    teacher = AutoTokenizer.from_pretrained(tiny_model_dir)
    student = AutoTokenizer.from_pretrained(tiny_model_dir)
    student.add_tokens(["<extra-tool-token>"])
    with pytest.raises(CompatibilityError, match=f"id {len(teacher)}: teacher None, student '<extra-tool-token>'"):
        compare_tokenizers(teacher, student)


def test_special_token_mismatch_names_the_token(tiny_model_dir: Path) -> None:
    teacher = AutoTokenizer.from_pretrained(tiny_model_dir)
    student = AutoTokenizer.from_pretrained(tiny_model_dir)
    student.eos_token = "<|im_start|>"
    with pytest.raises(CompatibilityError, match=r"eos_token is '<\|im_end\|>' \(id 2\) in the teacher, "
                                                 r"'<\|im_start\|>' \(id 1\) in the student"):  # fmt: skip
        compare_tokenizers(teacher, student)
    compare_tokenizers(teacher, AutoTokenizer.from_pretrained(tiny_model_dir))


def test_a_model_dir_without_tokenizer_is_named(six_layer_teacher: Path, tmp_path: Path) -> None:
    """A weights-only dir (e.g. an old GRPO checkpoint): shrinking it, or distilling from it, says what is missing."""
    weights_only = tmp_path / "ckpt"
    weights_only.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(six_layer_teacher / name, weights_only / name)
    with pytest.raises(ShrinkError, match=r"--from .*ckpt: no usable tokenizer"):
        shrink(weights_only, 2, tmp_path / "out")
    with pytest.raises(ShrinkError, match=r"teacher .*ckpt: no usable tokenizer"):
        check_compatible(weights_only, six_layer_teacher, "sequence")
