"""Weight streams without an engine: chunking, validation, assembly into a safetensors file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rlvr.v1 import rollout_pb2 as pb
from rollout.weights import (
    ChunkAssembler,
    IncompleteStreamError,
    MemorySink,
    SpillFileSink,
    TensorSpec,
    WeightsError,
    check_chunk_against,
    checkpoint_specs,
    tensor_chunks,
    weight_stream,
)


def _specs() -> dict[str, TensorSpec]:
    return {"a": TensorSpec("a", "bfloat16", (3, 5)), "b": TensorSpec("b", "float32", (7,))}


def _assembler(sink) -> ChunkAssembler:
    specs = _specs()
    return ChunkAssembler(lambda c: check_chunk_against(specs.get(c.name), c, "the test model"), sink)


def _chunks(tensors: dict[str, torch.Tensor], chunk_bytes: int = 8) -> list[pb.TensorChunk]:
    return [m.tensor for n, t in tensors.items() for m in tensor_chunks(n, t, chunk_bytes)]


def test_chunks_are_bounded_and_cover_the_tensor() -> None:
    t = torch.arange(10, dtype=torch.float32)
    chunks = [m.tensor for m in tensor_chunks("x", t, chunk_bytes=16)]
    assert [len(c.data) for c in chunks] == [16, 16, 8]
    assert [c.offset for c in chunks] == [0, 16, 32]
    assert all(c.total_bytes == 40 and list(c.shape) == [10] and c.dtype == "float32" for c in chunks)
    empty = list(tensor_chunks("e", torch.zeros(0, 4)))
    assert len(empty) == 1 and empty[0].tensor.total_bytes == 0


def test_stream_casts_one_tensor_at_a_time_and_starts_with_the_header() -> None:
    msgs = list(weight_stream(pb.WeightsHeader(version=3, num_tensors=1), {"w": torch.ones(2, 2)}, torch.bfloat16))
    assert msgs[0].HasField("header") and msgs[0].header.version == 3
    assert msgs[1].tensor.dtype == "bfloat16" and msgs[1].tensor.total_bytes == 8


def test_round_trip_through_a_spill_file(tmp_path: Path) -> None:
    tensors = {"a": torch.randn(3, 5).to(torch.bfloat16), "b": torch.randn(7)}
    sink = SpillFileSink(tmp_path / "model.safetensors", list(_specs().values()))
    asm = _assembler(sink)
    for c in _chunks(tensors, chunk_bytes=8):
        asm.feed(c)
    asm.finish(2)
    sink.close()
    back = load_file(str(tmp_path / "model.safetensors"))
    assert set(back) == {"a", "b"}
    assert torch.equal(back["a"], tensors["a"]) and torch.equal(back["b"], tensors["b"])
    assert asm.num_bytes == 3 * 5 * 2 + 7 * 4


def test_names_outside_the_layout_are_validated_but_not_written(tmp_path: Path) -> None:
    specs = [TensorSpec("a", "float32", (2,))]
    sink = SpillFileSink(tmp_path / "m.safetensors", specs)
    allowed = {"a": specs[0], "lm_head.weight": TensorSpec("lm_head.weight", "float32", (2,))}
    asm = ChunkAssembler(lambda c: check_chunk_against(allowed.get(c.name), c, "m"), sink)
    for c in _chunks({"a": torch.ones(2), "lm_head.weight": torch.zeros(2)}):
        asm.feed(c)
    asm.finish(2)
    sink.close()
    assert set(load_file(str(tmp_path / "m.safetensors"))) == {"a"}


@pytest.mark.parametrize(
    ("tensor", "name", "match"),
    [
        (torch.ones(3, 5, dtype=torch.bfloat16), "nope", "not a tensor of the test model"),
        (torch.ones(5, 3, dtype=torch.bfloat16), "a", r"shape \[5, 3\], expected \[3, 5\]"),
        (torch.ones(3, 5, dtype=torch.float32), "a", "dtype float32, the server expects bfloat16"),
    ],
)
def test_wrong_name_shape_dtype_rejected(tensor: torch.Tensor, name: str, match: str) -> None:
    asm = _assembler(MemorySink(1 << 20))
    with pytest.raises(WeightsError, match=match):
        asm.feed(_chunks({name: tensor})[0])


def test_bad_offsets_duplicates_and_interleaving_rejected() -> None:
    a = _chunks({"a": torch.ones(3, 5, dtype=torch.bfloat16)}, chunk_bytes=8)
    asm = _assembler(MemorySink(1 << 20))
    with pytest.raises(WeightsError, match="offset 8, expected 0"):
        asm.feed(a[1])
    asm = _assembler(MemorySink(1 << 20))
    asm.feed(a[0])
    with pytest.raises(WeightsError, match="bytes sent before b"):
        asm.feed(_chunks({"b": torch.ones(7)})[0])
    asm = _assembler(MemorySink(1 << 20))
    for c in a:
        asm.feed(c)
    with pytest.raises(WeightsError, match="sent twice"):
        asm.feed(a[0])
    bad = pb.TensorChunk()
    bad.CopyFrom(a[0])
    bad.total_bytes = 99
    with pytest.raises(WeightsError, match="total_bytes"):
        _assembler(MemorySink(1 << 20)).feed(bad)


def test_incomplete_streams_are_aborted() -> None:
    a = _chunks({"a": torch.ones(3, 5, dtype=torch.bfloat16)}, chunk_bytes=8)
    asm = _assembler(MemorySink(1 << 20))
    asm.feed(a[0])
    with pytest.raises(IncompleteStreamError, match="ended inside a"):
        asm.finish(1)
    asm = _assembler(MemorySink(1 << 20))
    for c in a:
        asm.feed(c)
    with pytest.raises(IncompleteStreamError, match="carried 1 tensors, header announced 2"):
        asm.finish(2)


def test_memory_sink_is_bounded_and_rebuilds_tensors() -> None:
    sink = MemorySink(max_total_bytes=64)
    asm = _assembler(sink)
    for c in _chunks({"b": torch.arange(7, dtype=torch.float32)}):
        asm.feed(c)
    assert torch.equal(sink.tensors()["b"], torch.arange(7, dtype=torch.float32))
    with pytest.raises(WeightsError, match="exceeds 16 bytes"):
        _assembler(MemorySink(max_total_bytes=16)).feed(_chunks({"b": torch.ones(7)})[0])


def test_checkpoint_specs_read_headers_only(tmp_path: Path) -> None:
    save_file({"x": torch.zeros(2, 3, dtype=torch.bfloat16), "y": torch.zeros(4)}, str(tmp_path / "m.safetensors"))
    specs = checkpoint_specs(tmp_path)
    assert specs["x"] == TensorSpec("x", "bfloat16", (2, 3)) and specs["y"].nbytes == 16
    with pytest.raises(FileNotFoundError):
        checkpoint_specs(tmp_path / "missing")
