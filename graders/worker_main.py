"""Entry point of one worker process of graders.workers.WorkerPool: JSON request per line in, reply out."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any


def math_check(gold: str, answer: str, prompt: str = "") -> dict[str, Any]:
    """The math grader's verdict (graders.answer_check: one extracted answer span, strict gold parsing)."""
    from graders.answer_check import check

    return check(gold, answer, prompt)


_RG_SCORERS: dict[str, Callable[..., Any]] = {}


def reasoning_gym_score(dataset: str, answer: str, entry: dict[str, Any]) -> dict[str, Any]:
    """reasoning-gym's score_answer for `dataset` (imported and built on first use, then cached)."""
    if dataset not in _RG_SCORERS:
        import reasoning_gym

        try:
            _RG_SCORERS[dataset] = reasoning_gym.get_score_answer_fn(dataset)
        except ValueError as e:
            return {"error": f"field 'dataset': {e}"}
    return {"score": float(_RG_SCORERS[dataset](answer, entry))}


def regex_match(pattern: str, text: str, flags: int, mode: str) -> bool:
    rx = re.compile(pattern, flags)
    found = rx.fullmatch(text) if mode == "fullmatch" else rx.search(text)
    return found is not None


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "math": math_check, "regex": regex_match, "reasoning_gym": reasoning_gym_score,
}


def main() -> None:
    import logging

    import math_verify  # noqa: F401  (import sympy before announcing readiness)

    # math-verify warns on every call that its own timeout is off: the pool's kill deadline replaces it
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    math_check("1", "1")  # warm the parser caches
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
