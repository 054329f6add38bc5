"""What the engine hands to a grader besides the completion and its fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graders.sandbox.base import ExecLimits, Sandbox
    from graders.workers import WorkerPool


class InfraError(RuntimeError):
    """The grading machinery (sandbox, worker pool) failed; the item must be retried, never scored 0."""


class NoSandbox(InfraError):
    """A sandboxed grader was asked for while the server runs without a sandbox backend."""


@dataclass
class GradeContext:
    """Resources a grader may use; a grader asks for it by taking a `ctx` parameter."""

    limits: ExecLimits
    """Limits for this item, already clamped to the server maximums."""
    sandbox_backend: Sandbox | None = None
    """Runs untrusted programs; None when the server has no sandbox."""
    workers: WorkerPool | None = None
    """Killable worker processes for CPU-bound checks (math-verify, regex)."""

    @property
    def sandbox(self) -> Sandbox:
        if self.sandbox_backend is None:
            raise NoSandbox("this server runs without a sandbox backend (sandbox.backend = \"none\")")
        return self.sandbox_backend

    @property
    def pool(self) -> WorkerPool:
        if self.workers is None:
            raise InfraError("no worker pool")
        return self.workers
