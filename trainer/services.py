"""The rollout and grader services of a run: the given addresses, or child processes on loopback.

Embedded servers are started through this module (`python -m trainer.services MODULE ARGS...`), which asks
the kernel to SIGTERM the server when the trainer dies (PR_SET_PDEATHSIG) and then execs it: servers run
in their own process group (so stop() reaches vLLM's workers), hence a `kill -9` of the trainer would
otherwise leave them running. Inside a pipeline run they come from its trainer.service_pool instead. Only the
standard library, rlvr.procs and trainer.service_pool are imported at module level."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rlvr.procs import ServiceProcess
from trainer.service_pool import active_pool

if TYPE_CHECKING:
    from trainer.config import GradersSection, GRPOConfig

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
# The trainer stops generating before it stops its servers, so they have little to drain.
GRACE_S = 5


def rollout_args(cfg: GRPOConfig, model_dir: Path) -> list[str]:
    """Command-line of the embedded rollout server for this run."""
    r = cfg.rollout
    args = ["--model", str(model_dir), "--port", "0", "--max-model-len", str(r.max_model_len),
            "--kv-cache-gib", f"{r.kv_cache_gib:g}", "--dtype", r.dtype, "--grace-s", str(GRACE_S)]  # fmt: skip
    if r.threads is not None:
        args += ["--threads", str(r.threads)]
    if cfg.model.finetune in ("lora", "qlora"):
        args += ["--enable-lora", "--max-lora-rank", str(cfg.model.lora.r), "--lora-mode", r.lora_mode]
    return args + list(r.extra_args)


def grader_args(g: GradersSection, backend: str) -> list[str]:
    args = ["--port", "0", "--backend", backend, "--set", f"server.grace_s={GRACE_S}"]
    if g.config is not None:
        args += ["--config", str(g.config)]
    return args


class Services:
    """Addresses of the run's services; starts the missing ones and stops what it started. With rollout=False
    only the grader service is wanted (a GGUF file is generated from in-process by llama.cpp)."""

    def __init__(self, cfg: GRPOConfig, model_dir: Path, log_dir: Path, rollout: bool = True) -> None:
        self.cfg = cfg
        self.want_rollout = rollout
        self.model_dir = model_dir
        self.log_dir = log_dir
        self.rollout_addresses: list[str] = list(cfg.rollout.address)
        self.grader_address: str | None = cfg.graders.address
        self.procs: list[ServiceProcess] = []

    @property
    def embedded(self) -> list[str]:
        return [p.name for p in self.procs]

    def start(self) -> None:
        """Start the embedded servers. Returns once each has announced its port; the rollout engine keeps
        loading in the background (clients wait_ready() for it) while the trainer loads its model."""
        pool = active_pool()
        if pool is not None:  # a pipeline's stages share its services: lease, and leave them running on stop()
            if self.grader_address is None:
                self.grader_address = pool.grader_address(self.cfg.graders, self.cfg.used_graders())
            if self.want_rollout and not self.rollout_addresses:
                self.rollout_addresses = [pool.rollout_address(self.cfg, self.model_dir)]
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.grader_address is None:
            self._start_graders()
        if self.want_rollout and not self.rollout_addresses:
            env = {"VLLM_CPU_KVCACHE_SPACE": f"{self.cfg.rollout.kv_cache_gib:g}"}
            proc = self._spawn("rollout.server", rollout_args(self.cfg, self.model_dir), "rollout", env)
            self.rollout_addresses = [proc.start(timeout_s=self.cfg.rollout.start_timeout_s)]

    def _start_graders(self) -> None:
        """The embedded grader server, with a sandbox only when a grader the run uses is sandboxed: it starts
        without one (unless graders.sandbox says otherwise), is asked (ListGraders) which of the run's graders
        run programs, and is restarted with sandbox "auto" if any does."""
        g = self.cfg.graders
        proc = self._spawn("graders.server", grader_args(g, g.sandbox or "none"), "graders", {})
        self.grader_address = proc.start(timeout_s=g.start_timeout_s)
        if g.sandbox is not None:
            return
        sandboxed = sandboxed_graders(self.grader_address, self.cfg.used_graders(), g.token)
        if sandboxed:
            log.info("grader(s) %s run programs: restarting the embedded grader server with a sandbox",
                     ", ".join(sandboxed))  # fmt: skip
            proc.stop(timeout_s=20)
            self.procs.remove(proc)
            proc = self._spawn("graders.server", grader_args(g, "auto"), "graders", {})
            self.grader_address = proc.start(timeout_s=g.start_timeout_s)

    def _spawn(self, module: str, args: list[str], name: str, env: dict[str, str]) -> ServiceProcess:
        proc = ServiceProcess("trainer.services", [module, *args], name, env=env, log_path=self.log_dir / f"{name}.log")
        self.procs.append(proc)
        log.info("starting embedded %s server (log: %s)", name, proc.log_path)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop(timeout_s=20)
        self.procs.clear()

    def __enter__(self) -> Services:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sandboxed_graders(address: str, names: list[str], token: str | None = None) -> list[str]:
    """Which of `names` the grader service at `address` runs in a sandbox (its ListGraders answer)."""
    import asyncio

    from graders.client import GraderClient

    async def ask() -> list[str]:
        async with GraderClient(address, token=token, timeout_s=60.0) as client:
            await client.wait_ready(60.0)
            catalog = await client.list_graders()
        return [g.name for g in catalog.graders if g.name in names and g.sandboxed]

    return asyncio.run(ask())


def _exec_with_parent_death_signal(argv: list[str]) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would ever signal us.
        if os.getppid() == 1:
            sys.exit(1)
    module, *rest = argv
    os.execv(sys.executable, [sys.executable, "-u", "-m", module, *rest])


if __name__ == "__main__":
    _exec_with_parent_death_signal(sys.argv[1:])
