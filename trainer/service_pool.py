"""Embedded services shared by the stages of one pipeline run: one rollout engine per engine shape, one grader
server per grader set-up, started on first use and stopped when the pipeline ends.

A stage does not know it shares: while a pool is open (`with ServicePool(log_dir):`, what pipeline/runner.py
does around its stages), trainer.services.Services leases from it instead of starting child processes, and
its stop() leaves them running. The hand-over contract is the one an engine started for the stage keeps: the
leased engine serves the stage's model as policy version 0. A reused engine therefore gets that model's
weights pushed (UpdateWeights, version 0) before it is handed over; the engine is not restarted.

Two stages share an engine when their models have the same architecture, shape and tokenizer
(trainer.eval_models.engine_key) and their rollout settings give the same server command line; a student of
another shape gets its own engine. At most `max_engines` rollout engines are kept: the least recently used
one is stopped to make room. Only the standard library is imported at module level."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from rlvr.procs import ServiceProcess

if TYPE_CHECKING:
    from trainer.config import GradersSection, GRPOConfig

log = logging.getLogger(__name__)
_ACTIVE: list[ServicePool] = []


def active_pool() -> ServicePool | None:
    """The innermost open pool, or None (each stage then starts and stops its own services)."""
    return _ACTIVE[-1] if _ACTIVE else None


class ServicePool:
    """Rollout engines keyed by (model shape, server arguments) and grader servers keyed by their arguments."""

    def __init__(self, log_dir: Path, max_engines: int = 2) -> None:
        self.log_dir = log_dir
        self.max_engines = max_engines
        self.engines: OrderedDict[str, ServiceProcess] = OrderedDict()
        self.graders: dict[tuple[str, ...], ServiceProcess] = {}
        self.started = 0
        self.swapped = 0

    # ------------------------------------------------------------------ rollout

    def rollout_address(self, cfg: GRPOConfig, model_dir: Path) -> str:
        """A rollout engine serving `model_dir` as version 0: a running one of the same shape and settings
        (its weights swapped), else a new one."""
        from trainer.services import rollout_args

        args = rollout_args(cfg, model_dir)
        key = engine_pool_key(model_dir, args)
        engine = self.engines.get(key)
        if engine is not None and not engine.alive():
            log.warning("pooled rollout engine %s exited (code %s): starting a new one", engine.address,
                        engine.proc.returncode if engine.proc else None)  # fmt: skip
            del self.engines[key]
            engine = None
        if engine is None:
            return self._start_engine(cfg, model_dir, args, key)
        self.engines.move_to_end(key)
        assert engine.address is not None
        _serve_as_version_0(engine.address, model_dir, cfg)
        log.info("rollout engine %s reused: weights of %s swapped in (no restart)", engine.address, model_dir)
        self.swapped += 1
        return engine.address

    def _start_engine(self, cfg: GRPOConfig, model_dir: Path, args: list[str], key: str) -> str:
        while len(self.engines) >= self.max_engines:
            _, old = self.engines.popitem(last=False)
            log.info("stopping the least recently used rollout engine %s", old.address)
            old.stop(timeout_s=20)
        self.started += 1
        env = {"VLLM_CPU_KVCACHE_SPACE": f"{cfg.rollout.kv_cache_gib:g}"}
        proc = ServiceProcess("trainer.services", ["rollout.server", *args], "rollout",
                              env=env, log_path=self.log_dir / f"rollout-{self.started}.log")  # fmt: skip
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log.info("starting pooled rollout engine for %s (log: %s)", model_dir, proc.log_path)
        address = proc.start(timeout_s=cfg.rollout.start_timeout_s)
        self.engines[key] = proc
        return address

    # ------------------------------------------------------------------ graders

    def grader_address(self, g: GradersSection, used: list[str]) -> str:
        """A grader server that runs every grader in `used`: with the stage's sandbox setting, or (when unset) a
        running one with a sandbox, else one without if the service says none of `used` runs programs."""
        from trainer.services import sandboxed_graders

        if g.sandbox is not None:
            return self._grader(g, g.sandbox)
        with_sandbox = self._running_grader(g, "auto")
        if with_sandbox is not None:
            return with_sandbox
        plain = self._grader(g, "none")
        if not sandboxed_graders(plain, used, g.token):
            return plain
        return self._grader(g, "auto")

    def _running_grader(self, g: GradersSection, backend: str) -> str | None:
        from trainer.services import grader_args

        proc = self.graders.get(tuple(grader_args(g, backend)))
        return proc.address if proc is not None and proc.alive() else None

    def _grader(self, g: GradersSection, backend: str) -> str:
        from trainer.services import grader_args

        running = self._running_grader(g, backend)
        if running is not None:
            return running
        args = grader_args(g, backend)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        proc = ServiceProcess("trainer.services", ["graders.server", *args], "graders",
                              log_path=self.log_dir / f"graders-{len(self.graders) + 1}.log")  # fmt: skip
        log.info("starting pooled grader server (sandbox %s; log: %s)", backend, proc.log_path)
        address = proc.start(timeout_s=g.start_timeout_s)
        self.graders[tuple(args)] = proc
        return address

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        for engine in self.engines.values():
            engine.stop(timeout_s=20)
        for proc in self.graders.values():
            proc.stop(timeout_s=20)
        self.engines.clear()
        self.graders.clear()

    def __enter__(self) -> ServicePool:
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.remove(self)
        self.close()


def engine_pool_key(model_dir: Path, args: list[str]) -> str:
    """Same engine shape (architecture, sizes, tokenizer) and the same server command line but for --model."""
    from trainer.eval_models import engine_key

    rest = [a for i, a in enumerate(args) if a != "--model" and (i == 0 or args[i - 1] != "--model")]
    return json.dumps([engine_key(model_dir), rest])


def _serve_as_version_0(address: str, model_dir: Path, cfg: GRPOConfig) -> None:
    """Push `model_dir`'s weights to the engine at `address` as version 0 (what a fresh engine would serve)."""
    from rollout.client import RolloutClient
    from trainer.eval_models import load_weights

    async def push() -> None:
        r = cfg.rollout
        client = RolloutClient([address], token=r.token, tls_ca=r.tls_ca, timeout_s=r.request_timeout_s)
        try:
            await client.wait_ready(r.start_timeout_s)
            got = await client.update_weights(load_weights(model_dir), 0)
            if got != 0:
                raise RuntimeError(f"rollout engine {address} reports version {got} after loading {model_dir} as 0")
        finally:
            await client.close()

    asyncio.run(push())
