"""Registry and plugin API: decorator, field validation, entry points, the README example grader."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from graders.context import GradeContext, InfraError
from graders.registry import REGISTRY, Registry, RegistryError, grader, load_builtins, validate_all
from graders.sandbox.base import ExecLimits
from graders.types import GradeStatus, Outcome

CTX = GradeContext(ExecLimits())


def make_readme_grader(registry: Registry) -> Any:
    # --- README example: a complete custom grader (keep in sync with the README) ---
    from graders import Outcome, grader

    @grader("word_limit", registry=registry, gold=[{"completion": "a short answer", "max_words": 5}])
    def word_limit(completion: str, *, max_words: int, min_words: int = 1) -> Outcome:
        """Reward answers whose length is within [min_words, max_words] words."""
        n = len(completion.split())
        if min_words <= n <= max_words:
            return Outcome.passed(f"{n} words")
        return Outcome.failed(f"{n} words; wanted {min_words}..{max_words}")

    return word_limit


async def test_readme_example_grader() -> None:
    reg = Registry()
    make_readme_grader(reg)
    spec = reg.get("word_limit")
    assert spec is not None and spec.required == ["max_words"] and spec.optional == ["min_words"]
    ok = await spec.run("one two three", {"max_words": 3}, CTX)
    assert (ok.status, ok.reward) == (GradeStatus.PASSED, 1.0)
    too_long = await spec.run("one two three four", {"max_words": 3}, CTX)
    assert (too_long.status, too_long.reward) == (GradeStatus.FAILED, 0.0)
    missing = await spec.run("x", {}, CTX)
    assert missing.status is GradeStatus.INVALID_REQUEST and "max_words" in missing.message
    wrong_type = await spec.run("x", {"max_words": "3"}, CTX)
    assert wrong_type.status is GradeStatus.INVALID_REQUEST and "must be int" in wrong_type.message
    assert await validate_all(reg, CTX) == []


async def test_async_function_float_and_bool_returns() -> None:
    reg = Registry()

    @grader("half", registry=reg)
    async def half(completion: str) -> float:
        return 0.5

    @grader(registry=reg)
    def yes(completion: str, *, flag: bool = True) -> bool:
        return flag

    r = await reg.get("half").run("x", {}, CTX)  # type: ignore[union-attr]
    assert (r.reward, r.status) == (0.5, GradeStatus.FAILED)
    assert (await reg.get("yes").run("x", {"extra": 1}, CTX)).status is GradeStatus.PASSED  # type: ignore[union-attr]
    assert (await reg.get("yes").run("x", {"flag": False}, CTX)).reward == 0.0  # type: ignore[union-attr]


async def test_class_grader_and_ctx_injection() -> None:
    reg = Registry()

    @grader("limits_echo", registry=reg)
    class LimitsEcho:
        """Reports the timeout it was given."""

        def grade(self, completion: str, *, ctx: GradeContext) -> Outcome:
            return Outcome.passed(str(ctx.limits.timeout_s))

    spec = reg.get("limits_echo")
    assert spec is not None and spec.required == [] and spec.wants_ctx
    assert spec.description == "Reports the timeout it was given."
    assert (await spec.run("x", {}, GradeContext(ExecLimits(timeout_s=3.5)))).message == "3.5"


async def test_bad_return_type_is_infra_error() -> None:
    reg = Registry()

    @grader("broken", registry=reg)
    def broken(completion: str) -> Any:
        return "yes"

    with pytest.raises(InfraError):
        await reg.get("broken").run("x", {}, CTX)  # type: ignore[union-attr]


def test_duplicate_name_and_bad_signature_rejected() -> None:
    reg = Registry()

    @grader("dup", registry=reg)
    def one(completion: str) -> bool:
        return True

    with pytest.raises(RegistryError):
        @grader("dup", registry=reg)
        def two(completion: str) -> bool:
            return True

    with pytest.raises(RegistryError):
        @grader("nocompletion", registry=reg)
        def three(*, x: int) -> bool:
            return True


def test_list_and_union_field_types() -> None:
    load_builtins()
    spec = REGISTRY.get("python_tests")
    assert spec is not None and spec.sandboxed
    assert spec.check_fields({"tests": ["assert 1"]}) is None
    assert spec.check_fields({"tests": "assert 1", "entry_point": None}) is None
    assert "must be" in (spec.check_fields({"tests": [1, 2]}) or "")
    assert "must be" in (spec.check_fields({"tests": "x", "entry_point": 3}) or "")


def test_entry_point_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    def shout(completion: str, *, word: str) -> bool:
        return completion.isupper() and word in completion

    def broken_load() -> Any:
        raise ImportError("boom")

    eps = [SimpleNamespace(name="shout", value="pkg:shout", load=lambda: shout),
           SimpleNamespace(name="broken", value="pkg:broken", load=broken_load)]
    monkeypatch.setattr("graders.registry.entry_points", lambda group: eps if group == "rlvr.graders" else [])
    reg = Registry()
    assert reg.load_entry_points() == ["shout"]
    spec = reg.get("shout")
    assert spec is not None and spec.required == ["word"]


def test_builtins_registered() -> None:
    load_builtins()
    assert {"math", "python_tests", "json_schema", "regex", "exact_match"} <= set(REGISTRY.names())
    for name in ("math", "python_tests", "json_schema", "regex", "exact_match"):
        assert REGISTRY.get(name).gold, f"{name} has no gold self-test"  # type: ignore[union-attr]
