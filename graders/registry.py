"""Grader registry: a grader is a (async) function or a class registered with `@grader` or through the
`rlvr.graders` entry-point group.

A grader function takes the completion as its first parameter and names the task fields it needs as
keyword parameters (no default: required; with a default: optional). A parameter called `ctx` receives
the GradeContext (sandbox, worker pool, limits). It returns an Outcome, a float reward or a bool.
Missing or mistyped fields become INVALID_REQUEST before the function runs, so a caller's bug is never
silently scored 0."""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from graders.context import GradeContext, InfraError
from graders.types import GradeStatus, Outcome

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "rlvr.graders"
_INJECTED = {"ctx"}


class RegistryError(ValueError):
    """A grader definition is malformed or its name is taken."""


def _type_ok(value: Any, hint: Any) -> bool:
    """Shallow check of a JSON value against a parameter annotation (str, list[str], dict | str, ...)."""
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    target = origin or hint
    if target is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if target is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if not isinstance(target, type):
        return True
    if not isinstance(value, target):
        return False
    args = typing.get_args(hint)
    if target is list and args:
        return all(_type_ok(v, args[0]) for v in typing.cast(list[Any], value))
    return True


def _json_type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


@dataclass
class GraderSpec:
    """A registered grader and the fields it takes."""

    name: str
    fn: Callable[..., Any]
    description: str = ""
    required: list[str] = field(default_factory=list)
    optional: list[str] = field(default_factory=list)
    hints: dict[str, Any] = field(default_factory=dict)
    wants_ctx: bool = False
    sandboxed: bool = False
    gold: list[dict[str, Any]] = field(default_factory=list)
    """Self-test cases: dicts with `completion` and the task fields; each must score 1.0."""

    def check_fields(self, fields: dict[str, Any]) -> str | None:
        """A message naming the problem when the fields do not fit this grader, else None."""
        missing = [f for f in self.required if f not in fields]
        if missing:
            got = ", ".join(sorted(fields)) or "none"
            return f"grader {self.name!r} needs field(s) {', '.join(missing)} (got: {got})"
        for name in (*self.required, *self.optional):
            if name in fields and not _type_ok(fields[name], self.hints.get(name, Any)):
                want = _json_type_name(self.hints[name])
                return f"grader {self.name!r}: field {name!r} must be {want}, got {type(fields[name]).__name__}"
        return None

    async def run(self, completion: str, fields: dict[str, Any], ctx: GradeContext) -> Outcome:
        problem = self.check_fields(fields)
        if problem is not None:
            return Outcome.invalid(problem)
        kwargs = {k: fields[k] for k in (*self.required, *self.optional) if k in fields}
        if self.wants_ctx:
            kwargs["ctx"] = ctx
        if inspect.iscoroutinefunction(self.fn):
            value = await self.fn(completion, **kwargs)
        else:
            value = self.fn(completion, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        return _to_outcome(value, self.name)

    async def validate(self, ctx: GradeContext) -> list[tuple[dict[str, Any], Outcome]]:
        """Grade each gold case; the caller checks that every reward is 1.0."""
        results = []
        for case in self.gold:
            fields = {k: v for k, v in case.items() if k != "completion"}
            results.append((case, await self.run(case["completion"], fields, ctx)))
        return results


def _to_outcome(value: Any, name: str) -> Outcome:
    if isinstance(value, Outcome):
        return value
    if isinstance(value, bool):
        return Outcome.passed() if value else Outcome.failed()
    if isinstance(value, int | float):
        reward = float(value)
        return Outcome(reward, GradeStatus.PASSED if reward >= 1.0 else GradeStatus.FAILED)
    raise InfraError(f"grader {name!r} returned {type(value).__name__}; expected Outcome, float or bool")


def spec_from_callable(
    fn: Callable[..., Any],
    name: str,
    description: str = "",
    sandboxed: bool = False,
    gold: Iterable[dict[str, Any]] = (),
) -> GraderSpec:
    """Read the field names and types from the function's signature (after its first parameter)."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        raise RegistryError(f"grader {name!r}: the first parameter must take the completion")
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations only disable the type check
        hints = {}
    required: list[str] = []
    optional: list[str] = []
    for p in params[1:]:
        if p.name in _INJECTED or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        (required if p.default is p.empty else optional).append(p.name)
    doc = description or inspect.getdoc(fn) or ""
    return GraderSpec(
        name=name,
        fn=fn,
        description=doc.strip().splitlines()[0] if doc.strip() else "",
        required=required,
        optional=optional,
        hints={k: v for k, v in hints.items() if k in (*required, *optional)},
        wants_ctx="ctx" in sig.parameters,
        sandboxed=sandboxed,
        gold=list(gold),
    )


class Registry:
    """Name → GraderSpec."""

    def __init__(self) -> None:
        self._specs: dict[str, GraderSpec] = {}

    def add(self, spec: GraderSpec, replace: bool = False) -> GraderSpec:
        if spec.name in self._specs and not replace and self._specs[spec.name].fn is not spec.fn:
            raise RegistryError(f"a grader named {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def get(self, name: str) -> GraderSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[GraderSpec]:
        return [self._specs[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def load_entry_points(self) -> list[str]:
        """Import plugins of the `rlvr.graders` group; a broken plugin is logged, not fatal."""
        loaded = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
            except Exception as e:
                log.error("grader plugin %s failed to load: %s", ep.value, e)
                continue
            if isinstance(obj, GraderSpec):
                self.add(obj, replace=True)
            elif ep.name not in self and callable(obj):
                self.add(_spec_for(obj, ep.name, "", False, ()), replace=True)
            loaded.append(ep.name)
        return loaded


REGISTRY = Registry()


def _spec_for(
    obj: Any, name: str | None, description: str, sandboxed: bool, gold: Iterable[dict[str, Any]]
) -> GraderSpec:
    if inspect.isclass(obj):
        instance = obj()
        if not hasattr(instance, "grade"):
            raise RegistryError(f"grader class {obj.__name__} needs a grade(completion, ...) method")
        spec = spec_from_callable(
            instance.grade, str(name or getattr(obj, "name", obj.__name__.lower())),
            description or inspect.getdoc(obj) or "", sandboxed, gold or getattr(obj, "gold", ()),
        )
        return spec
    return spec_from_callable(obj, str(name or obj.__name__), description, sandboxed, gold)


def grader(
    name: str | None = None,
    *,
    description: str = "",
    sandboxed: bool = False,
    gold: Iterable[dict[str, Any]] = (),
    registry: Registry | None = None,
) -> Callable[[Any], Any]:
    """Register a grader function (or a class with a `grade` method) under `name` (default: its name)."""

    def wrap(obj: Any) -> Any:
        spec = _spec_for(obj, name, description, sandboxed, gold)
        (registry or REGISTRY).add(spec)
        obj.grader_spec = spec
        return obj

    return wrap


def load_builtins() -> None:
    """Import the built-in graders (their decorators register them in REGISTRY)."""
    import graders.builtin  # noqa: F401


async def validate_all(registry: Registry, ctx: GradeContext, names: Iterable[str] | None = None) -> list[str]:
    """Run each grader's gold self-test; return one line per gold case that did not score 1.0."""
    problems = []
    for spec in registry.specs():
        if names is not None and spec.name not in names:
            continue
        for case, outcome in await spec.validate(ctx):
            if outcome.reward != 1.0 or outcome.status is not GradeStatus.PASSED:
                problems.append(f"{spec.name}: gold case {case!r:.80} → {outcome.status.label} {outcome.message}")
        await asyncio.sleep(0)
    return problems
