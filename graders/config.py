"""Typed configuration of the grader service (TOML; see examples/graders.toml)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from rlvr.config import StrictModel, load_config


class ServerSection(StrictModel):
    host: str = "127.0.0.1"
    """Bind address; loopback by default. A public bind needs `token` or TLS."""
    port: int = 0
    """TCP port; 0 picks a free one (announced on stdout as `RLVR_READY graders HOST:PORT`)."""
    token: str | None = None
    """Shared secret clients send as `authorization: Bearer <token>` metadata."""
    tls_cert: Path | None = None
    """PEM certificate chain; with tls_key enables TLS."""
    tls_key: Path | None = None
    """PEM private key for tls_cert."""
    grace_s: float = 20.0
    """After SIGTERM, how long in-flight grades may finish before they are cancelled (INFRA_ERROR)."""
    allow_insecure_public: bool = False
    """Allow a non-loopback bind with neither token nor TLS (not recommended)."""


class LimitsSection(StrictModel):
    timeout_s: float = Field(default=10.0, gt=0)
    """Default wall-clock limit of one sandboxed program."""
    max_timeout_s: float = Field(default=60.0, gt=0)
    """Largest timeout a request may ask for."""
    memory_mb: int = Field(default=256, ge=32)
    """Default memory limit (swap is set equal to it, so there is no swap)."""
    max_memory_mb: int = Field(default=2048, ge=32)
    """Largest memory limit a request may ask for."""
    output_bytes: int = Field(default=1_000_000, ge=1024)
    """Default cap on stdout + stderr of one program; more is OUTPUT_LIMIT."""
    max_output_bytes: int = Field(default=16_000_000, ge=1024)
    """Largest output cap a request may ask for."""
    cpus: float = Field(default=1.0, gt=0)
    """Default CPU share of one program (docker nano_cpus)."""
    max_cpus: float = Field(default=2.0, gt=0)
    """Largest CPU share a request may ask for."""
    pids: int = Field(default=64, ge=8)
    """Process/thread limit inside one sandbox (stops fork and thread bombs)."""
    disk_mb: int = Field(default=64, ge=1)
    """Size of the writable tmpfs work directory."""
    math_timeout_s: float = Field(default=5.0, gt=0)
    """Hard deadline of one math-verify / regex check; its worker process is killed after it."""


class SandboxSection(StrictModel):
    backend: Literal["auto", "docker", "bwrap", "none"] = "auto"
    """"auto": docker when the engine answers, else bwrap (with a loud warning); "none": no sandboxed graders."""
    image: str = "rlvr-sandbox:bookworm-1"
    """Docker image with python3 and user 10001 (deploy/sandbox/build_image.sh)."""
    pool_size: int = Field(default=4, ge=1, le=64)
    """Warm containers kept ready; also the number of programs that run at once."""
    docker_url: str | None = None
    """Docker engine address; default from DOCKER_HOST or the local socket."""
    bwrap_python: str = "/usr/bin/python3"
    """Interpreter used inside bubblewrap (must live under a read-only bound system path)."""


class WorkersSection(StrictModel):
    processes: int = Field(default=2, ge=1, le=64)
    """Worker processes for math-verify and regex checks (killed and replaced on deadline)."""


class ConcurrencySection(StrictModel):
    max_inflight: int = Field(default=256, ge=1)
    """Items being graded or queued at once across all calls; a request beyond it gets RESOURCE_EXHAUSTED."""
    max_items_per_request: int = Field(default=4096, ge=1)
    """Largest batch one Grade/GradeStream call may carry."""


class GradersConfig(StrictModel):
    """The `rlvr serve graders` configuration."""

    server: ServerSection = Field(default_factory=lambda: ServerSection())
    """Network and security options."""
    limits: LimitsSection = Field(default_factory=lambda: LimitsSection())
    """Default and maximum per-program limits."""
    sandbox: SandboxSection = Field(default_factory=lambda: SandboxSection())
    """Where untrusted programs run."""
    workers: WorkersSection = Field(default_factory=lambda: WorkersSection())
    """Killable worker processes for in-process checks."""
    concurrency: ConcurrencySection = Field(default_factory=lambda: ConcurrencySection())
    """Admission control."""


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> GradersConfig:
    return load_config(GradersConfig, path, overrides)
