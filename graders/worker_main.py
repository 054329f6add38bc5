"""Entry point of one worker process of graders.workers.WorkerPool: JSON request per line in, reply out."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any


def math_equal(gold: str, answer: str) -> dict[str, Any]:
    """Parse the gold answer first (so its form guides nothing else), then the model's; compare."""
    from math_verify import parse, verify

    gold_parsed = parse(gold, parsing_timeout=None)  # type: ignore[arg-type]
    if not gold_parsed and "$" not in gold:
        gold_parsed = parse(f"${gold}$", parsing_timeout=None)  # type: ignore[arg-type]
    if not gold_parsed:
        return {"gold_ok": False, "answer_ok": False, "match": False}
    answer_parsed = parse(answer, parsing_timeout=None)  # type: ignore[arg-type]
    if not answer_parsed:
        return {"gold_ok": True, "answer_ok": False, "match": False}
    match = verify(gold_parsed, answer_parsed, timeout_seconds=None)
    return {"gold_ok": True, "answer_ok": True, "match": bool(match), "parsed": str(answer_parsed[-1])[:200]}


def regex_match(pattern: str, text: str, flags: int, mode: str) -> bool:
    rx = re.compile(pattern, flags)
    found = rx.fullmatch(text) if mode == "fullmatch" else rx.search(text)
    return found is not None


FUNCTIONS: dict[str, Callable[..., Any]] = {"math": math_equal, "regex": regex_match}


def main() -> None:
    import logging

    import math_verify  # noqa: F401  (import sympy before announcing readiness)

    # math-verify warns on every call that its own timeout is off: the pool's kill deadline replaces it
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    math_equal("1", "1")  # warm the parser caches
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            value = FUNCTIONS[req["fn"]](**req["args"])
            reply = {"ok": True, "value": value}
        except Exception as e:
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
