"""Host-side preparation of HumanEval-style tests for graders/harness.py.

The tests are parsed HERE, outside the sandbox: every `assert` becomes a numbered call to the harness's
recorder, with each value it depends on routed through strict plain-data checks (see graders/harness.py
for the threat model). Because the host numbers the checks, it knows exactly which reports it must get
back; anything missing is a failure."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

_OPS = {
    ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}


class TestsError(ValueError):
    """The task's tests are unusable (syntax error, no assertion): the caller's bug."""

    __test__ = False


def _call(name: str, args: list[ast.expr]) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=args, keywords=[])


def _none() -> ast.expr:
    return ast.Constant(value=None)


class _StrictValues(ast.NodeTransformer):
    """Rewrites one assert's test so that only plain data reaches builtin comparisons and truth tests."""

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        self.generic_visit(node)
        ops = ast.Tuple(elts=[ast.Constant(value=_OPS[type(op)]) for op in node.ops], ctx=ast.Load())
        return _call("__rlvr_cmp__", [ops, node.left, *node.comparators])

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.expr:
        self.generic_visit(node)
        node.values = [_call("__rlvr_truth__", [v]) for v in node.values]
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.expr:
        self.generic_visit(node)
        wrapper = "__rlvr_truth__" if isinstance(node.op, ast.Not) else "__rlvr_plain__"
        node.operand = _call(wrapper, [node.operand])
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        node.left = _call("__rlvr_plain__", [node.left])
        node.right = _call("__rlvr_plain__", [node.right])
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.expr:
        self.generic_visit(node)
        node.test = _call("__rlvr_truth__", [node.test])
        return node

    def visit_FormattedValue(self, node: ast.FormattedValue) -> ast.expr:
        self.generic_visit(node)
        node.value = _call("__rlvr_plain__", [node.value])
        return node

    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        return ast.Call(func=ast.Name(id="__rlvr_call__", ctx=ast.Load()), args=[node.func, *node.args],
                        keywords=node.keywords)

    def visit_Attribute(self, node: ast.Attribute) -> ast.expr:
        self.generic_visit(node)
        if not isinstance(node.ctx, ast.Load):
            return node
        return _call("__rlvr_attr__", [node.value, ast.Constant(value=node.attr)])

    def visit_Subscript(self, node: ast.Subscript) -> ast.expr:
        self.generic_visit(node)
        if not isinstance(node.ctx, ast.Load):
            return node
        index = node.slice
        if isinstance(index, ast.Slice):
            index = _call("__rlvr_slice__", [index.lower or _none(), index.upper or _none(), index.step or _none()])
        return _call("__rlvr_item__", [node.value, index])


class _AssertNumberer(ast.NodeTransformer):
    def __init__(self, first_id: int) -> None:
        self.next_id = first_id
        self.lines: dict[int, int] = {}

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        check_id = self.next_id
        self.next_id += 1
        self.lines[check_id] = node.lineno
        test = _StrictValues().visit(node.test)
        stmt = ast.Expr(value=_call("__rlvr_assert__", [ast.Constant(value=check_id), test]))
        return ast.copy_location(stmt, node)


@dataclass
class PreparedTests:
    """Rewritten test units and the checks each must report."""

    __test__ = False

    names: list[str]
    sources: list[str]
    checks: list[list[int]]
    """Check ids of each unit; every one must be reported as passed at least once."""
    lines: dict[int, int] = field(default_factory=dict)
    imports: list[str] = field(default_factory=list)


def _imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _defines(tree: ast.Module, name: str) -> bool:
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body)


def _uses(tree: ast.Module, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(tree))


def prepare(tests: str | list[str], entry_point: str | None = None) -> PreparedTests:
    """Parse and rewrite the tests. A list gives one unit (one per-test result) per element."""
    units = [tests] if isinstance(tests, str) else list(tests)
    if not units:
        raise TestsError("tests is an empty list")
    if entry_point is not None and not entry_point.isidentifier():
        raise TestsError(f"entry_point {entry_point!r} is not a Python identifier")
    prepared = PreparedTests(names=[], sources=[], checks=[])
    imports: set[str] = set()
    next_id = 0
    for i, source in enumerate(units):
        name = "tests" if isinstance(tests, str) else f"test[{i}]"
        try:
            tree = ast.parse(source, filename=f"<{name}>")
        except SyntaxError as e:
            raise TestsError(f"{name} is not valid Python: {e.msg} (line {e.lineno})") from None
        numberer = _AssertNumberer(next_id)
        tree = numberer.visit(tree)
        ids = list(range(next_id, numberer.next_id))
        if not ids:
            raise TestsError(f"{name} contains no assert statement, so nothing could be checked")
        next_id = numberer.next_id
        if entry_point:
            if _defines(tree, "check"):
                tree.body.append(ast.Expr(value=_call("check", [ast.Name(id=entry_point, ctx=ast.Load())])))
            elif _uses(tree, "candidate") and not _defines(tree, "candidate"):
                tree.body.insert(0, ast.parse(f"candidate = {entry_point}").body[0])
        imports |= _imports(tree)
        prepared.names.append(name)
        prepared.sources.append(ast.unparse(ast.fix_missing_locations(tree)))
        prepared.checks.append(ids)
        prepared.lines.update(numberer.lines)
    prepared.imports = sorted(imports)
    return prepared
