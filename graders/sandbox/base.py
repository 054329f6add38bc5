"""The sandbox interface and the limits one program runs under."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from graders.config import LimitsSection
    from graders.types import Limits

# The graded program sees only these variables: nothing of the host's environment.
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/work",
    "TMPDIR": "/work",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONHASHSEED": "0",
}


@dataclass(frozen=True)
class ExecLimits:
    """Limits of one program run, already resolved against server defaults and maximums."""

    timeout_s: float = 10.0
    memory_mb: int = 256
    output_bytes: int = 1_000_000
    cpus: float = 1.0
    pids: int = 64
    disk_mb: int = 64
    math_timeout_s: float = 5.0

    @classmethod
    def resolve(cls, requested: Limits | None, cfg: LimitsSection) -> ExecLimits:
        """0 (or no Limits) means the server default; anything above a maximum is clamped to it."""

        def pick(value: float, default: float, maximum: float) -> float:
            return min(value if value and value > 0 else default, maximum)

        r = requested
        return cls(
            timeout_s=pick(r.timeout_s if r else 0, cfg.timeout_s, cfg.max_timeout_s),
            memory_mb=int(pick(r.memory_mb if r else 0, cfg.memory_mb, cfg.max_memory_mb)),
            output_bytes=int(pick(r.output_bytes if r else 0, cfg.output_bytes, cfg.max_output_bytes)),
            cpus=pick(r.cpus if r else 0, cfg.cpus, cfg.max_cpus),
            pids=cfg.pids,
            disk_mb=cfg.disk_mb,
            math_timeout_s=min(r.timeout_s, cfg.math_timeout_s) if r and r.timeout_s > 0 else cfg.math_timeout_s,
        )


@dataclass
class RunResult:
    """What happened to one program. `exit_code` is None when it was killed by a signal or the deadline."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    duration_s: float
    signal: int | None = None
    timed_out: bool = False
    oom_killed: bool = False
    output_exceeded: bool = False
    judge_output: bytes | None = None
    """What the judge wrote (runs with a Judge only); None when the judge gave nothing."""


@dataclass(frozen=True)
class Judge:
    """A trusted process that runs next to the program, as another uid the program cannot signal, trace or
    re-limit, and that talks to it instead of the host: it writes the program's stdin and reads its stdout.

    `source` runs as `python3 -c source TO_FD FROM_FD` (the fds of the program's stdin and stdout pipes); it
    reads `stdin` on fd 0 and its result goes to fd 1 (RunResult.judge_output). The program's stderr comes back
    as RunResult.stderr. A grader with trusted checking logic (tests, expected output) puts it here."""

    source: str
    stdin: bytes


class SandboxError(RuntimeError):
    """The sandbox itself failed (engine gone, container lost): an infrastructure error, not a verdict."""


class SandboxLost(SandboxError):
    """The container (or the judge's runner) died while a program ran: the program may have caused it, so the
    grader decides (python_tests grades again once, then calls it the program's runtime error)."""


class Sandbox(Protocol):
    name: str

    async def start(self) -> None: ...

    async def run(self, argv: list[str], stdin: bytes, limits: ExecLimits, judge: Judge | None = None) -> RunResult:
        """Run argv (inside the sandbox, cwd /work) feeding stdin, or talking to `judge`; never raises for the
        program's faults except SandboxLost."""
        ...

    async def close(self) -> None: ...
