"""Host-side preparation of HumanEval-style tests: parse them (a caller's bug is INVALID_REQUEST before any
sandbox is used), make each unit that defines `check` call `check(<entry point>)` (the judge binds
`candidate` to the entry point too), and cut the trusted prelude
out of the task's `prefix` (the prompt): its imports and helper definitions, without the entry point's stub.

The prelude runs on the judge's side for the tests, and is executed again in the program's namespace after the
program's code, so a completion that redefines a prompt helper changes neither what the tests compute with it
nor what the program's own code calls (attack class "redefined prompt helpers", HumanEval/32, /38, /50). A
prefix that is not valid Python on its own (a partial function) gives no prelude: the tests then call the
program's versions of such helpers, through the sandbox boundary like the entry point."""

from __future__ import annotations

import ast
from dataclasses import dataclass

_PRELUDE_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                  ast.AnnAssign)


class TestsError(ValueError):
    """The task's tests are unusable (syntax error, nothing checked): the caller's bug."""

    __test__ = False


@dataclass
class PreparedTests:
    """Test units ready for the judge, and the trusted prelude."""

    __test__ = False

    names: list[str]
    sources: list[str]
    prelude: str = ""


def _defines(tree: ast.Module, name: str) -> bool:
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name for n in tree.body)


def _checks_something(tree: ast.Module) -> bool:
    """An assert, a raise, or a `raises(...)` (pytest.raises): a unit without any of them cannot fail."""
    for n in ast.walk(tree):
        if isinstance(n, ast.Assert | ast.Raise):
            return True
        if isinstance(n, ast.Call):
            f = n.func
            if (isinstance(f, ast.Attribute) and f.attr == "raises") or (isinstance(f, ast.Name) and f.id == "raises"):
                return True
    return False


def prelude_of(prefix: str, entry_point: str | None) -> str:
    """The prompt's imports and helper definitions (not the entry point's stub, not top-level statements)."""
    try:
        tree = ast.parse(prefix)
    except SyntaxError:
        return ""
    keep: list[ast.stmt] = [n for n in tree.body if isinstance(n, _PRELUDE_NODES)
            and getattr(n, "name", None) != entry_point]
    return ast.unparse(ast.Module(body=keep, type_ignores=[])) if keep else ""


def prepare(tests: str | list[str], entry_point: str | None = None, prefix: str = "") -> PreparedTests:
    """Parse the tests. A list gives one unit (one per-test result) per element."""
    units = [tests] if isinstance(tests, str) else list(tests)
    if not units:
        raise TestsError("tests is an empty list")
    if entry_point is not None and not entry_point.isidentifier():
        raise TestsError(f"entry_point {entry_point!r} is not a Python identifier")
    prepared = PreparedTests(names=[], sources=[], prelude=prelude_of(prefix, entry_point))
    for i, source in enumerate(units):
        name = "tests" if isinstance(tests, str) else f"test[{i}]"
        try:
            tree = ast.parse(source, filename=f"<{name}>")
        except SyntaxError as e:
            raise TestsError(f"{name} is not valid Python: {e.msg} (line {e.lineno})") from None
        if not _checks_something(tree):
            raise TestsError(f"{name} contains no assert statement (nor raise/pytest.raises), so nothing is checked")
        if entry_point and _defines(tree, "check"):
            source = source.rstrip("\n") + f"\n\ncheck({entry_point})\n"  # appended: line numbers stay the tests'
        prepared.names.append(name)
        prepared.sources.append(source)
    return prepared
