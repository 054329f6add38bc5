"""The Rollout gRPC servicer: generation with version tags, and weight/adapter pushes that swap atomically.

Version policy (see rollout.gate): generations share the gate, swaps take it exclusively, and a waiting
swap holds back new generations. So a swap waits for the generations in flight (their samples carry the
old version), and every generation admitted after it carries the new version; no sample mixes two.

A push is received and validated completely before the engine is touched, so a bad or broken stream
leaves the old weights serving. A hard timeout bounds receiving + waiting for the gate; the engine swap
itself is shielded from cancellation (a half-applied reload would be worse than a late answer)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

from rlvr.v1 import rollout_pb2 as pb
from rlvr.v1 import rollout_pb2_grpc as pb_grpc
from rollout.adapters import Adapter, AdapterStore, adapter_spec, check_adapter_name, parse_adapter_config
from rollout.config import RolloutConfig
from rollout.engine import Engine
from rollout.gate import VersionGate, run_to_completion
from rollout.merge import AdapterMerger
from rollout.types import SamplingConfig, finish_reason_to_pb
from rollout.validation import RequestError, prompt_token_ids, sampling_from_proto
from rollout.weights import (
    ChunkAssembler,
    IncompleteStreamError,
    LocalPathUnavailableError,
    MemorySink,
    Sink,
    SpillFileSink,
    TensorSpec,
    WeightsError,
    check_chunk_against,
    check_local_file,
    checkpoint_specs,
    local_dir_id,
    open_local_file,
    spec_check,
    with_dtype,
)

log = logging.getLogger(__name__)
SPILL_PREFIX = "rlvr-rollout-"
StreamIn = AsyncIterator[pb.WeightsChunk]


def remove_orphaned_spill_dirs(root: Path) -> None:
    """Spill dirs of servers that died without cleaning up (kill -9) would pile up model copies."""
    for d in root.glob(f"{SPILL_PREFIX}*"):
        try:
            os.kill(int((d / "owner.pid").read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (OSError, ValueError):
            continue  # no readable pid file (yet), or not ours to judge


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_local_root() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else Path(tempfile.gettempdir())


def _next_version(header: pb.WeightsHeader, current: int) -> int:
    return header.version if header.HasField("version") else current + 1


def _no_chunks(c: pb.TensorChunk) -> TensorSpec:
    raise WeightsError("a local_path push carries no tensor chunks")


class RolloutServicer(pb_grpc.RolloutServicer):
    def __init__(self, cfg: RolloutConfig, server_id: str) -> None:
        assert cfg.model is not None
        self.cfg = cfg
        self.server_id = server_id
        self.engine: Engine | None = None
        self.version = 0
        self.gate = VersionGate()
        self._transfer = asyncio.Lock()  # one push at a time
        self.specs = checkpoint_specs(cfg.model)
        config = json.loads((cfg.model / "config.json").read_text())
        self.tied = bool(config.get("tie_word_embeddings", False))
        root = cfg.spill_dir or Path(tempfile.gettempdir())
        root.mkdir(parents=True, exist_ok=True)
        remove_orphaned_spill_dirs(root)
        self.spill_root = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX, dir=root))
        (self.spill_root / "owner.pid").write_text(str(os.getpid()))
        self.adapters = AdapterStore(self.spill_root / "adapters")
        self.lora_mode = "native"
        self.merger: AdapterMerger | None = None  # lora_mode=merge: adapters are folded into the weights
        self.weights_dir: Path | None = None
        # Co-located fast path: a private (0700) directory clients of the same user write pushed files into.
        self.local_dir: Path | None = None
        self.local_dir_id = ""
        if cfg.local_weights if cfg.local_weights is not None else is_loopback(cfg.host):
            local_root = cfg.local_weights_dir or default_local_root()
            local_root.mkdir(parents=True, exist_ok=True)
            if local_root.resolve() != root.resolve():
                remove_orphaned_spill_dirs(local_root)
            self.local_dir = Path(tempfile.mkdtemp(prefix=SPILL_PREFIX + "local-", dir=local_root)).resolve()
            (self.local_dir / "owner.pid").write_text(str(os.getpid()))
            self.local_dir_id = local_dir_id(self.local_dir)

    def attach(self, engine: Engine, lora_mode: str = "native") -> None:
        self.lora_mode = lora_mode
        if lora_mode == "merge":
            assert self.cfg.model is not None
            self.merger = AdapterMerger(self.cfg.model)
        self.engine = engine

    def cleanup(self) -> None:
        shutil.rmtree(self.spill_root, ignore_errors=True)
        if self.local_dir is not None:
            shutil.rmtree(self.local_dir, ignore_errors=True)

    async def _engine(self, context: grpc.aio.ServicerContext) -> Engine:
        if self.engine is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "engine is still loading; retry (health: NOT_SERVING)")
        assert self.engine is not None
        return self.engine

    # ------------------------------------------------------------------ info

    async def GetInfo(self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext) -> pb.InfoResponse:
        e = self.engine
        return pb.InfoResponse(
            model=str(self.cfg.model),
            engine=e.version if e else "loading",
            max_model_len=e.max_model_len if e else self.cfg.max_model_len,
            policy_version=self.version,
            adapters=self.adapters.names(),
            dtype=e.dtype if e else self.cfg.dtype,
            running_requests=e.num_running() if e else 0,
            server_id=self.server_id,
            local_dir=str(self.local_dir or ""),
            local_dir_id=self.local_dir_id,
        )

    # ------------------------------------------------------------------ generation

    async def Generate(self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext) -> pb.GenerateResponse:
        samples = [s async for s in self._samples(request, context)]
        samples.sort(key=lambda s: (s.prompt_index, s.sample_index))
        return pb.GenerateResponse(samples=samples)

    async def GenerateStream(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Sample]:
        async for s in self._samples(request, context):
            yield s

    async def _samples(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.Sample]:
        engine = await self._engine(context)
        try:
            if not request.prompts:
                raise RequestError("no prompts")
            params = sampling_from_proto(
                request.params, self.cfg.max_samples_per_request, len(request.prompts), seeds=engine.seeded_requests
            )
            prompts = [
                prompt_token_ids(p, i, engine.chat_token_ids, engine.vocab_size, engine.max_model_len)
                for i, p in enumerate(request.prompts)
            ]
            if request.adapter and request.adapter not in self.adapters.adapters:
                raise RequestError(f"unknown adapter {request.adapter!r}; loaded: {self.adapters.names() or 'none'}")
            if self.merger is not None and not request.adapter and self.adapters.adapters:
                raise RequestError(
                    f"lora_mode=merge: adapter {self.adapters.names()[0]!r} is merged into the served weights, so "
                    "the base model is not available until the next UpdateWeights; name the adapter"
                )
        except RequestError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            raise  # unreachable: abort raises
        async with self.gate.shared():
            version = self.version
            lora = self.adapters.adapters[request.adapter].request if request.adapter else None
            tasks = [
                asyncio.create_task(self._one(engine, request.prompts[pi].id, pi, si, ids, params, lora, version))
                for pi, ids in enumerate(prompts)
                for si in range(params.n)
            ]
            try:
                for fut in asyncio.as_completed(tasks):
                    yield await fut
            except ValueError as e:  # vLLM's own request validation
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
            finally:
                for t in tasks:
                    t.cancel()  # client gone: cancelling aborts the engine requests
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(
        self, engine: Engine, pid: str, pi: int, si: int, ids: list[int], params: SamplingConfig, lora: Any, v: int
    ) -> pb.Sample:
        # Sample i of a seeded request uses seed + i, so the n samples differ but are reproducible.
        seed = None if params.seed is None else params.seed + si
        c = await engine.generate(ids, params, seed, lora)
        return pb.Sample(
            prompt_id=pid,
            prompt_index=pi,
            sample_index=si,
            prompt_token_ids=ids,
            token_ids=c.token_ids,
            text=c.text,
            logprobs=c.logprobs,
            finish_reason=finish_reason_to_pb(c.finish_reason),  # type: ignore[arg-type]
            policy_version=v,
        )

    # ------------------------------------------------------------------ weight pushes

    async def UpdateWeights(self, request_iterator: StreamIn, context: grpc.aio.ServicerContext) -> pb.WeightsResponse:
        return await self._push(context, lambda deadline: self._update_weights(request_iterator, deadline))

    async def LoadAdapter(self, request_iterator: StreamIn, context: grpc.aio.ServicerContext) -> pb.WeightsResponse:
        return await self._push(context, lambda deadline: self._load_adapter(request_iterator, deadline))

    async def _push(
        self, context: grpc.aio.ServicerContext, run: Callable[[float], Awaitable[pb.WeightsResponse]]
    ) -> pb.WeightsResponse:
        """Common error mapping; the old weights keep serving on every error path."""
        await self._engine(context)
        deadline = asyncio.get_running_loop().time() + self.cfg.transfer_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                await self._transfer.acquire()
            try:
                return await run(deadline)
            finally:
                self._transfer.release()
        except IncompleteStreamError as e:
            await context.abort(grpc.StatusCode.ABORTED, str(e))
        except LocalPathUnavailableError as e:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        except WeightsError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        except TimeoutError:
            msg = f"transfer did not complete within {self.cfg.transfer_timeout_s:g}s; old weights kept"
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, msg)
        raise AssertionError("unreachable: abort raises")

    async def _receive(
        self, it: StreamIn, deadline: float, make: Callable[[pb.WeightsHeader], ChunkAssembler]
    ) -> tuple[pb.WeightsHeader, ChunkAssembler]:
        async with asyncio.timeout_at(deadline):
            try:
                first = await anext(aiter(it), None)
                if first is None or not first.HasField("header"):
                    raise WeightsError("the first message of a weights stream must be the header")
                header = first.header
                asm = make(header)
                try:
                    async for msg in it:
                        if not msg.HasField("tensor"):
                            raise WeightsError("only one header per stream")
                        asm.feed(msg.tensor)
                    if not header.local_path:
                        asm.finish(header.num_tensors)
                finally:
                    asm.sink.close()
            except WeightsError:
                # Read the rest before answering: a gRPC client whose send fails because the call already
                # ended reports a bare INTERNAL instead of our status (bounded by the deadline).
                async for _ in it:
                    pass
                raise
        return header, asm

    def _full_specs(self, dtype: str) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
        """(required, optional) tensors of a full update: every checkpoint tensor; lm_head if tied."""
        required = with_dtype(self.specs, dtype)
        optional = {}
        embed = required.get("model.embed_tokens.weight")
        if self.tied and embed is not None and "lm_head.weight" not in required:
            optional["lm_head.weight"] = TensorSpec("lm_head.weight", dtype, embed.shape)
        return required, optional

    async def _update_weights(self, it: StreamIn, deadline: float) -> pb.WeightsResponse:
        engine = self.engine
        assert engine is not None
        t0 = time.perf_counter()
        required, optional = self._full_specs(engine.dtype)
        new_dir = Path(tempfile.mkdtemp(prefix="weights-", dir=self.spill_root))
        local_path = ""
        keep = True
        try:

            def make(h: pb.WeightsHeader) -> ChunkAssembler:
                nonlocal local_path
                if h.adapter_name or h.adapter_config_json:
                    raise WeightsError("adapter fields in an UpdateWeights header; use LoadAdapter")
                if h.local_path:
                    local_path = h.local_path
                    return ChunkAssembler(_no_chunks, Sink())
                sink = SpillFileSink(new_dir / "model.safetensors", list(required.values()))
                what = "the model checkpoint"
                return ChunkAssembler(
                    lambda c: check_chunk_against(required.get(c.name, optional.get(c.name)), c, what), sink
                )

            try:
                header, asm = await self._receive(it, deadline, make)
                if local_path:
                    # The pushed file is staged on its own filesystem (a rename, no copy); new_dir moves there.
                    shutil.rmtree(new_dir, ignore_errors=True)
                    keep = False
                    new_dir, names, num_bytes = await asyncio.to_thread(
                        self._stage_local, local_path, required, optional
                    )
                    if header.num_tensors and header.num_tensors != len(names):
                        raise WeightsError(f"file holds {len(names)} tensors, header announced {header.num_tensors}")
                else:
                    names, num_bytes = asm.done, asm.num_bytes
            finally:
                if local_path and self._in_local_dir(local_path):
                    with contextlib.suppress(OSError):
                        os.unlink(local_path)  # whatever happened, the client's file does not outlive the call
            missing = sorted(set(required) - names)
            if missing:
                raise WeightsError(f"a full update needs every tensor; {len(missing)} missing, e.g. {missing[:3]}")
            async with self.gate.exclusive(deadline):
                await run_to_completion(engine.reload_weights(new_dir))
                old, self.weights_dir = self.weights_dir, new_dir
                self.version = _next_version(header, self.version)
                if self.merger is not None:
                    self.adapters.adapters.clear()  # the pushed weights replace whatever adapter was merged
            if self.merger is not None:  # later merges start from them (pushes are serialised: no race)
                await asyncio.to_thread(self.merger.set_base, new_dir / "model.safetensors")
        except BaseException:
            shutil.rmtree(new_dir, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if not keep:  # a co-located push: the reloaded copy is not kept in (shared) memory
            shutil.rmtree(new_dir, ignore_errors=True)
            self.weights_dir = None
        log.info(
            "weights v%d: %d tensors, %.1f MB in %.2fs%s",
            self.version,
            len(names),
            num_bytes / 1e6,
            time.perf_counter() - t0,
            " (local file)" if local_path else "",
        )
        return pb.WeightsResponse(
            policy_version=self.version,
            num_tensors=len(names),
            num_bytes=num_bytes,
            duration_s=time.perf_counter() - t0,
        )

    def _in_local_dir(self, path: str) -> bool:
        """Directly inside local_dir by name (unlink never follows a symlink, so removing it is safe)."""
        return (
            self.local_dir is not None
            and os.path.isabs(path)
            and os.path.normpath(path) == path
            and Path(path).parent == self.local_dir
        )

    def _stage_local(
        self, local_path: str, required: dict[str, TensorSpec], optional: dict[str, TensorSpec]
    ) -> tuple[Path, set[str], int]:
        """Take over a co-located client's file: open it (inside local_dir only, no symlinks), move it into a
        fresh directory of its own (vLLM reloads a directory), and check its header like a streamed push."""
        if self.local_dir is None:
            raise LocalPathUnavailableError("this server does not accept local_path pushes (--local-weights)")
        fd = open_local_file(local_path, self.local_dir)
        stage = Path(tempfile.mkdtemp(prefix=".weights-", dir=self.local_dir))
        try:
            target = stage / "model.safetensors"
            os.rename(local_path, target)
            if os.stat(target).st_ino != os.fstat(fd).st_ino:
                raise WeightsError(f"local_path {local_path!r} was replaced while being taken over")
            what = "the model checkpoint"
            names, num_bytes = check_local_file(
                fd, lambda n, d, shape: spec_check(required.get(n, optional.get(n)), n, d, shape, what)
            )
            return stage, names, num_bytes
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        finally:
            os.close(fd)

    async def _load_adapter(self, it: StreamIn, deadline: float) -> pb.WeightsResponse:
        engine = self.engine
        assert engine is not None
        if not self.cfg.enable_lora:
            raise WeightsError("this server was started without --enable-lora")
        t0 = time.perf_counter()
        max_rank = self.cfg.max_lora_rank
        cfg: dict[str, Any] = {}
        base_bytes = sum(s.nbytes for s in self.specs.values())

        def make(h: pb.WeightsHeader) -> ChunkAssembler:
            if h.local_path:
                raise WeightsError("local_path is only for UpdateWeights")
            check_adapter_name(h.adapter_name)
            cfg.update(parse_adapter_config(h.adapter_config_json, max_rank))
            return ChunkAssembler(lambda c: adapter_spec(c, cfg, self.specs, max_rank), MemorySink(base_bytes))

        header, asm = await self._receive(it, deadline, make)
        if not asm.done:
            raise WeightsError("an adapter needs at least one lora_A/lora_B tensor")
        names = {n.replace(".lora_A", ".lora_X").replace(".lora_B", ".lora_X") for n in asm.done}
        if len(names) * 2 != len(asm.done):
            raise WeightsError("every lora_A needs its lora_B (and vice versa)")
        assert isinstance(asm.sink, MemorySink)
        serve = self._merge_adapter if self.merger is not None else self._serve_adapter
        await serve(engine, header, cfg, asm.sink.tensors(), deadline)
        return pb.WeightsResponse(
            policy_version=self.version,
            num_tensors=len(asm.done),
            num_bytes=asm.num_bytes,
            duration_s=time.perf_counter() - t0,
        )

    async def _serve_adapter(
        self, engine: Engine, header: pb.WeightsHeader, cfg: dict[str, Any], tensors: dict[str, Any], deadline: float
    ) -> None:
        """lora_mode=native: a fresh peft directory and LoRA id, activated through vLLM's LoRA layers."""
        path = self.adapters.write(header.adapter_name, cfg, tensors)
        try:
            new = Adapter(header.adapter_name, self.adapters.new_id(), path, 0)
            new.request = engine.lora_request(new.name, new.lora_id, path)
            async with self.gate.exclusive(deadline):
                await run_to_completion(self._activate_adapter(engine, new, _next_version(header, self.version)))
        except BaseException:
            AdapterStore.discard(path)
            raise

    async def _merge_adapter(
        self, engine: Engine, header: pb.WeightsHeader, cfg: dict[str, Any], tensors: dict[str, Any], deadline: float
    ) -> None:
        """lora_mode=merge: base + adapter written as full weights (generation goes on meanwhile), then swapped
        in like a full update. The adapter replaces whichever one was merged before."""
        assert self.merger is not None
        out_dir = Path(tempfile.mkdtemp(prefix="merged-", dir=self.local_dir or self.spill_root))
        try:
            await asyncio.to_thread(self.merger.write_merged, out_dir / "model.safetensors", cfg, tensors, engine.dtype)
            async with self.gate.exclusive(deadline):
                await run_to_completion(engine.reload_weights(out_dir))
                self.version = _next_version(header, self.version)
                self.adapters.adapters = {header.adapter_name: Adapter(header.adapter_name, 0, None, self.version)}
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        log.info("adapter %s v%d merged into the served weights", header.adapter_name, self.version)

    async def _activate_adapter(self, engine: Engine, new: Adapter, version: int) -> None:
        try:
            await engine.add_lora(new.request)
        except Exception as e:  # vLLM rejected it (e.g. an unsupported target module): old version stays
            raise WeightsError(f"the engine rejected adapter {new.name}: {e}") from None
        new.version = self.version = version
        old = self.adapters.replace(new)
        if old is not None:
            await engine.remove_lora(old.lora_id)
            AdapterStore.discard(old.path)
        log.info("adapter %s v%d loaded as lora id %d", new.name, new.version, new.lora_id)
