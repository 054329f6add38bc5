"""Plain data on the wire between the program (untrusted) and the judge (trusted): the ONLY thing that crosses.

Closes the attack class "objects that lie" (custom `__eq__`/`__bool__`/`__len__`, builtin subclasses, objects
that restore patches when touched): no program object ever reaches the judge. The program's side encodes what
its functions return as tagged JSON; the judge's `decode` rebuilds the value from the bytes with its own
constructors (exact builtin types, `fractions.Fraction`, `decimal.Decimal`, `collections.Counter` and
`OrderedDict`), type-checks every node and caps depth, node count and size. No pickle, no marshal: the
encoder runs in the program's process and may be tampered with, so nothing about its output is trusted
beyond what `decode` checks. A value the encoder does not know (a program's class instance, a function)
becomes `{"x": type name}`, which `decode` refuses (the call fails, naming the type).

This file's text runs in three places: imported on the host (unit tests), and prepended to
program_main.py and judge_main.py, which run inside the sandbox as `python3 -I -S -B -c`; so it imports only
the standard library and has no `from __future__` line.

Tags (a JSON object with exactly one key): t tuple, s set, fs frozenset, d dict (list of pairs), b bytes,
ba bytearray, c complex, f non-finite float, ih a large int (hex), q Fraction, dec Decimal, ctr Counter,
od OrderedDict, dq deque, r range, dk/di/dv dict views, it an iterator (materialized, at most MAX_NODES
items), x a value that is not plain data. JSON null, bools,
ints, finite floats, strings and lists stand for themselves."""

import collections
import decimal
import fractions
import json
import math

MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_INT_DIGITS = 4000  # above this (Python's own decimal str() limit is 4300), ints travel as hex
MAX_INT_HEX = 100_000
INT_LIMIT = 10 ** MAX_INT_DIGITS


class WireError(ValueError):
    """The bytes are not a well-formed plain-data value (the program's side broke the protocol)."""


class NotPlainData(ValueError):
    """A trusted value that cannot be sent (the tests pass something that is not plain data)."""


