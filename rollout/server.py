"""`python -m rollout.server --model DIR`: the Rollout gRPC service over a vLLM async engine.

Start-up order: parse arguments (no vLLM import yet), bind the gRPC port and announce it with health
NOT_SERVING, build the engine in a worker thread (~25 s on CPU), then report SERVING. Clients call
wait_ready(). On SIGTERM: NOT_SERVING, in-flight calls finish within grace_s, then the engine stops.
Signals sent to the whole process group also reach vLLM's engine process, which then stops at once, so
send SIGTERM to this process alone for a graceful drain."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from rlvr.config import ConfigError, load_config
from rlvr.serving import ManagedServer, ServerOptions, announce
from rollout.config import RolloutConfig

log = logging.getLogger("rollout.server")
SERVICE_NAME = "rlvr.v1.Rollout"
TOKEN_ENV = "RLVR_ROLLOUT_TOKEN"
HEALTH_INTERVAL_S = 5.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rollout.server", description=__doc__.splitlines()[0])
    a = p.add_argument
    a("--config", type=Path, help="TOML file with RolloutConfig fields (flags given here override it)")
    a("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    a("--model", type=Path, help="HF model directory to serve")
    a("--host", help="bind address (default 127.0.0.1)")
    a("--port", type=int, help="TCP port; 0 = a free one")
    a("--token", help=f"shared secret clients must send (or set ${TOKEN_ENV})")
    a("--tls-cert", type=Path, help="PEM certificate chain (TLS)")
    a("--tls-key", type=Path, help="PEM private key (TLS)")
    a("--allow-insecure-public", action="store_const", const=True, help="non-loopback bind without token/TLS")
    a("--grace-s", type=float, help="SIGTERM drain time for in-flight calls")
    a("--max-model-len", type=int, help="prompt + completion token limit")
    a("--dtype", choices=["auto", "bfloat16", "float32", "float16"], help="engine dtype")
    a("--enable-lora", action="store_const", const=True, help="allow LoRA adapters")
    a("--max-lora-rank", type=int, help="largest adapter rank")
    a("--max-loras", type=int, help="adapters active in one batch")
    a("--lora-mode", choices=["auto", "native", "merge"], help="serve adapters natively or merged (auto: merge on CPU)")
    a("--kv-cache-gib", type=float, help="KV cache GiB (VLLM_CPU_KVCACHE_SPACE)")
    a("--threads", type=int, help="engine OpenMP threads (unpinned unless --cpu-bind)")
    a("--cpu-bind", help='VLLM_CPU_OMP_THREADS_BIND: "auto", "nobind" or cores like "0-1"')
    g = p.add_mutually_exclusive_group()
    g.add_argument("--eager", dest="eager", action="store_const", const=True, help="eager model (default)")
    g.add_argument("--compile", dest="eager", action="store_const", const=False, help="torch.compile the model")
    a("--seed", type=int, help="engine seed")
    a("--max-num-seqs", type=int, help="most sequences batched at once")
    a("--block-size", type=int, help="KV cache block size in tokens (default: 32 on CPU, vLLM's elsewhere)")
    a("--transfer-timeout-s", type=float, help="hard limit per weight/adapter push")
    a("--spill-dir", type=Path, help="where pushed weights are assembled")
    a("--local-weights", action=argparse.BooleanOptionalAction, default=None,
      help="accept co-located pushes as a file in --local-weights-dir (default: on for loopback binds)")  # fmt: skip
    a("--local-weights-dir", type=Path, help="where co-located clients put pushed files (default /dev/shm)")
    return p


def load(argv: list[str] | None = None) -> RolloutConfig:
    """Config from --config, then --set overrides, then explicit flags; raises ConfigError."""
    ns = build_parser().parse_args(argv)
    flags: dict[str, Any] = {k: v for k, v in vars(ns).items() if v is not None and k not in ("config", "overrides")}
    base = load_config(RolloutConfig, ns.config, ns.overrides)
    data = {**base.model_dump(exclude_unset=True), **flags}
    if "token" not in data and os.environ.get(TOKEN_ENV):
        data["token"] = os.environ[TOKEN_ENV]
    try:
        cfg = RolloutConfig.model_validate(data)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if cfg.model is None:
        raise ConfigError("--model (or `model` in the config file) is required")
    if not (cfg.model / "config.json").is_file():
        raise ConfigError(f"{cfg.model}: not an HF model directory (no config.json)")
    return cfg


def resolve_lora_mode(cfg: RolloutConfig) -> str:
    """native | merge for this server ("auto" asks the vLLM platform, so call it after parsing)."""
    if cfg.lora_mode != "auto":
        return cfg.lora_mode
    from rollout.engine import is_cpu_platform

    return "merge" if is_cpu_platform() else "native"


def engine_settings(cfg: RolloutConfig, lora_mode: str = "native") -> Any:
    from rollout.engine import EngineSettings

    assert cfg.model is not None
    return EngineSettings(
        model=cfg.model,
        max_model_len=cfg.max_model_len,
        dtype=cfg.dtype,
        enable_lora=cfg.enable_lora and lora_mode == "native",  # merged adapters need no LoRA layers
        max_lora_rank=cfg.max_lora_rank,
        max_loras=cfg.max_loras,
        seed=cfg.seed,
        eager=cfg.eager,
        kv_cache_gib=cfg.kv_cache_gib,
        threads=cfg.threads,
        cpu_bind=cfg.cpu_bind,
        max_num_seqs=cfg.max_num_seqs,
        block_size=cfg.block_size,
    )


async def _load_engine(cfg: RolloutConfig, servicer: Any, server: ManagedServer) -> Any:
    from rollout.engine import Engine

    lora_mode = await asyncio.to_thread(resolve_lora_mode, cfg)
    engine = await asyncio.to_thread(Engine.start, engine_settings(cfg, lora_mode))
    servicer.attach(engine, lora_mode)
    await server.set_serving(True)
    log.info("engine ready: %s, dtype %s, max_model_len %d, lora %s", engine.version, engine.dtype,
             engine.max_model_len, lora_mode if cfg.enable_lora else "off")  # fmt: skip
    return engine


async def _watch(engine: Any, server: ManagedServer) -> None:
    """A dead engine process cannot recover in place: stop so a supervisor restarts the server."""
    while True:
        await asyncio.sleep(HEALTH_INTERVAL_S)
        try:
            await engine.check_health()
        except Exception as e:
            log.error("engine is dead (%s); shutting down", e)
            server.request_stop()
            return


async def serve(cfg: RolloutConfig) -> int:
    from rlvr.v1 import rollout_pb2_grpc as pb_grpc
    from rollout.servicer import RolloutServicer

    servicer = RolloutServicer(cfg, uuid.uuid4().hex)
    options = ServerOptions(
        host=cfg.host, port=cfg.port, token=cfg.token, tls_cert=cfg.tls_cert, tls_key=cfg.tls_key,
        grace_s=cfg.grace_s, allow_insecure_public=cfg.allow_insecure_public,
    )  # fmt: skip
    server = ManagedServer(options, lambda s: pb_grpc.add_RolloutServicer_to_server(servicer, s), [SERVICE_NAME])
    address = await server.start()
    await server.set_serving(False)
    server.install_signal_handlers()
    announce("rollout", address)
    loading = asyncio.create_task(_load_engine(cfg, servicer, server))
    stopping = asyncio.create_task(server.wait_for_stop_signal())
    await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    rc, watch = 0, None
    if loading.done() and loading.exception() is None:
        watch = asyncio.create_task(_watch(loading.result(), server))
        await stopping
        rc = 1 if watch.done() else 0  # the watchdog only returns when the engine died
    elif loading.done():
        log.error("engine failed to start: %s", loading.exception())
        rc = 1
    log.info("stopping: draining in-flight calls (up to %.0fs)", cfg.grace_s)
    await server.stop()
    for t in (loading, stopping, watch):
        if t is not None and not t.done():
            t.cancel()
    if servicer.engine is not None:
        servicer.engine.shutdown()
    servicer.cleanup()
    if not loading.done():
        # Stopped while the engine was still being built in a worker thread, which cannot be interrupted;
        # exit now instead of waiting for it (vLLM's engine process exits when its parent is gone).
        sys.stdout.flush()
        os._exit(rc)
    return rc


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load(argv)
    except ConfigError as e:
        print(f"rollout.server: {e}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(cfg))
    except (OSError, ValueError) as e:  # bind failure, insecure public bind, ...
        print(f"rollout.server: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
