"""RolloutClient: the trainer's handle on one or more rollout replicas.

- generate() splits a prompt batch over the ready replicas (least-loaded first, by GetInfo.running_requests
  plus this client's own in-flight calls, or round-robin) and merges the samples back in prompt order.
- Every call has a deadline; UNAVAILABLE (server down, restarting, engine still loading) is retried with
  exponential backoff, on a fresh channel and possibly another replica, so a restarted server is picked up.
- update_weights()/load_adapter() push to all replicas concurrently and verify the version each reports.
  A replica that shares this machine's filesystem (GetInfo.local_dir, checked by device/inode/boot id) gets
  the full weights as one safetensors file written into its local_dir (/dev/shm by default) and only the
  file's path over gRPC; anything else (or a server that cannot see the file) gets the chunked stream.
- restarted() names replicas whose server_id changed since last seen: they lost pushed weights/adapters."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from rlvr.channel import aio_channel, auth_metadata
from rlvr.v1 import rollout_pb2 as pb
from rlvr.v1 import rollout_pb2_grpc as pb_grpc
from rollout.types import PromptInput, Sample, SamplingConfig, ServerInfo, WeightsResult, as_prompt
from rollout.weights import CHUNK_BYTES, DTYPES, local_dir_id, weight_stream, write_safetensors

log = logging.getLogger(__name__)
T = TypeVar("T")
SERVICE = "rlvr.v1.Rollout"
RETRYABLE = (grpc.StatusCode.UNAVAILABLE,)
RETRYABLE_INFO = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
PromptLike = PromptInput | dict[str, Any] | list[int] | str


async def send_stream(call: Any, messages: Iterable[Any]) -> Any:
    """Write a client stream message by message (flow-controlled: one chunk in flight at a time) and return
    the response. If the server rejects the stream early, the remaining writes fail and the server's own
    status is raised (passing an iterator instead can surface as a bare INTERNAL send error)."""
    try:
        for m in messages:
            await call.write(m)
        await call.done_writing()
    except (asyncio.InvalidStateError, grpc.aio.AioRpcError):
        pass  # the call is over; awaiting it below raises the real status
    return await call


class RolloutError(RuntimeError):
    """A rollout call failed for good (after retries, or with a non-retryable status)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, address: str = "") -> None:
        super().__init__(f"{address}: {message}" if address else message)
        self.code = code
        self.address = address


@dataclass
class _Replica:
    address: str
    channel: grpc.aio.Channel
    stub: pb_grpc.RolloutStub
    health: health_pb2_grpc.HealthStub
    server_id: str | None = None
    inflight: int = 0
    load: int = 0


@dataclass
class _Shard:
    """Prompts of one Generate call, with their positions in the caller's list."""

    indices: list[int]
    prompts: list[PromptInput]
    done: dict[int, set[int]] = field(default_factory=dict)  # local prompt index -> sample indices delivered


