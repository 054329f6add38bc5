"""Reject a GGUF file that is not what the writer wrote: bad magic or header, a truncated tensor region,
missing llama metadata, or tensor bytes that no longer match the sha256 stored at write time.

Run before any reader touches the file: transformers' GGUF loader and llama.cpp may fail obscurely on such a
file or, worse, load changed weights without complaint."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.export.gguf_writer import SHA_KEY

REQUIRED_KEYS = (
    "general.architecture", "llama.block_count", "llama.embedding_length", "llama.attention.head_count",
    "tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
)  # fmt: skip


class GgufIntegrityError(ValueError):
    """The file is corrupted, truncated or incomplete (the message names the file and what is wrong)."""


@dataclass
class GgufSummary:
    path: Path
    n_tensors: int
    bytes: int
    metadata: dict[str, Any]


def _open(path: Path) -> Any:
    from gguf import GGUFReader

    if not path.is_file():
        raise GgufIntegrityError(f"{path}: no such file")
    try:
        return GGUFReader(path)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError, UnicodeDecodeError) as e:
        raise GgufIntegrityError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def check_gguf(path: Path, require_checksum: bool = True) -> GgufSummary:
    """Raise GgufIntegrityError unless `path` is a complete llama GGUF whose tensor bytes match its checksum."""
    path = Path(path)
    reader = _open(path)
    size = path.stat().st_size
    for key in REQUIRED_KEYS:
        if key not in reader.fields:
            raise GgufIntegrityError(f"{path}: metadata key {key!r} is missing")
    if _field(reader, "general.architecture") != "llama":
        raise GgufIntegrityError(f"{path}: general.architecture={_field(reader, 'general.architecture')!r}, "
                                 "expected 'llama'")  # fmt: skip
    n_layers = int(_field(reader, "llama.block_count"))
    names = {t.name for t in reader.tensors}
    for needed in ("token_embd.weight", "output_norm.weight", f"blk.{n_layers - 1}.ffn_down.weight"):
        if needed not in names:
            raise GgufIntegrityError(f"{path}: tensor {needed!r} is missing")
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        for t in reader.tensors:
            end = int(t.data_offset) + int(t.n_bytes)
            if end > size:
                raise GgufIntegrityError(f"{path}: truncated: tensor {t.name!r} ends at byte {end}, "
                                         f"the file has {size} bytes")  # fmt: skip
            fh.seek(int(t.data_offset))
            sha.update(fh.read(int(t.n_bytes)))
    stored = _field(reader, SHA_KEY)
    if stored is None and require_checksum:
        raise GgufIntegrityError(f"{path}: no {SHA_KEY} (not written by rlvr export, or its header was edited)")
    if stored is not None and stored != sha.hexdigest():
        raise GgufIntegrityError(f"{path}: corrupted: the tensor data's sha256 {sha.hexdigest()[:16]}... does not "
                                 f"match the {stored[:16]}... written at export")  # fmt: skip
    keep = ("general.name", "general.file_type", "tokenizer.ggml.pre", "tokenizer.ggml.bos_token_id",
            "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id", "llama.context_length")  # fmt: skip
    return GgufSummary(path, len(reader.tensors), size, {k: _field(reader, k) for k in keep})
