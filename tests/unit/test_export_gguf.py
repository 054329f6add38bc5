"""trainer/export: GGUF tensor mapping and llama.cpp's q/k permutation on the tiny model, tokenizer metadata
(token types: the special-token trap), quantization types, and rejection of corrupted or truncated files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trainer.export.gguf_writer import SHA_KEY, GgufWriteError, write_gguf
from trainer.export.integrity import GgufIntegrityError, check_gguf
from trainer.export.llama_layout import LayoutError, check_config, hparams, permute_qk, unpermute_qk
from trainer.export.vocab import VocabError, pre_tokenizer_name

LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
                 "ffn_down")  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[Any, Any]:
    from trainer.export.source import load_source

    src = load_source(tiny_model_dir)
    return src.model, src.tokenizer


@pytest.fixture(scope="module")
def tiny_gguf(tiny: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "tiny-f16.gguf"
    write_gguf(*tiny, out, "f16")
    return out


def _reader(path: Path) -> Any:
    from gguf import GGUFReader

    return GGUFReader(path)


def _tensor(reader: Any, name: str) -> np.ndarray:
    from gguf import quants

    t = next(t for t in reader.tensors if t.name == name)
    return np.asarray(quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(
        tuple(reversed([int(d) for d in t.shape]))
    )


def test_permutation_round_trip_and_matches_transformers_reader() -> None:
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    rng = np.random.default_rng(0)
    for n_head, rows in ((4, 256), (2, 128), (9, 576), (3, 192)):
        w = rng.standard_normal((rows, 32)).astype(np.float32)
        p = permute_qk(w, n_head)
        assert not np.array_equal(p, w)  # it moves rows
        assert np.array_equal(unpermute_qk(p, n_head), w)
        # the independent reader undoes it the same way
        proc = LlamaTensorProcessor(config={"num_attention_heads": n_head, "num_key_value_heads": n_head})
        assert np.array_equal(proc._reverse_permute_weights(p, n_head, n_head), w)


def test_permutation_interleaves_rotary_halves() -> None:
    # One head of width 8: HF rows [x0..x3 | y0..y3] (rotate_half pairs xi with yi) -> llama.cpp x0 y0 x1 y1 ...
    w = np.arange(8, dtype=np.float32)[:, None]
    assert permute_qk(w, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_tensor_mapping_on_tiny_model(tiny: tuple[Any, Any], tiny_gguf: Path) -> None:
    model, _ = tiny
    reader = _reader(tiny_gguf)
    names = {t.name for t in reader.tensors}
    n = model.config.num_hidden_layers
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{t}.weight" for i in range(n) for t in LAYER_TENSORS
    }
    assert names == expected  # tied embeddings: no output.weight, llama.cpp reuses token_embd
    state = model.state_dict()
    cfg = model.config

    def hf(name: str) -> np.ndarray:  # as f16 stores it (bf16 -> f16 is exact except for subnormals)
        return state[name].float().numpy().astype(np.float16).astype(np.float32)

    q = _tensor(reader, "blk.1.attn_q.weight")
    k = _tensor(reader, "blk.1.attn_k.weight")
    attn = "model.layers.1.self_attn"
    np.testing.assert_array_equal(unpermute_qk(q, cfg.num_attention_heads), hf(f"{attn}.q_proj.weight"))
    np.testing.assert_array_equal(unpermute_qk(k, cfg.num_key_value_heads), hf(f"{attn}.k_proj.weight"))
    assert not np.array_equal(q, hf("model.layers.1.self_attn.q_proj.weight"))
    np.testing.assert_array_equal(_tensor(reader, "blk.0.ffn_down.weight"), hf("model.layers.0.mlp.down_proj.weight"))
    np.testing.assert_array_equal(_tensor(reader, "token_embd.weight"), hf("model.embed_tokens.weight"))
    np.testing.assert_array_equal(_tensor(reader, "output_norm.weight"), state["model.norm.weight"].float().numpy())
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.weight"] == "F16"
    keys = {"context_length": "context_length", "embedding_length": "embedding_length", "block_count": "block_count",
            "feed_forward_length": "feed_forward_length", "head_count": "attention.head_count",
            "head_count_kv": "attention.head_count_kv", "rope_dimension_count": "rope.dimension_count",
            "rope_freq_base": "rope.freq_base", "layer_norm_rms_eps": "attention.layer_norm_rms_epsilon",
            "vocab_size": "vocab_size"}  # fmt: skip
    for key, value in hparams(cfg).items():
        field = reader.fields[f"llama.{keys[key]}"]
        assert field.contents() == pytest.approx(value)


def test_tokenizer_metadata_marks_special_tokens_control(tiny: tuple[Any, Any], tiny_gguf: Path) -> None:
    from gguf import TokenType

    _, tok = tiny
    f = _reader(tiny_gguf).fields
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    vocab = tok.get_vocab()
    assert len(tokens) == len(types) == len(vocab)
    assert all(tokens[i] == t for t, i in vocab.items())
    special = {i for i, a in tok.added_tokens_decoder.items() if a.special}
    assert tok.convert_tokens_to_ids("<|im_start|>") in special and len(special) == 17
    assert {i for i, t in enumerate(types) if t == TokenType.CONTROL} == special
    assert {t for i, t in enumerate(types) if i not in special} == {TokenType.NORMAL}
    assert f["tokenizer.ggml.model"].contents() == "gpt2"
    assert f["tokenizer.ggml.pre"].contents() == "gpt-2"
    assert len(f["tokenizer.ggml.merges"].contents()) == 48900
    assert f["tokenizer.ggml.add_bos_token"].contents() is False  # SmolLM2 adds no BOS
    assert f["tokenizer.ggml.eos_token_id"].contents() == tok.eos_token_id == 2
    assert f["tokenizer.ggml.padding_token_id"].contents() == tok.pad_token_id
    assert f["tokenizer.chat_template"].contents() == tok.chat_template


def test_pre_tokenizer_names() -> None:
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert pre_tokenizer_name({"pre_tokenizer": byte_level}, "t.json") == "gpt-2"
    digits = {"type": "Digits", "individual_digits": True}
    seq = {"type": "Sequence", "pretokenizers": [digits, byte_level]}
    assert pre_tokenizer_name({"pre_tokenizer": seq}, "t.json") == "smollm"
    with pytest.raises(VocabError, match=r"t\.json: pre_tokenizer .*Metaspace"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Metaspace"}}, "t.json")


def test_q8_0_and_bf16_types(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    model, tok = tiny
    for quant, qtype, file_type in (("q8_0", "Q8_0", 7), ("bf16", "BF16", 32)):
        out = tmp_path / f"tiny-{quant}.gguf"
        w = write_gguf(model, tok, out, quant)
        assert set(w.types) == {qtype, "F32"}
        reader = _reader(out)
        assert reader.fields["general.file_type"].contents() == file_type
        q = _tensor(reader, "blk.0.ffn_up.weight")
        ref = model.state_dict()["model.layers.0.mlp.up_proj.weight"].float().numpy()
        if quant == "bf16":
            np.testing.assert_array_equal(q, ref)
        else:
            assert np.abs(q - ref).max() <= np.abs(ref).max() / 127 + 1e-6
        check_gguf(out)
    with pytest.raises(GgufWriteError, match="q4_k"):
        write_gguf(model, tok, tmp_path / "x.gguf", "q4_k")


def test_unsupported_configs_are_refused(tiny: tuple[Any, Any]) -> None:
    cfg = tiny[0].config.__class__(**tiny[0].config.to_dict())
    cfg.attention_bias = True
    with pytest.raises(LayoutError, match="attention_bias"):
        check_config(cfg)
    cfg.attention_bias = False
    cfg.model_type = "mistral"
    with pytest.raises(LayoutError, match="model_type='mistral'"):
        check_config(cfg)


def test_f16_overflow_is_an_error_naming_the_tensor() -> None:
    from trainer.export.gguf_writer import encode_tensor

    with pytest.raises(GgufWriteError, match=r"blk\.0\.ffn_up\.weight.*bf16"):
        encode_tensor("blk.0.ffn_up.weight", np.full((4, 32), 1e6, dtype=np.float32), "f16")


def test_truncated_file_is_rejected(tiny_gguf: Path, tmp_path: Path) -> None:
    data = tiny_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(GgufIntegrityError, match=r"cut\.gguf: (truncated|not a readable GGUF)"):
        check_gguf(cut)
    head = tmp_path / "head.gguf"
    head.write_bytes(data[:5000])  # inside the metadata
    with pytest.raises(GgufIntegrityError, match=r"head\.gguf: not a readable GGUF file"):
        check_gguf(head)


def test_corrupted_file_is_rejected(tiny_gguf: Path, tmp_path: Path) -> None:
    reader = _reader(tiny_gguf)
    t = next(t for t in reader.tensors if t.name == "blk.1.attn_v.weight")
    data = bytearray(tiny_gguf.read_bytes())
    data[int(t.data_offset) + 10] ^= 0x40
    bad = tmp_path / "flipped.gguf"
    bad.write_bytes(bytes(data))
    with pytest.raises(GgufIntegrityError, match=r"flipped\.gguf: corrupted: the tensor data's sha256"):
        check_gguf(bad)
    data = bytearray(tiny_gguf.read_bytes())
    data[:4] = b"GGUX"
    bad.write_bytes(bytes(data))
    with pytest.raises(GgufIntegrityError, match=r"not a readable GGUF file .*magic"):
        check_gguf(bad)
    assert SHA_KEY in reader.fields
    missing = tmp_path / "missing.gguf"
    with pytest.raises(GgufIntegrityError, match="no such file"):
        check_gguf(missing)
    shutil.copy(tiny_gguf, tmp_path / "ok.gguf")
    assert check_gguf(tmp_path / "ok.gguf").n_tensors == 2 + 9 * 2


def test_written_model_dtype_is_unchanged(tiny: tuple[Any, Any]) -> None:
    assert tiny[0].dtype == torch.bfloat16


def test_a_float32_source_is_judged_at_the_file_precision(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    """The readers are compared with the weights the file holds: 2-D weights rounded as the writer rounds them,
    norms untouched, the source itself unchanged."""
    import copy

    from trainer.export.verify import at_file_precision

    m32 = copy.deepcopy(tiny[0]).float()
    torch.manual_seed(0)
    with torch.no_grad():  # float32 detail that f16 cannot hold
        for p in m32.parameters():
            p.add_(torch.randn_like(p) * 1e-4)
    assert at_file_precision(m32, "q8_0") is None
    rounded = at_file_precision(m32, "f16")
    changed = 0
    for (name, p), q in zip(m32.named_parameters(), rounded.parameters(), strict=True):
        want = p.half().float() if p.dim() == 2 else p
        assert torch.equal(q, want), name
        changed += int(not torch.equal(q, p))
    assert changed > 0 and rounded.lm_head.weight.data_ptr() == rounded.model.embed_tokens.weight.data_ptr()
    out = tmp_path / "f32-source-f16.gguf"
    write_gguf(m32, tiny[1], out, "f16")
    reader = _reader(out)
    held = {"token_embd.weight": rounded.model.embed_tokens.weight, "output_norm.weight": m32.model.norm.weight,
            "blk.0.ffn_down.weight": rounded.model.layers[0].mlp.down_proj.weight}  # fmt: skip
    for name, want in held.items():
        assert np.array_equal(_tensor(reader, name), want.detach().numpy()), name


def test_top1_near_ties_count_as_agreeing_and_are_reported() -> None:
    """A reader that picks a token the reference scores within TIE_MARGIN of its best is a near tie (16-bit rounding
    orders such tokens either way); a pick the reference ranks a whole logit lower is a disagreement."""
    from trainer.export.verify import TIE_MARGIN, Agreement, judge, top1_agreement

    near = TIE_MARGIN / 2
    ref = np.array([[5.0, 5.0 - near, 0.0], [5.0, 3.0, 0.0], [1.0, 0.0, 0.0], [2.0, 2.0 - 2 * TIE_MARGIN, 0.0]])
    got = np.array([[4.9, 5.0, 0.0], [3.0, 5.0, 0.0], [1.0, 0.0, 0.0], [1.9, 2.0, 0.0]])
    assert top1_agreement(got, ref) == (2, 1)  # row 0 a tie, row 2 exact; rows 1 and 3 disagree

    agr = Agreement("llama.cpp", top1_same=995, top1_ties=40, top1_total=1000, greedy_same=50, greedy_total=50)
    check = judge(agr, "f16", greedy=True)
    assert check.passed and "40 near ties" in check.detail
    assert not judge(Agreement("llama.cpp", top1_same=990, top1_total=1000, greedy_same=50, greedy_total=50),
                     "f16", greedy=True).passed  # fmt: skip
