"""Weight streams without an engine: chunking, validation, assembly into a safetensors file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rlvr.v1 import rollout_pb2 as pb
from rollout.weights import (
    ChunkAssembler,
    IncompleteStreamError,
    LocalPathUnavailableError,
    MemorySink,
    SpillFileSink,
    TensorSpec,
    WeightsError,
    byte_pieces,
    check_chunk_against,
    check_local_file,
    checkpoint_specs,
    local_dir_id,
    open_local_file,
    safetensors_layout,
    spec_check,
    tensor_chunks,
    weight_stream,
    with_dtype,
    write_safetensors,
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


# ---------------------------------------------------------------- co-located fast path (a file instead of chunks)


def _fspecs() -> dict[str, TensorSpec]:
    return {"a": TensorSpec("a", "float32", (3, 4)), "b": TensorSpec("b", "float32", (5,))}


def _check(path: Path, specs: dict[str, TensorSpec]) -> tuple[set[str], int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return check_local_file(fd, lambda n, d, s: spec_check(specs.get(n), n, d, s, "the model"))
    finally:
        os.close(fd)


def test_written_file_round_trips_and_validates(tmp_path: Path) -> None:
    tensors = {"a": torch.randn(3, 4), "b": torch.randn(5)}
    path = tmp_path / "push.safetensors"
    size = write_safetensors(path, tensors, torch.bfloat16)
    assert path.stat().st_size == size and path.stat().st_mode & 0o777 == 0o600
    back = load_file(path)
    assert back["a"].dtype == torch.bfloat16 and torch.equal(back["a"], tensors["a"].to(torch.bfloat16))
    names, nbytes = _check(path, with_dtype(_fspecs(), "bfloat16"))
    assert names == {"a", "b"} and nbytes == 17 * 2
    with pytest.raises(FileExistsError):  # never overwrites (O_EXCL)
        write_safetensors(path, tensors)


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        ({"a": torch.randn(4, 3), "b": torch.randn(5)}, "shape"),
        ({"a": torch.randn(3, 4).half(), "b": torch.randn(5)}, "dtype"),
        ({"a": torch.randn(3, 4), "zzz": torch.randn(5)}, "not a tensor of"),
    ],
)
def test_file_with_wrong_name_shape_dtype_rejected(tmp_path: Path, tensors, match: str) -> None:
    path = tmp_path / "push.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(WeightsError, match=match):
        _check(path, _fspecs())


def test_file_with_bad_offsets_or_size_rejected(tmp_path: Path) -> None:
    path = tmp_path / "push.safetensors"
    write_safetensors(path, {"a": torch.randn(3, 4), "b": torch.randn(5)})
    with path.open("ab") as f:
        f.write(b"\0" * 4)  # trailing bytes the header does not describe
    with pytest.raises(WeightsError, match="header describes"):
        _check(path, _fspecs())
    path.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(WeightsError, match="header length"):
        _check(path, _fspecs())
    head, _ = safetensors_layout([TensorSpec("a", "float32", (3, 4)), TensorSpec("b", "float32", (5,))])
    overlapping = head.replace(b'"data_offsets":[48,68]', b'"data_offsets":[40,60]')
    assert overlapping != head
    path.write_bytes(overlapping + b"\0" * 68)
    with pytest.raises(WeightsError, match="overlap"):
        _check(path, _fspecs())


def test_local_files_only_directly_inside_the_local_dir(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    good = local / "push.safetensors"
    write_safetensors(good, {"b": torch.randn(5)})
    os.close(open_local_file(str(good.resolve()), local))
    outside = tmp_path / "secret.safetensors"
    outside.write_bytes(b"x")
    (local / "sub").mkdir()
    (local / "sub" / "x.safetensors").write_bytes(b"x")
    (local / "link.safetensors").symlink_to(outside)
    (local / "hard.safetensors").hardlink_to(outside)
    (tmp_path / "dirlink").symlink_to(local)
    root = str(local.resolve())
    for bad, match in [
        ("relative.safetensors", "absolute"),
        (str(outside), "directly inside"),
        (f"{root}/../secret.safetensors", "directly inside"),
        (f"{root}/sub/x.safetensors", "directly inside"),
        (str(tmp_path / "dirlink" / "push.safetensors"), "directly inside"),
        (f"{root}/link.safetensors", "symlink"),
        (f"{root}/hard.safetensors", "single link"),
        (f"{root}/owner.pid", "safetensors"),
        ("/etc/passwd", "safetensors"),
    ]:
        with pytest.raises(WeightsError, match=match):
            os.close(open_local_file(bad, local))
    with pytest.raises(LocalPathUnavailableError):
        open_local_file(f"{root}/missing.safetensors", local)
    assert outside.read_bytes() == b"x"


def test_local_dir_id_identifies_the_directory(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert local_dir_id(tmp_path / "a") == local_dir_id(tmp_path / "a") != local_dir_id(tmp_path / "b")


def test_local_weights_default_on_only_for_loopback_binds() -> None:
    from rollout.servicer import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.1.2.3", "example.org", ""))


def test_casts_go_piece_by_piece_into_the_file_and_the_stream(tmp_path: Path) -> None:
    """float32 masters → bf16 through a small reused buffer (pieces smaller than a tensor, a transposed view,
    an empty tensor): the file and the streamed chunks hold exactly tensor.to(bfloat16)."""
    g = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(37, 11, generator=g), "t": torch.randn(6, 5, generator=g).t(), "e": torch.zeros(0)}
    pieces = list(byte_pieces(tensors["w"], torch.bfloat16, piece_bytes=64))
    assert [o for o, _ in pieces] == list(range(0, 37 * 11 * 2, 64)) and all(len(d) <= 64 for _, d in pieces)
    write_safetensors(tmp_path / "w.safetensors", tensors, torch.bfloat16)
    got = load_file(tmp_path / "w.safetensors")
    for name, t in tensors.items():
        assert got[name].dtype == torch.bfloat16 and torch.equal(got[name], t.to(torch.bfloat16))
    for name, t in tensors.items():
        chunks = [m.tensor for m in tensor_chunks(name, t, chunk_bytes=50, dtype=torch.bfloat16)]
        data = b"".join(c.data for c in chunks)
        want = t.to(torch.bfloat16).contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        assert data == want and all(c.total_bytes == len(want) and c.dtype == "bfloat16" for c in chunks)
