"""Built-in graders; importing this package registers them."""

from graders.builtin import (  # noqa: F401
    json_schema,
    last_integer,
    math_answer,
    python_tests,
    reasoning_gym_score,
    text,
)
