"""A minimal `pytest` for the judge (the sandbox image has no pytest): `raises` and `approx`, the two idioms that
assert-style tests use. The judge registers it as sys.modules["pytest"] before the tests run. Its text is
prepended to judge_main.py in the sandbox, so it imports only the standard library."""

import math
import re


class _Raises:
    def __init__(self, expected, match):
        self.expected, self.match, self.value = expected, match, None

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None:
            raise AssertionError("DID NOT RAISE " + getattr(self.expected, "__name__", str(self.expected)))
        if not issubclass(kind, self.expected):
            return False
        if self.match is not None and not re.search(self.match, str(exc)):
            raise AssertionError("exception message does not match " + repr(self.match))
        self.value = exc
        return True


def raises(expected, *args, match=None, **kwargs):
    if args:
        with _Raises(expected, match) as ctx:
            args[0](*args[1:], **kwargs)
        return ctx
    return _Raises(expected, match)


class _Approx:
    def __init__(self, expected, rel, abs_):
        self.expected, self.rel, self.abs = expected, rel, abs_

    def _close(self, a, b):
        if isinstance(b, list | tuple):
            same_len = isinstance(a, list | tuple) and len(a) == len(b)
            return same_len and all(self._close(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(b, dict):
            return isinstance(a, dict) and a.keys() == b.keys() and all(self._close(a[k], b[k]) for k in b)
        if type(a) not in (int, float) or type(b) not in (int, float):
            return a == b
        return math.isclose(a, b, rel_tol=self.rel, abs_tol=self.abs)

    def __eq__(self, other):
        return self._close(other, self.expected)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self):
        return "approx(" + repr(self.expected) + ")"


def approx(expected, rel=1e-6, abs=1e-12):
    return _Approx(expected, rel, abs)


def make_pytest_shim():
    module = type(math)("pytest")
    module.raises, module.approx = raises, approx  # type: ignore[attr-defined]
    return module
