"""Weight streams: splitting tensors into bounded chunks (client) and validating + assembling them (server).

A stream is a header followed by tensor chunks; each tensor arrives whole and in order of byte offset, so the
server only ever holds one chunk. Full updates are written straight into a pre-laid-out safetensors file
(the header is known from the model's own checkpoint, so every byte lands at its final offset with no
re-assembly copy); adapters are small and are assembled in memory. Everything is checked against the
expected names/shapes/dtypes before a single byte reaches the engine."""

from __future__ import annotations

import json
import math
import os
import stat
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlvr.v1 import rollout_pb2 as pb

CHUNK_BYTES = 4 * 1024 * 1024
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
ITEMSIZE = {"float32": 4, "bfloat16": 2, "float16": 2}
_ST_CODES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}
_ST_NAMES = {v: k for k, v in _ST_CODES.items()}


class WeightsError(ValueError):
    """The stream's content is wrong (bad name/shape/dtype/offset): INVALID_ARGUMENT."""


class IncompleteStreamError(WeightsError):
    """The stream ended early or carried fewer tensors than announced: ABORTED."""


class LocalPathUnavailableError(WeightsError):
    """A local_path push this server cannot take (disabled, or the file is not visible here): FAILED_PRECONDITION,
    on which the client falls back to streaming."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * ITEMSIZE[self.dtype]


# ---------------------------------------------------------------- client side: tensors -> chunks


def dtype_name(dtype: torch.dtype) -> str:
    if dtype not in DTYPE_NAMES:
        raise WeightsError(f"unsupported dtype {dtype}; use one of {sorted(DTYPES)}")
    return DTYPE_NAMES[dtype]


def byte_pieces(tensor: torch.Tensor, dtype: torch.dtype, piece_bytes: int) -> Iterator[tuple[int, memoryview]]:
    """`tensor` as `dtype`, in consecutive (byte offset, bytes) pieces of at most piece_bytes. A tensor already in
    `dtype` on the CPU is read in place; otherwise each piece is cast (and copied off the device) into one small
    reused buffer, so a push never holds a second full-size copy (float32 masters → bf16: one pass, no big
    allocation). A piece's memory is only valid until the next one is produced."""
    flat = tensor.detach().reshape(-1)
    if flat.dtype == dtype and flat.device.type == "cpu":
        raw = flat.contiguous().view(torch.uint8)
        for start in range(0, raw.numel(), piece_bytes):
            yield start, raw[start : start + piece_bytes].numpy().data
        return
    item = torch.empty((), dtype=dtype).element_size()
    step = max(1, piece_bytes // item)
    buf = torch.empty(min(step, flat.numel()), dtype=dtype)
    for start in range(0, flat.numel(), step):
        piece = buf[: min(step, flat.numel() - start)]
        piece.copy_(flat[start : start + piece.numel()])
        yield start * item, piece.view(torch.uint8).numpy().data


def tensor_chunks(
    name: str, tensor: torch.Tensor, chunk_bytes: int = CHUNK_BYTES, dtype: torch.dtype | None = None
) -> Iterator[pb.WeightsChunk]:
    """One tensor (cast to `dtype` piece by piece) as WeightsChunk messages of at most chunk_bytes each (at least
    one, even if empty)."""
    dtype = dtype if dtype is not None else tensor.dtype
    total = tensor.numel() * torch.empty((), dtype=dtype).element_size()
    code, shape = dtype_name(dtype), list(tensor.shape)

    def chunk(offset: int, data: bytes) -> pb.WeightsChunk:
        return pb.WeightsChunk(
            tensor=pb.TensorChunk(name=name, dtype=code, shape=shape, offset=offset, total_bytes=total, data=data)
        )

    if total == 0:
        yield chunk(0, b"")
    for offset, data in byte_pieces(tensor, dtype, chunk_bytes):
        yield chunk(offset, bytes(data))


def weight_stream(
    header: pb.WeightsHeader,
    tensors: Mapping[str, torch.Tensor],
    dtype: torch.dtype | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[pb.WeightsChunk]:
    """Header then every tensor's chunks, cast to `dtype` chunk by chunk (bounded memory)."""
    yield pb.WeightsChunk(header=header)
    for name, t in tensors.items():
        yield from tensor_chunks(name, t, chunk_bytes, dtype)


# ---------------------------------------------------------------- server side: checkpoint layout


def read_safetensors_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header: dict[str, Any] = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def checkpoint_specs(model_dir: Path) -> dict[str, TensorSpec]:
    """Names, dtypes and shapes of every tensor in an HF safetensors checkpoint (headers only, no data)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{model_dir}: no *.safetensors checkpoint")
    specs: dict[str, TensorSpec] = {}
    for f in files:
        for name, meta in read_safetensors_header(f).items():
            specs[name] = TensorSpec(name, _ST_CODES.get(meta["dtype"], meta["dtype"]), tuple(meta["shape"]))
    return specs


def with_dtype(specs: Mapping[str, TensorSpec], dtype: str) -> dict[str, TensorSpec]:
    return {n: TensorSpec(n, dtype, s.shape) for n, s in specs.items()}


def safetensors_layout(specs: Iterable[TensorSpec]) -> tuple[bytes, dict[str, int]]:
    """The serialized safetensors header for `specs` and each tensor's absolute file offset."""
    meta: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    rel: dict[str, int] = {}
    pos = 0
    for s in specs:
        meta[s.name] = {
            "dtype": _ST_NAMES[s.dtype],
            "shape": list(s.shape),
            "data_offsets": [pos, pos + s.nbytes],
        }
        rel[s.name] = pos
        pos += s.nbytes
    raw = json.dumps(meta, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors wants the data section 8-byte aligned
    head = struct.pack("<Q", len(raw)) + raw
    return head, {n: len(head) + p for n, p in rel.items()}


# ---------------------------------------------------------------- server side: assembly


class Sink:
    """Where validated chunk bytes go."""

    def write(self, spec: TensorSpec, offset: int, data: bytes) -> None:
        raise WeightsError("this stream accepts no tensor data")

    def close(self) -> None:
        """Release resources (called on success and on failure)."""


class SpillFileSink(Sink):
    """Writes into one pre-sized safetensors file laid out for `specs`; other names are dropped."""

    def __init__(self, path: Path, specs: Iterable[TensorSpec]) -> None:
        head, self.offsets = safetensors_layout(specs)
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        size = len(head) + sum(s.nbytes for s in specs)
        os.ftruncate(self.fd, size)
        os.pwrite(self.fd, head, 0)

    def write(self, spec: TensorSpec, offset: int, data: bytes) -> None:
        base = self.offsets.get(spec.name)
        if base is not None:
            os.pwrite(self.fd, data, base + offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class MemorySink(Sink):
    """Assembles each tensor in a bytearray (for adapters, which are small)."""

    def __init__(self, max_total_bytes: int) -> None:
        self.max_total_bytes = max_total_bytes
        self.buffers: dict[str, bytearray] = {}
        self.specs: dict[str, TensorSpec] = {}
        self.total = 0

    def write(self, spec: TensorSpec, offset: int, data: bytes) -> None:
        buf = self.buffers.get(spec.name)
        if buf is None:
            self.total += spec.nbytes
            if self.total > self.max_total_bytes:
                raise WeightsError(f"stream exceeds {self.max_total_bytes} bytes in total")
            buf = self.buffers[spec.name] = bytearray(spec.nbytes)
            self.specs[spec.name] = spec
        buf[offset : offset + len(data)] = data

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, buf in self.buffers.items():
            spec = self.specs[name]
            t = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
            out[name] = t.view(DTYPES[spec.dtype]).reshape(spec.shape).clone()
        return out


SpecFor = Callable[[pb.TensorChunk], TensorSpec]


class ChunkAssembler:
    """Validates a chunk sequence (order, offsets, sizes) and forwards the bytes to a sink.

    `spec_for` checks a tensor's first chunk against what the model expects and returns its spec (or
    raises WeightsError); later chunks of the same tensor must repeat name, dtype, shape and total size."""

    def __init__(self, spec_for: SpecFor, sink: Sink) -> None:
        self.spec_for = spec_for
        self.sink = sink
        self.done: set[str] = set()
        self.current: TensorSpec | None = None
        self.received = 0
        self.num_bytes = 0

    def feed(self, c: pb.TensorChunk) -> None:
        if self.current is None or c.name != self.current.name or c.name in self.done:
            self._begin(c)
        spec = self.current
        assert spec is not None
        if (c.dtype, tuple(c.shape), c.total_bytes) != (spec.dtype, spec.shape, spec.nbytes):
            raise WeightsError(f"{c.name}: dtype/shape/total_bytes changed between chunks")
        if c.offset != self.received:
            raise WeightsError(
                f"{c.name}: chunk at offset {c.offset}, expected {self.received} (chunks in order)"
            )
        if self.received + len(c.data) > spec.nbytes:
            raise WeightsError(f"{c.name}: chunk runs past the tensor's {spec.nbytes} bytes")
        self.sink.write(spec, c.offset, c.data)
        self.received += len(c.data)
        self.num_bytes += len(c.data)
        if self.received == spec.nbytes:
            self.done.add(spec.name)

    def _begin(self, c: pb.TensorChunk) -> None:
        if self.current is not None and self.current.name not in self.done:
            cur = self.current
            raise WeightsError(f"{cur.name}: {self.received} of {cur.nbytes} bytes sent before {c.name}")
        if c.name in self.done:
            raise WeightsError(f"{c.name}: sent twice")
        spec = self.spec_for(c)
        if c.total_bytes != spec.nbytes:
            raise WeightsError(
                f"{c.name}: total_bytes {c.total_bytes} != {spec.nbytes} for {spec.shape} {spec.dtype}"
            )
        self.current, self.received = spec, 0
        if spec.nbytes == 0:
            self.done.add(spec.name)

    def finish(self, num_tensors: int) -> None:
        """The stream ended: every announced tensor must be complete."""
        if self.current is not None and self.current.name not in self.done:
            raise IncompleteStreamError(
                f"stream ended inside {self.current.name} ({self.received} of {self.current.nbytes} bytes)"
            )
        if len(self.done) != num_tensors:
            raise IncompleteStreamError(
                f"stream carried {len(self.done)} tensors, header announced {num_tensors}"
            )


def check_chunk_against(spec: TensorSpec | None, c: pb.TensorChunk, what: str) -> TensorSpec:
    """Shared name/dtype/shape check with messages that say what was expected."""
    if spec is None:
        raise WeightsError(f"{c.name}: not a tensor of {what}")
    if c.dtype not in DTYPES:
        raise WeightsError(f"{c.name}: unknown dtype {c.dtype!r}; use one of {sorted(DTYPES)}")
    if c.dtype != spec.dtype:
        raise WeightsError(f"{c.name}: dtype {c.dtype}, the server expects {spec.dtype} (GetInfo.dtype)")
    if tuple(c.shape) != spec.shape:
        raise WeightsError(f"{c.name}: shape {list(c.shape)}, expected {list(spec.shape)}")
    return spec


# ---------------------------------------------------------------- co-located fast path: a file instead of chunks

LOCAL_SUFFIX = ".safetensors"
MAX_HEADER_BYTES = 64 * 1024 * 1024


def local_dir_id(path: Path) -> str:
    """Boot id + device + inode of a directory: equal on client and server iff they see the same directory."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "no-boot-id"
    st = os.stat(path)
    return f"{boot}:{st.st_dev}:{st.st_ino}"


def write_safetensors(path: Path, tensors: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None) -> int:
    """Write tensors as one safetensors file, cast to dtype piece by piece straight into the file (no full-size
    intermediate copy; see byte_pieces); returns its bytes."""
    specs = []
    for name, t in tensors.items():
        specs.append(TensorSpec(name, dtype_name(dtype if dtype is not None else t.dtype), tuple(t.shape)))
    head, offsets = safetensors_layout(specs)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, len(head) + sum(s.nbytes for s in specs))
        os.pwrite(fd, head, 0)
        for name, t in tensors.items():
            for offset, data in byte_pieces(t, dtype if dtype is not None else t.dtype, CHUNK_BYTES):
                os.pwrite(fd, data, offsets[name] + offset)
        return len(head) + sum(s.nbytes for s in specs)
    finally:
        os.close(fd)


def open_local_file(local_path: str, local_dir: Path) -> int:
    """Open a pushed file for reading, only if it is a regular file directly inside local_dir (no symlink
    anywhere, no `..`, no other directory): a client may name its own push, never another file of the server."""
    if not local_path or not os.path.isabs(local_path):
        raise WeightsError(f"local_path {local_path!r}: must be an absolute path")
    p = Path(local_path)
    if p.name != os.path.basename(local_path) or not p.name.endswith(LOCAL_SUFFIX) or p.name.startswith("."):
        raise WeightsError(f"local_path {local_path!r}: must name a *{LOCAL_SUFFIX} file")
    root = local_dir.resolve(strict=True)
    if os.path.normpath(local_path) != local_path or p.parent != root:
        raise WeightsError(f"local_path {local_path!r}: must be a file directly inside {root}")
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise LocalPathUnavailableError(f"local_path {local_path!r}: no such file on the server") from None
    except OSError as e:  # ELOOP: a symlink
        raise WeightsError(f"local_path {local_path!r}: cannot be opened ({e.strerror}; no symlinks)") from None

    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise WeightsError(f"local_path {local_path!r}: not a regular file with a single link")
    return fd


def check_local_file(fd: int, spec_for: Callable[[str, str, tuple[int, ...]], TensorSpec]) -> tuple[set[str], int]:
    """Validate an open safetensors file: header well-formed, every tensor checked by spec_for(name, dtype,
    shape) (raises WeightsError), byte ranges exactly tiling the data section. Returns (names, data bytes)."""
    size = os.fstat(fd).st_size
    raw = os.pread(fd, 8, 0)
    if len(raw) < 8:
        raise WeightsError("local file: shorter than a safetensors header")
    (n,) = struct.unpack("<Q", raw)
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise WeightsError(f"local file: header length {n} does not fit the file ({size} bytes)")
    try:
        meta = json.loads(os.pread(fd, n, 8))
    except (ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"local file: header is not JSON ({e})") from None
    if not isinstance(meta, dict):
        raise WeightsError("local file: header is not a JSON object")
    meta.pop("__metadata__", None)
    ranges = []
    for name, m in meta.items():
        try:
            code, shape, (begin, end) = m["dtype"], tuple(int(x) for x in m["shape"]), m["data_offsets"]
            begin, end = int(begin), int(end)
            if min(shape, default=0) < 0:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise WeightsError(f"{name}: malformed safetensors entry {m!r}") from None
        dtype = _ST_CODES.get(code, str(code))
        spec = spec_for(name, dtype, shape)
        if end - begin != spec.nbytes or begin < 0:
            raise WeightsError(f"{name}: data_offsets {[begin, end]} do not hold {spec.shape} {spec.dtype}")
        ranges.append((begin, end, name))
    pos = 0
    for begin, end, name in sorted(ranges):
        if begin != pos:
            raise WeightsError(f"{name}: data_offsets overlap or leave a gap at byte {pos}")
        pos = end
    if 8 + n + pos != size:
        raise WeightsError(f"local file: {size} bytes, header describes {8 + n + pos}")
    return set(meta), pos


def spec_check(expected: TensorSpec | None, name: str, dtype: str, shape: tuple[int, ...], what: str) -> TensorSpec:
    """check_chunk_against for a (name, dtype, shape) read from a file header."""
    return check_chunk_against(expected, pb.TensorChunk(name=name, dtype=dtype, shape=list(shape)), what)