class RolloutClient:
    """Client for one or several rollout replicas; see the module docstring."""

    def __init__(
        self,
        addresses: str | Sequence[str],
        token: str | None = None,
        tls_ca: Path | None = None,
        balance: str = "least_loaded",
        timeout_s: float = 600.0,
        transfer_timeout_s: float = 600.0,
        retry_s: float = 180.0,
        backoff_s: float = 0.25,
        max_backoff_s: float = 5.0,
        chunk_bytes: int = CHUNK_BYTES,
        local_weights: bool = True,
    ) -> None:
        if balance not in ("least_loaded", "round_robin"):
            raise ValueError(f"balance must be least_loaded or round_robin, not {balance!r}")
        addrs = [addresses] if isinstance(addresses, str) else list(addresses)
        if not addrs:
            raise ValueError("at least one rollout address is needed")
        self.token, self.tls_ca, self.balance = token, tls_ca, balance
        self.timeout_s, self.transfer_timeout_s = timeout_s, transfer_timeout_s
        self.retry_s, self.backoff_s, self.max_backoff_s = retry_s, backoff_s, max_backoff_s
        self.chunk_bytes = chunk_bytes
        self.local_weights = local_weights  # use a co-located replica's local_dir for full updates
        self._metadata = auth_metadata(token)
        self._replicas = [self._connect(a) for a in addrs]
        self._rr = itertools.count()
        self._restarted: set[str] = set()

    # ------------------------------------------------------------------ connections

    def _connect(self, address: str, old: _Replica | None = None) -> _Replica:
        channel = aio_channel(address, self.tls_ca)
        rep = _Replica(address, channel, pb_grpc.RolloutStub(channel), health_pb2_grpc.HealthStub(channel))
        if old is not None:
            rep.server_id, rep.inflight = old.server_id, old.inflight
        return rep

    async def _reconnect(self, rep: _Replica) -> None:
        # A fresh channel skips gRPC's growing reconnect backoff (up to 120 s) after a server restart.
        if rep not in self._replicas:
            return
        fresh = self._connect(rep.address, rep)
        self._replicas[self._replicas.index(rep)] = fresh
        await rep.channel.close()

    def _current(self, rep: _Replica) -> _Replica:
        return next((r for r in self._replicas if r.address == rep.address), rep)

    def _observe(self, rep: _Replica, server_id: str) -> None:
        if rep.server_id is not None and server_id and rep.server_id != server_id:
            log.warning("rollout replica %s restarted (server_id %s -> %s)", rep.address, rep.server_id, server_id)
            self._restarted.add(rep.address)
        rep.server_id = server_id or rep.server_id

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(min(self.max_backoff_s, self.backoff_s * 2**attempt))

    async def _retrying(self, op: Callable[[_Replica], Awaitable[T]], pick: Callable[[], Awaitable[_Replica]]) -> T:
        """Run op on a picked replica; on UNAVAILABLE reconnect, back off and pick again for up to retry_s
        (long enough for a restarted server to load its engine)."""
        give_up = time.monotonic() + self.retry_s
        for attempt in itertools.count():
            try:
                rep = await pick()
                return await op(rep)
            except RolloutError as e:  # no replica ready right now
                if e.code not in RETRYABLE or time.monotonic() > give_up:
                    raise
                log.info("no rollout replica ready (%s); retrying", e)
            except grpc.aio.AioRpcError as e:
                if e.code() not in RETRYABLE:
                    raise RolloutError(e.details() or str(e.code()), e.code(), rep.address) from None
                if time.monotonic() > give_up:
                    raise RolloutError(
                        f"unavailable for {self.retry_s:.0f}s: {e.details()}", e.code(), rep.address
                    ) from None
                log.info("rollout %s unavailable (%s); retry %d", rep.address, e.details(), attempt + 1)
                await self._reconnect(rep)
            await self._backoff(attempt)
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ info and readiness

    async def _info_one(self, rep: _Replica, timeout_s: float = 5.0) -> ServerInfo:
        m = await rep.stub.GetInfo(pb.GetInfoRequest(), timeout=timeout_s, metadata=self._metadata)
        self._observe(rep, m.server_id)
        rep.load = m.running_requests
        return ServerInfo.from_proto(rep.address, m)

    async def info(self) -> list[ServerInfo]:
        """GetInfo of every replica (retrying unavailable ones), in address order."""

        async def one(rep: _Replica) -> ServerInfo:
            return await self._retrying(lambda r: self._info_one(r), self._fixed(rep))

        return list(await asyncio.gather(*(one(r) for r in self._replicas)))

    def _fixed(self, rep: _Replica) -> Callable[[], Awaitable[_Replica]]:
        async def pick() -> _Replica:
            return self._current(rep)

        return pick

    async def _is_serving(self, rep: _Replica) -> bool:
        try:
            r = await rep.health.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2.0)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                await self._reconnect(rep)
            return False
        return bool(r.status == health_pb2.HealthCheckResponse.SERVING)

    async def wait_ready(self, timeout_s: float = 300.0) -> list[ServerInfo]:
        """Wait until every replica's health reports SERVING (engine loaded); returns their info."""
        deadline = time.monotonic() + timeout_s
        while True:
            states = await asyncio.gather(*(self._is_serving(r) for r in list(self._replicas)))
            if all(states):
                return await self.info()
            if time.monotonic() > deadline:
                down = [r.address for r, ok in zip(self._replicas, states, strict=True) if not ok]
                raise TimeoutError(f"rollout replicas not serving after {timeout_s:.0f}s: {down}")
            await asyncio.sleep(0.25)

    async def restarted(self) -> list[str]:
        """Addresses whose server_id changed since last seen (their weights/adapters need a re-push).

        Polls every reachable replica; each restart is reported once."""
        await asyncio.gather(*(self._info_one(r) for r in self._replicas), return_exceptions=True)
        out, self._restarted = sorted(self._restarted), set()
        return out

    # ------------------------------------------------------------------ generation

    async def _ranked(self) -> list[_Replica]:
        """Replicas that answer GetInfo, best first."""
        reps = list(self._replicas)
        got = await asyncio.gather(*(self._info_one(r, 2.0) for r in reps), return_exceptions=True)
        up = [r for r, g in zip(reps, got, strict=True) if isinstance(g, ServerInfo) and g.engine != "loading"]
        if not up:
            # A wrong token or TLS setup is not going to fix itself: report it instead of retrying.
            fatal = [g for g in got if isinstance(g, grpc.aio.AioRpcError) and g.code() not in RETRYABLE_INFO]
            if fatal and len(fatal) == len(reps):
                raise RolloutError(fatal[0].details() or str(fatal[0].code()), fatal[0].code())
            raise RolloutError("no rollout replica is reachable and ready", grpc.StatusCode.UNAVAILABLE)
        if self.balance == "round_robin":
            k = next(self._rr) % len(up)
            return up[k:] + up[:k]
        return sorted(up, key=lambda r: r.load + r.inflight)

    async def _pick(self) -> _Replica:
        return (await self._ranked())[0]

    async def _shards(self, prompts: list[PromptInput]) -> list[tuple[_Shard, _Replica | None]]:
        try:
            ranked = await self._ranked()
        except RolloutError:
            ranked = []  # each shard's retry loop waits for a replica
        k = max(1, min(len(ranked), len(prompts)))
        size = math.ceil(len(prompts) / k)
        out: list[tuple[_Shard, _Replica | None]] = []
        for j, start in enumerate(range(0, len(prompts), size)):
            idx = list(range(start, min(start + size, len(prompts))))
            out.append((_Shard(idx, [prompts[i] for i in idx]), ranked[j] if ranked else None))
        return out

    @staticmethod
    def _todo(shard: _Shard, n: int) -> list[int]:
        # After a broken stream only prompts still missing samples are asked for again.
        return [i for i in range(len(shard.prompts)) if len(shard.done.get(i, ())) < n]

    async def _run_shard(
        self,
        shard: _Shard,
        first: _Replica | None,
        params: SamplingConfig,
        adapter: str | None,
        emit: Callable[[Sample], None],
    ) -> None:
        n = max(1, params.n)
        first_pick: list[_Replica | None] = [first]

        async def pick() -> _Replica:
            rep = first_pick.pop() if first_pick else None
            return self._current(rep) if rep is not None else await self._pick()

        async def op(rep: _Replica) -> None:
            todo = self._todo(shard, n)
            req = pb.GenerateRequest(
                prompts=[shard.prompts[i].to_proto() for i in todo],
                params=params.to_proto(),
                adapter=adapter or "",
            )
            rep.inflight += 1
            try:
                call = rep.stub.GenerateStream(req, timeout=self.timeout_s, metadata=self._metadata)
                async for s in call:
                    local = todo[s.prompt_index]
                    seen = shard.done.setdefault(local, set())
                    if s.sample_index in seen:
                        continue
                    seen.add(s.sample_index)
                    sample = Sample.from_proto(s)
                    sample.prompt_index = shard.indices[local]
                    emit(sample)
            finally:
                rep.inflight -= 1

        await self._retrying(op, pick)

    async def generate_stream(
        self, prompts: Sequence[PromptLike], params: SamplingConfig | None = None, adapter: str | None = None
    ) -> AsyncIterator[Sample]:
        """Samples as each finishes (any order); prompt_index refers to the caller's list."""
        params = params or SamplingConfig()
        items = [as_prompt(p, i) for i, p in enumerate(prompts)]
        if not items:
            return
        queue: asyncio.Queue[Sample | BaseException | None] = asyncio.Queue()
        shards = await self._shards(items)

        async def run(shard: _Shard, rep: _Replica | None) -> None:
            try:
                await self._run_shard(shard, rep, params, adapter, queue.put_nowait)
                queue.put_nowait(None)
            except BaseException as e:  # handed to the consumer, which re-raises it
                queue.put_nowait(e)

        tasks = [asyncio.create_task(run(s, r)) for s, r in shards]
        try:
            pending = len(tasks)
            while pending:
                item = await queue.get()
                if item is None:
                    pending -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def generate(
        self, prompts: Sequence[PromptLike], params: SamplingConfig | None = None, adapter: str | None = None
    ) -> list[Sample]:
        """All samples, ordered by (prompt_index, sample_index)."""
        out = [s async for s in self.generate_stream(prompts, params, adapter)]
        return sorted(out, key=lambda s: (s.prompt_index, s.sample_index))

    # ------------------------------------------------------------------ weight sync

    async def _push(
        self, kind: str, send: Callable[[_Replica, ServerInfo], Awaitable[pb.WeightsResponse]], version: int | None
    ) -> list[WeightsResult]:
        async def one(rep: _Replica) -> WeightsResult:
            async def op(r: _Replica) -> WeightsResult:
                info = await self._info_one(r)
                return WeightsResult.from_proto(r.address, await send(r, info))

            res = await self._retrying(op, self._fixed(rep))
            if version is not None and res.policy_version != version:
                raise RolloutError(
                    f"{kind}: replica reports version {res.policy_version}, pushed {version}",
                    address=rep.address,
                )
            return res

        results = list(await asyncio.gather(*(one(r) for r in self._replicas)))
        # Verify independently of the push's own answer, and take each server_id as the new baseline.
        for info in await self.info():
            want = version if version is not None else max(r.policy_version for r in results)
            if info.policy_version != want:
                raise RolloutError(
                    f"{kind}: replica at version {info.policy_version} after the push, want {want}",
                    address=info.address,
                )
        return results

    async def _stream(self, r: _Replica, kind: str, messages: Iterable[pb.WeightsChunk]) -> pb.WeightsResponse:
        call = getattr(r.stub, kind)(timeout=self.transfer_timeout_s, metadata=self._metadata)
        resp: pb.WeightsResponse = await send_stream(call, messages)
        return resp

    def _shares_local_dir(self, info: ServerInfo) -> bool:
        if not (self.local_weights and info.local_dir and info.local_dir_id):
            return False
        try:
            return local_dir_id(Path(info.local_dir)) == info.local_dir_id and os.access(info.local_dir, os.W_OK)
        except OSError:
            return False

    async def _push_local(
        self, r: _Replica, info: ServerInfo, tensors: Mapping[str, torch.Tensor], version: int | None
    ) -> pb.WeightsResponse | None:
        """The co-located fast path; None when it is not possible after all (then the caller streams)."""
        path = Path(info.local_dir) / f"push-{uuid.uuid4().hex}.safetensors"
        try:
            await asyncio.to_thread(write_safetensors, path, tensors, DTYPES.get(info.dtype))
            header = pb.WeightsHeader(version=version, num_tensors=len(tensors), local_path=str(path))
            return await self._stream(r, "UpdateWeights", [pb.WeightsChunk(header=header)])
        except OSError as e:
            log.warning("cannot write weights into %s (%s); streaming them instead", info.local_dir, e)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            log.warning("%s cannot take a local weights file (%s); streaming them instead", r.address, e.details())
        finally:
            path.unlink(missing_ok=True)  # the server removes it; this covers failures before it got it
        return None

    async def update_weights(self, tensors: Mapping[str, torch.Tensor], version: int | None = None) -> int:
        """Push a full HF state dict to every replica (cast to each replica's dtype); returns the version
        (`version`, or each server's current + 1 when None).

        Co-located replicas get it as a file in their local_dir (see the module docstring), others streamed."""

        async def send(r: _Replica, info: ServerInfo) -> pb.WeightsResponse:
            if self._shares_local_dir(info):
                resp = await self._push_local(r, info, tensors, version)
                if resp is not None:
                    return resp
            header = pb.WeightsHeader(version=version, num_tensors=len(tensors))
            return await self._stream(
                r, "UpdateWeights", weight_stream(header, tensors, DTYPES.get(info.dtype), self.chunk_bytes)
            )

        results = await self._push("UpdateWeights", send, version)
        return results[0].policy_version

    async def load_adapter(
        self,
        name: str,
        adapter_config: Mapping[str, Any],
        tensors: Mapping[str, torch.Tensor],
        version: int | None = None,
    ) -> int:
        """Hot-load a peft LoRA adapter (peft tensor names) on every replica; returns the version (as for
        update_weights)."""
        config_json = json.dumps(dict(adapter_config), default=list)

        async def send(r: _Replica, info: ServerInfo) -> pb.WeightsResponse:
            header = pb.WeightsHeader(
                version=version, num_tensors=len(tensors), adapter_name=name, adapter_config_json=config_json
            )
            return await self._stream(r, "LoadAdapter", weight_stream(header, tensors, None, self.chunk_bytes))

        results = await self._push("LoadAdapter", send, version)
        return results[0].policy_version

    # ------------------------------------------------------------------ lifecycle

    @property
    def addresses(self) -> list[str]:
        return [r.address for r in self._replicas]

    async def close(self) -> None:
        for r in self._replicas:
            with contextlib.suppress(Exception):
                await r.channel.close()

    async def __aenter__(self) -> RolloutClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
