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
import builtins
import collections
import decimal
import fractions
from dataclasses import dataclass

_PRELUDE_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                  ast.AnnAssign)


# Attributes of the plain types that may come back from the program: `candidate(x).split()` is plain data use.
PLAIN_ATTRS = set().union(*(dir(t) for t in (
    str, bytes, bytearray, list, tuple, dict, set, frozenset, int, float, complex, range, bool, type(None),
    collections.Counter, collections.OrderedDict, fractions.Fraction, decimal.Decimal)))


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


def _bound_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(n.name)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
        elif isinstance(n, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in n.names)
        elif isinstance(n, ast.arg):
            names.add(n.arg)
    return names


def object_use(tree: ast.Module, trusted: set[str], program: set[str]) -> str | None:
    """The first `X(...).attr` (directly or through a variable) where X may be the program's and `attr` is no
    attribute of any plain type: the tests need a program object (class-based task), which cannot cross the
    sandbox boundary. Decided from the tests alone, so no program can turn its verdict into INVALID_REQUEST."""
    def programs(call: ast.expr) -> str | None:
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
            name = call.func.id
            if name in program or (name not in trusted and name not in vars(builtins)):
                return name
        return None

    made = {t.id: programs(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign)
            for t in n.targets if isinstance(t, ast.Name) and programs(n.value)}
    for n in ast.walk(tree):
        if isinstance(n, ast.Attribute) and n.attr not in PLAIN_ATTRS:
            owner = programs(n.value) or (made.get(n.value.id) if isinstance(n.value, ast.Name) else None)
            if owner:
                return f"{owner}(...).{n.attr}"
    return None


def prelude_of(prefix: str, entry_point: str | None) -> str:
    """The prompt's imports and helper definitions (not the entry point's stub, not top-level statements)."""
    try:
        tree = ast.parse(prefix)
    except SyntaxError:
        return ""
    keep: list[ast.stmt] = [n for n in tree.body if isinstance(n, _PRELUDE_NODES)
            and getattr(n, "name", None) != entry_point]
    return ast.unparse(ast.Module(body=keep, type_ignores=[])) if keep else ""


def _prompt_class(prefix: str, entry_point: str) -> bool:
    try:
        tree = ast.parse(prefix)
    except SyntaxError:
        return False
    return any(isinstance(n, ast.ClassDef) and n.name == entry_point for n in tree.body)


def prepare(tests: str | list[str], entry_point: str | None = None, prefix: str = "") -> PreparedTests:
    """Parse the tests. A list gives one unit (one per-test result) per element."""
    units = [tests] if isinstance(tests, str) else list(tests)
    if not units:
        raise TestsError("tests is an empty list")
    if entry_point is not None and not entry_point.isidentifier():
        raise TestsError(f"entry_point {entry_point!r} is not a Python identifier")
    prepared = PreparedTests(names=[], sources=[], prelude=prelude_of(prefix, entry_point))
    prelude_names = _bound_names(ast.parse(prepared.prelude))
    program = {"candidate", entry_point} if entry_point else {"candidate"}
    if entry_point and _prompt_class(prefix, entry_point):
        raise TestsError(f"the entry point {entry_point} is a class in the prompt: program objects cannot cross the "
                         "sandbox boundary (only plain data does)")
    for i, source in enumerate(units):
        name = "tests" if isinstance(tests, str) else f"test[{i}]"
        try:
            tree = ast.parse(source, filename=f"<{name}>")
        except SyntaxError as e:
            raise TestsError(f"{name} is not valid Python: {e.msg} (line {e.lineno})") from None
        used = object_use(tree, (_bound_names(tree) | prelude_names) - program, program)
        if used:
            raise TestsError(f"{name} uses a program object ({used}): program objects cannot cross the sandbox "
                             "boundary (only plain data does)")
        if not _checks_something(tree):
            raise TestsError(f"{name} contains no assert statement (nor raise/pytest.raises), so nothing is checked")
        if entry_point and _defines(tree, "check"):
            source = source.rstrip("\n") + f"\n\ncheck({entry_point})\n"  # appended: line numbers stay the tests'
        prepared.names.append(name)
        prepared.sources.append(source)
    return prepared
