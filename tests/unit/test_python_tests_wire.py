"""python_tests' plain-data boundary (graders/python_tests/wire.py) and the judge's host-testable pieces: what
may cross from the program to the trusted side, and what the judge rebuilds from it."""

from __future__ import annotations

import collections
import decimal
import fractions
import json
import math

import pytest

from graders.python_tests import judge_main
from graders.python_tests.pytest_shim import approx, raises
from graders.python_tests.wire import MAX_DEPTH, NotPlainData, WireError, decode, encode

PLAIN = [
    None, True, False, 0, -7, 10**40, 1.5, -0.0, float("inf"), float("-inf"), "héllo", "", b"\x00\xff",
    bytearray(b"ab"), [1, [2, [3]]], (1, "a", (2.5,)), (), {1, 2}, frozenset({"x"}), {"a": 1, 2: [3], (1, 2): None},
    complex(1, -2), fractions.Fraction(3, 7), decimal.Decimal("1.10"), collections.Counter("abca"),
    collections.OrderedDict([("b", 1), ("a", 2)]), range(1, 10, 3), {frozenset({1}): (1, {2: 3})},
    collections.deque([1, (2,)]), 3 ** 20000, -(7 ** 9000),
]


@pytest.mark.parametrize("value", PLAIN, ids=[f"{type(v).__name__}{i}" for i, v in enumerate(PLAIN)])
def test_plain_values_round_trip_with_their_exact_type(value: object) -> None:
    back = decode(encode(value))
    assert type(back) is type(value) and back == value


def test_dict_views_come_back_as_views() -> None:
    d = {"b": 1, "a": [2]}
    keys, items, values = (decode(encode(v, strict=False)) for v in (d.keys(), {"b": 1}.items(), d.values()))
    assert keys == {"a", "b"} and list(keys) == ["b", "a"] and type(keys) is type(d.keys())
    assert items == {("b", 1)} and list(values) == [1, [2]]


def test_nan_round_trips() -> None:
    assert math.isnan(decode(encode(float("nan"))))


class Liar:
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = object.__hash__


class LyingInt(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


def test_strict_encoding_refuses_anything_but_plain_data() -> None:
    """The judge's side: tests that pass objects to the program are refused (invalid_request, never failed)."""
    for value in (Liar(), LyingInt(3), [Liar()], {"k": lambda: 1}, print, iter([1])):
        with pytest.raises(NotPlainData):
            encode(value)


def test_program_side_encoding_keeps_only_the_plain_value() -> None:
    """Attack class "objects that lie": a builtin subclass crosses as its plain value, a custom object as a tag the
    judge refuses; neither can make a comparison on the trusted side come out true."""
    assert decode(encode(LyingInt(0), strict=False)) == 0 and type(decode(encode(LyingInt(0), strict=False))) is int
    assert decode(encode(LyingInt(0), strict=False)) != 4
    with pytest.raises(WireError, match="Liar, which is not plain data"):
        decode(encode(Liar(), strict=False))
    with pytest.raises(WireError, match="not plain data"):
        decode(encode([1, (2, Liar())], strict=False))
    assert list(decode(encode((i * i for i in range(4)), strict=False))) == [0, 1, 4, 9]
    assert decode(encode(collections.defaultdict(int, a=1), strict=False)) == {"a": 1}
    Point = collections.namedtuple("Point", "x y")
    assert decode(encode(Point(1, 2), strict=False)) == (1, 2)


MALFORMED = [
    "", "nonsense", '{"t": [1], "s": [2]}', '{"zz": [1]}', '{"a": 1}', '{"s": [[1, 2]]}', '{"d": [[[1], 2]]}',
    '{"d": [[1]]}', '{"f": "1.5"}', '{"f": 3}', '{"q": [1, 0]}', '{"q": [1.5, 2]}', '{"r": [0, 5, 0]}',
    '{"b": "zz"}', '{"c": [1, "x"]}', '{"dec": "nope"}', "1" + "0" * 4100, '{"x": "Liar"}', '{"ctr": [[1, 2, 3]]}',
    '{"ih": "xyz"}', '{"ih": "' + "f" * 100_001 + '"}', '{"ih": 5}', '{"dk": [[1]]}', '{"di": [1]}',
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_wire_is_refused(text: str) -> None:
    with pytest.raises(WireError):
        decode(text)


def test_depth_and_size_are_capped() -> None:
    deep = "[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2)
    with pytest.raises(WireError):
        decode(deep)
    with pytest.raises(WireError):
        decode("[" * 100_000 + "]" * 100_000)
    with pytest.raises(WireError):
        decode(json.dumps(list(range(300_000))))
    with pytest.raises(NotPlainData):
        encode([[[[[[[[[[[]]]]]]]]]]] * 30_000)


def test_decoded_exceptions_are_trusted_builtins_and_never_exit() -> None:
    err = judge_main.rebuild_exception({"raise": ["MyError", "ValueError", "Exception", "BaseException"], "msg": "m"})
    assert type(err) is ValueError and err.program_message == "MyError: m"  # type: ignore[attr-defined]
    for names in (["SystemExit", "BaseException"], ["KeyboardInterrupt"], ["GeneratorExit"], [], "junk"):
        err = judge_main.rebuild_exception({"raise": names, "msg": "x"})
        assert type(err) is judge_main.ProgramException
    assert isinstance(judge_main.rebuild_exception({"raise": ["KeyError"], "msg": ""}), LookupError)


def test_mutated_arguments_are_written_back_in_place() -> None:
    inner = [3, 1]
    outer = [inner, 5]
    assert judge_main.sync(outer, [[1, 3], 6])
    assert outer == [[1, 3], 6] and outer[0] is inner
    d, s, ba = {"a": 1}, {1}, bytearray(b"x")
    for old, new in ((d, {"b": 2}), (s, {2, 3}), (ba, bytearray(b"yz"))):
        assert judge_main.sync(old, new) and old == new
    assert not judge_main.sync((1, 2), (2, 1))  # immutable: nothing to write
    assert not judge_main.sync([1], {"a": 1}) and not judge_main.sync([1], (1,))  # another type: not taken


def test_pytest_shim_raises_and_approx() -> None:
    with raises(ValueError, match="bad"):
        raise ValueError("bad input")
    with pytest.raises(AssertionError, match="DID NOT RAISE"), raises(ValueError):
        pass
    with pytest.raises(KeyError), raises(ValueError):
        raise KeyError("other")
    assert approx(0.3) == 0.1 + 0.2 and approx([0.3, 1]) == [0.1 + 0.2, 1] and approx(0.3) != 0.31
