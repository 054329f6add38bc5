"""rlvr graders: the grader service, its client and the plugin API.

    from graders import grader, Outcome          # write a grader
    from graders import GraderClient, GradeItem  # call the service

Attributes load lazily so `rlvr --help` stays fast."""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "grader": "graders.registry",
    "Registry": "graders.registry",
    "REGISTRY": "graders.registry",
    "GradeContext": "graders.context",
    "Outcome": "graders.types",
    "GradeItem": "graders.types",
    "GradeResult": "graders.types",
    "GradeStatus": "graders.types",
    "Limits": "graders.types",
    "TestDetail": "graders.types",
    "GraderClient": "graders.client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'graders' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