def _encode(value, depth, budget, strict):
    """One JSON-able node; `strict` (the judge's side) refuses unknown types instead of tagging them."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise NotPlainData("value too large or too deeply nested")
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        if not -INT_LIMIT < value < INT_LIMIT:
            return {"ih": format(value, "x")}  # hex conversion has no digit limit and is linear
        return value
    if t is float:
        return value if math.isfinite(value) else {"f": repr(value)}
    nxt = depth + 1
    if t is list:
        return [_encode(v, nxt, budget, strict) for v in value]
    if t is tuple:
        return {"t": [_encode(v, nxt, budget, strict) for v in value]}
    if t is set or t is frozenset:
        return {"s" if t is set else "fs": [_encode(v, nxt, budget, strict) for v in value]}
    if t is dict or t is collections.Counter or t is collections.OrderedDict:
        tag = "d" if t is dict else "ctr" if t is collections.Counter else "od"
        return {tag: [[_encode(k, nxt, budget, strict), _encode(v, nxt, budget, strict)] for k, v in value.items()]}
    if t is bytes or t is bytearray:
        return {"b" if t is bytes else "ba": value.hex()}
    if t is complex:
        return {"c": [_encode(value.real, nxt, budget, strict), _encode(value.imag, nxt, budget, strict)]}
    if t is fractions.Fraction:
        return {"q": [value.numerator, value.denominator]}
    if t is decimal.Decimal:
        return {"dec": str(value)}
    if t is range:
        return {"r": [value.start, value.stop, value.step]}
    if t is collections.deque:
        return {"dq": [_encode(v, nxt, budget, strict) for v in value]}
    return _encode_other(value, depth, budget, strict)


def _encode_other(value, depth, budget, strict):
    if strict:
        raise NotPlainData("a " + type(value).__name__ + " is not plain data")
    if isinstance(value, bool):
        return bool(value)
    for base in (int, float, str, bytes, complex):  # builtin subclasses (IntEnum, ...): their plain value only
        if isinstance(value, base):
            return _encode(base(value), depth, budget, strict)  # type: ignore[arg-type]
    if isinstance(value, dict):
        return _encode(dict(value), depth, budget, strict)  # defaultdict: the mapping, not the factory
    if isinstance(value, tuple):
        return _encode(tuple(value), depth, budget, strict)  # namedtuple
    if isinstance(value, list):
        return _encode(list(value), depth, budget, strict)
    views = {"dict_keys": "dk", "dict_items": "di", "dict_values": "dv"}
    if type(value).__name__ in views:  # set-like views compare equal to sets: they are rebuilt as real views
        return {views[type(value).__name__]: [_encode(v, depth + 1, budget, strict) for v in value]}
    if type(value).__name__ in ITERATOR_TYPES:
        items = []
        for item in value:
            items.append(_encode(item, depth + 1, budget, strict))
        return {"it": items}
    return {"x": type(value).__name__[:100]}


ITERATOR_TYPES = {"generator", "map", "filter", "zip", "enumerate", "reversed", "list_iterator", "tuple_iterator",
                  "range_iterator", "set_iterator", "str_ascii_iterator", "str_iterator", "dict_keyiterator",
                  "dict_valueiterator", "dict_itemiterator"}


def encode(value, strict=True):
    """JSON text of a value. strict=True (the judge) raises NotPlainData on anything but plain data."""
    return json.dumps(_encode(value, 0, [MAX_NODES], strict), separators=(",", ":"))


def _check_int(v):
    if not -INT_LIMIT < v < INT_LIMIT:
        raise WireError("integer too large for its decimal form")
    return v


def _hashable(v):
    try:
        hash(v)
    except TypeError:
        raise WireError("unhashable set element or dict key") from None
    return v


def _decode(node, depth, budget):
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise WireError("value too large or too deeply nested")
    t = type(node)
    if node is None or t is bool or t is str or t is float:
        return node
    if t is int:
        return _check_int(node)
    nxt = depth + 1
    if t is list:
        return [_decode(v, nxt, budget) for v in node]
    if t is not dict or len(node) != 1:
        raise WireError("malformed value")
    ((tag, body),) = node.items()
    if tag == "x" and type(body) is str:
        raise WireError("returned a " + body[:100] + ", which is not plain data")
    if tag in ("f", "dec"):
        if type(body) is not str or len(body) > 100:
            raise WireError("malformed " + tag)
        try:
            value = float(body) if tag == "f" else decimal.Decimal(body)
        except (ValueError, decimal.InvalidOperation):
            raise WireError("malformed " + tag) from None
        if tag == "f" and math.isfinite(value):
            raise WireError("finite float sent as a tag")
        return value
    if tag == "ih":
        if type(body) is not str or len(body) > MAX_INT_HEX:
            raise WireError("malformed or too large integer")
        try:
            return int(body, 16)
        except ValueError:
            raise WireError("malformed integer") from None
    if tag in ("b", "ba"):
        if type(body) is not str:
            raise WireError("malformed bytes")
        try:
            raw = bytes.fromhex(body)
        except ValueError:
            raise WireError("malformed bytes") from None
        return raw if tag == "b" else bytearray(raw)
    if type(body) is not list:
        raise WireError("malformed " + str(tag)[:20])
    items = [_decode(v, nxt, budget) for v in body]
    return _build(tag, items)


def _build(tag, items):
    if tag == "t":
        return tuple(items)
    if tag == "it":
        return iter(items)
    if tag == "dq":
        return collections.deque(items)
    if tag == "dk":
        return dict.fromkeys(_hashable(v) for v in items).keys()
    if tag == "dv":
        return dict(enumerate(items)).values()
    if tag == "di":
        if any(type(p) is not tuple or len(p) != 2 for p in items):
            raise WireError("malformed items view")
        return dict((_hashable(k), v) for k, v in items).items()
    if tag in ("s", "fs"):
        elems = [_hashable(v) for v in items]
        return set(elems) if tag == "s" else frozenset(elems)
    if tag in ("d", "ctr", "od"):
        if any(type(p) is not list or len(p) != 2 for p in items):
            raise WireError("malformed mapping")
        pairs = [(_hashable(k), v) for k, v in items]
        if tag == "ctr":
            return collections.Counter(dict(pairs))
        return dict(pairs) if tag == "d" else collections.OrderedDict(pairs)
    if tag == "c" and len(items) == 2 and all(type(v) in (int, float) for v in items):
        return complex(items[0], items[1])
    if tag == "q" and len(items) == 2 and all(type(v) is int for v in items) and items[1] != 0:
        return fractions.Fraction(items[0], items[1])
    if tag == "r" and len(items) == 3 and all(type(v) is int for v in items) and items[2] != 0:
        return range(items[0], items[1], items[2])
    raise WireError("malformed " + str(tag)[:20])


def decode(text):
    """A trusted value rebuilt from the JSON text the program's side sent; WireError if malformed."""
    try:
        node = json.loads(text)
    except (ValueError, RecursionError):
        raise WireError("not JSON") from None
    try:
        return _decode(node, 0, [MAX_NODES])
    except RecursionError:
        raise WireError("too deeply nested") from None

