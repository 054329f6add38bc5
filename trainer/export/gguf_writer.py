"""Write a merged HF Llama model as a GGUF file with gguf-py's GGUFWriter (llama architecture).

Types: 1-D tensors (norms) stay F32 as in llama.cpp's converter; 2-D weights become F16, BF16 or Q8_0
(gguf.quants). Q8_0 needs rows divisible by 32; a tensor that is not falls back to F16 (none in SmolLM2).
Q4_K is not offered: its 256-wide super-blocks do not divide SmolLM2's 576-wide rows, so llama.cpp itself
would fall back for most tensors.

A sha256 of the tensor data is stored under `rlvr.tensor_data_sha256` (llama.cpp ignores unknown keys) so
integrity.py can reject a file whose bytes changed after writing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.export.llama_layout import gguf_tensors, hparams
from trainer.export.vocab import build_vocab

QUANTS = ("f16", "bf16", "q8_0")
SHA_KEY = "rlvr.tensor_data_sha256"


class GgufWriteError(ValueError):
    """The model cannot be written in the requested type (names the tensor)."""


@dataclass
class Written:
    path: Path
    n_tensors: int
    bytes: int
    types: dict[str, int]
    vocab: dict[str, Any]


def _qtypes(quant: str) -> tuple[Any, int]:
    from gguf import GGMLQuantizationType as Q
    from gguf import LlamaFileType as F

    table = {"f16": (Q.F16, F.MOSTLY_F16), "bf16": (Q.BF16, F.MOSTLY_BF16), "q8_0": (Q.Q8_0, F.MOSTLY_Q8_0)}
    if quant not in table:
        raise GgufWriteError(f"--quant {quant!r}: choose one of {', '.join(QUANTS)}")
    return table[quant]


def encode_tensor(name: str, data: np.ndarray, quant: str) -> tuple[np.ndarray, Any]:
    """(bytes as an array, GGML type) of one tensor for the requested quantization."""
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    if data.ndim == 1:
        return data.astype(np.float32), Q.F32
    qtype, _ = _qtypes(quant)
    if qtype == Q.Q8_0 and data.shape[-1] % 32:
        qtype = Q.F16
    if qtype == Q.F16 and np.abs(data).max() > np.finfo(np.float16).max:
        raise GgufWriteError(f"tensor {name}: values beyond the f16 range; export with --quant bf16")
    return quants.quantize(data, qtype), qtype


def write_gguf(model: Any, tok: Any, out: Path, quant: str = "f16", name: str = "") -> Written:
    """Write `model` (a merged HF LlamaForCausalLM) and `tok` to `out` atomically."""
    import gguf

    _, file_type = _qtypes(quant)
    config = model.config
    hp = hparams(config)
    vocab = build_vocab(tok, hp["vocab_size"])
    encoded = [(n, *encode_tensor(n, d, quant)) for n, d in gguf_tensors(model.state_dict(), config)]
    sha = hashlib.sha256()
    for _, data, _ in encoded:
        sha.update(np.ascontiguousarray(data).tobytes())

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(tmp, "llama")
    try:
        writer.add_name(name or out.stem)
        writer.add_file_type(int(file_type))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_context_length(hp["context_length"])
        writer.add_embedding_length(hp["embedding_length"])
        writer.add_block_count(hp["block_count"])
        writer.add_feed_forward_length(hp["feed_forward_length"])
        writer.add_head_count(hp["head_count"])
        writer.add_head_count_kv(hp["head_count_kv"])
        writer.add_rope_dimension_count(hp["rope_dimension_count"])
        writer.add_rope_freq_base(hp["rope_freq_base"])
        writer.add_layer_norm_rms_eps(hp["layer_norm_rms_eps"])
        writer.add_vocab_size(hp["vocab_size"])
        if hp["rope_dimension_count"] * hp["head_count"] != hp["embedding_length"]:
            writer.add_key_length(hp["rope_dimension_count"])
            writer.add_value_length(hp["rope_dimension_count"])
        vocab.add_to(writer)
        writer.add_string(SHA_KEY, sha.hexdigest())
        types: dict[str, int] = {}
        for tname, data, qtype in encoded:
            writer.add_tensor(tname, data, raw_dtype=qtype)
            types[qtype.name] = types.get(qtype.name, 0) + 1
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    return Written(out, len(encoded), out.stat().st_size, types, vocab.summary)
